"""A pool worker's preload that kills its own process while it starts, as the OOM killer or a
user's `kill -9` would a worker still importing torch (tests/test_worker_death.py)."""

import os
import signal

os.kill(os.getpid(), signal.SIGKILL)
