"""What a logger is to the run (the RunLogger protocol), and a logger's failure in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mlp_sweep.errors import one_line

if TYPE_CHECKING:
    from mlp_sweep.loggers.run_info import RunInfo
    from mlp_sweep.training.loop import EpochStats
    from mlp_sweep.training.predict import Digits

# A step's loss as the loggers keep it: (global step, mean train loss per sample).
StepLoss = tuple[int, float]


class RunLogger(Protocol):
    name: str  # its key in mlp_sweep.loggers.registry.LOGGERS and in logger=<name>

    @property
    def finish_seconds(self) -> float:
        """The longest its last calls may take at the run's end; past it, it is given up."""

    def prepare(self) -> None:
        """Import what the logger needs; the run starts training once this returns."""

    def start(
        self, run: RunInfo, history: list[EpochStats], steps: list[StepLoss]
    ) -> dict[str, Any] | None:
        """Called once before training; history and steps hold what a resumed run restored.
        May return where it logs the run ({"run_id": ...}): the record keeps it in
        `logged_to`, and the run's next attempt finds it in run.logged_to[name]."""

    def steps(self, points: list[StepLoss]) -> None:
        """The train loss of the steps since the last call: (step, mean over the last
        logger.every_n_steps steps), at most every STEPS_EVERY seconds and at each epoch's end."""

    def epoch(self, stats: EpochStats) -> None: ...

    def digits(self, epoch: int, digits: Digits) -> None:
        """Test digits with the model's predictions after `epoch`, misclassified first."""

    def finish(self, record: dict[str, Any]) -> None:
        """The run's final record (status, test_acc, best_test_acc, ...)."""

    def close(self) -> None: ...


# What to install for a logger whose library is missing.
INSTALL = {
    "tensorboard": 'the viz extra: pip install ".[viz]"',
    "visdom": "visdom: see docs/watching.md (pip install visdom==0.2.4, with its constraint)",
    "mlflow": 'the track extra: pip install ".[track]"',
    "sqlalchemy": 'the track extra: pip install ".[track]"',
    "alembic": 'the track extra: pip install ".[track]"',
}


class LoggerFailure(Exception):
    """A logger's failure, already said in one line (by the logger's own process)."""


def describe_failure(err: BaseException) -> str:
    """A logger's failure in one line; a missing library names what to install."""
    if isinstance(err, LoggerFailure):
        return str(err)
    if isinstance(err, ImportError) and err.name:
        needed = INSTALL.get(err.name.split(".")[0])
        if needed is not None:
            return f"{err.name} is not installed; it needs {needed}"
    return one_line(err)
