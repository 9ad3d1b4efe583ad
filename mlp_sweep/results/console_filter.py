"""The quiet sweep console: which log lines reach it.

Hydra prints a launch line per job and every run logs a line per epoch; for a sweep of dozens of
runs that buries what matters. `ConsoleFilter` (named by conf/hydra/job_logging and
hydra_logging) lets only warnings and errors reach a sweep's console; everything still goes to
each run's log file. A single run keeps its per-epoch lines, and `verbose=true` brings all of
them back. While a live display runs (mlp_sweep.results.progress), a line it lets through
first lets the display print the runs that finished before it.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any, Protocol


class Display(Protocol):
    def before_log(self) -> None: ...


# The sweep's live display in this process, while it runs (set by Progress).
showing: Display | None = None

# log.info(..., extra=ON_CONSOLE): a line a sweep's console shows even when quiet.
ON_CONSOLE = {"console": True}


class ConsoleFilter(logging.Filter):
    """Passes warnings, errors and ON_CONSOLE lines; INFO too for a single run; everything with
    verbose."""

    def __init__(self, verbose: bool = False, mode: Any = "RUN") -> None:
        super().__init__()
        mode = mode.name if isinstance(mode, Enum) else str(mode)
        self.threshold = logging.NOTSET if verbose or mode != "MULTIRUN" else logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        shown = record.levelno >= self.threshold or getattr(record, "console", False)
        if shown and showing is not None:  # runs that finished before this line come first
            showing.before_log()
        return shown
