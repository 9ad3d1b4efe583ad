"""Every logger by name, and the loggers a run's config turns on.

A logger's name is its field on LoggerConfig (None: off) and its conf/logger/<name>.yaml;
its class takes that field's settings. Adding a logger is its module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlp_sweep.config import LoggerConfig
from mlp_sweep.loggers import forked
from mlp_sweep.loggers.logger_set import LoggerSet
from mlp_sweep.loggers.mlflow_logger import MlflowLogger
from mlp_sweep.loggers.protocol import RunLogger
from mlp_sweep.loggers.tensorboard import TensorBoardLogger
from mlp_sweep.loggers.visdom import VisdomLogger

LOGGERS: dict[str, Callable[[Any], RunLogger]] = {
    "tensorboard": TensorBoardLogger,
    "visdom": VisdomLogger,
    "mlflow": MlflowLogger,
}


def open_loggers(cfg: LoggerConfig) -> LoggerSet:
    """The loggers cfg turns on. Their packages are imported on the logger's own thread, so a
    missing extra is a logger failure (one warning), not a failed run."""
    chosen = []
    for name, make in LOGGERS.items():
        settings = getattr(cfg, name)
        if settings is not None:
            chosen.append(make(settings))
    if forked.SUPPORTED:
        chosen = [forked.ForkedLogger(logger) for logger in chosen]
    return LoggerSet([(logger, logger.finish_seconds) for logger in chosen])
