"""A run's status: the one spelling of each, shared by records, summaries and the console.

A StrEnum, so a member is the very string metrics.json and summary.csv hold ("ok" == Status.OK),
and records written before it read back unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    RUNNING = "running"  # training now (or killed while training: see INCOMPLETE)
    OK = "ok"  # every epoch done
    DIVERGED = "diverged"  # stopped early: a loss went non-finite; a result, not a failure
    PRUNED = "pruned"  # stopped early by a search's pruner: a result, told to Optuna as PRUNED
    FAILED = "failed"  # raised an error, kept in the record and traceback.txt
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; its checkpoint holds the last epoch
    TIMEOUT = "timeout"  # past trainer.time_limit; its checkpoint holds the last epoch
    # A summary's word for a folder whose run never wrote a record, or wrote a torn one.
    INCOMPLETE = "incomplete"
    UNREADABLE = "unreadable"
    # A folder another process holds locked (mlp_sweep.run.lock): reported, never written.
    RUNNING_ELSEWHERE = "running elsewhere"


# Final: a run with one of these is never trained again (--resume skips it).
FINISHED = (Status.OK, Status.DIVERGED, Status.PRUNED)
