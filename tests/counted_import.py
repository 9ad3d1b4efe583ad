"""A fork server's preload that notes each process importing it, in the file named by
MLP_SWEEP_TEST_IMPORTS (tests/test_pool.py)."""

import os

with open(os.environ["MLP_SWEEP_TEST_IMPORTS"], "a") as f:
    f.write(f"{os.getpid()}\n")
