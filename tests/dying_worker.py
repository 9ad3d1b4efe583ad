"""A fork server's preload that kills its own process the first time it is imported (the file
MLP_SWEEP_TEST_DIE_ONCE names does not exist yet), as the OOM killer or a user's `kill -9` would
a server still importing torch (tests/test_worker_death.py)."""

import os
import signal
from pathlib import Path

_marker = Path(os.environ["MLP_SWEEP_TEST_DIE_ONCE"])
if not _marker.exists():
    _marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)
