"""Loggers that watch a run (TensorBoard, visdom, MLflow) without ever being able to hurt it.

registry.py names every logger and opens those a run's config turns on; logger_set.py fans a
run's events out to them, each on its own thread (worker.py) and, on Linux, in a process of its
own (forked.py); protocol.py is what a logger is; run_info.py what it is told about its run.
"""

from mlp_sweep.loggers.logger_set import PREPARE_SECONDS, STEPS_EVERY, LoggerSet
from mlp_sweep.loggers.protocol import RunLogger, StepLoss, describe_failure
from mlp_sweep.loggers.registry import LOGGERS, open_loggers
from mlp_sweep.loggers.run_info import (
    CORE_HPARAMS,
    LOGGED_TO,
    TB_DIR,
    RunInfo,
    folder_name,
    run_info,
)

__all__ = [
    "CORE_HPARAMS",
    "LOGGED_TO",
    "LOGGERS",
    "PREPARE_SECONDS",
    "STEPS_EVERY",
    "TB_DIR",
    "LoggerSet",
    "RunInfo",
    "RunLogger",
    "StepLoss",
    "describe_failure",
    "folder_name",
    "open_loggers",
    "run_info",
]
