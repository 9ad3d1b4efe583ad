"""A run's loggers as one: every event fanned out to each logger's thread, none able to hurt
the run.

Each logger gets its own daemon thread and queue (mlp_sweep.loggers.worker). A logger's
library is imported on its thread as soon as the run opens its loggers, and training starts
once that is done (bounded by PREPARE_SECONDS): an import is a burst of work under the
interpreter's lock that would otherwise slow the first epoch, and it never waits on a network.
On Linux the logger then runs in a process forked for it (mlp_sweep.loggers.forked), its thread
here only passing it the calls: what it does with them holds no lock the training loop needs.

The first error a logger raises turns it off for the rest of the run, with one warning line;
`LoggerSet.failed` says which logger failed and why, and the runner puts that in the run's
record (`loggers_failed`). At the end of a run each logger gets a bounded time to finish
sending; one that does not is given up the same way.

The loggers run inside the job, so they work wherever the job runs: in the command's process,
in a parallel launcher's worker, in a SLURM job.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from mlp_sweep.loggers.protocol import RunLogger, StepLoss
from mlp_sweep.loggers.run_info import RunInfo
from mlp_sweep.loggers.worker import Worker
from mlp_sweep.training.loop import EpochStats

if TYPE_CHECKING:
    from torch import Tensor

    from mlp_sweep.training.predict import Digits

log = logging.getLogger(__name__)

# Step points go to the loggers' threads in batches this many seconds apart: waking a thread
# for every step would make it take the interpreter's lock from the training loop every step,
# and every update of a visdom window costs its server time in proportion to the window.
STEPS_EVERY = 1.0
PREPARE_SECONDS = 30.0  # the longest a run waits for its loggers' imports before training


class LoggerSet:
    """Fans a run's events out to its loggers; see the module's docstring for the promises.

    `loggers`: each logger with the seconds it may take to finish sending at the run's end.
    """

    def __init__(self, loggers: list[tuple[RunLogger, float]]) -> None:
        self._steps: list[tuple[int, Tensor]] = []  # not yet sent: tensors on the device
        self._steps_sent = 0.0
        self._sent: list[StepLoss] = []  # sent since the last flush_steps(), as floats
        self.failed: dict[str, str] = {}
        self.logged_to: dict[str, Any] = {}  # what each logger's start() said: the record's
        self._started = False  # a run that fails before training never starts its loggers
        self._lock = threading.Lock()
        self._workers = [(Worker(lg, self._fail), timeout) for lg, timeout in loggers]
        for worker, _ in self._workers:
            worker.submit(functools.partial(self._prepare, worker))

    @staticmethod
    def _prepare(worker: Worker) -> None:
        try:
            worker.logger.prepare()
        finally:
            worker.prepared.set()

    @property
    def names(self) -> list[str]:
        return [w.logger.name for w, _ in self._workers]

    def _fail(self, name: str, why: str) -> None:
        with self._lock:
            if name in self.failed:
                return
            self.failed[name] = why
        log.warning("logger %s failed: %s; the run goes on without it", name, why)

    def _start(self, worker: Worker, *args: Any) -> None:
        where = worker.logger.start(*args)
        if where:
            with self._lock:
                self.logged_to[worker.logger.name] = where

    def _each(self, method: str, *args: Any) -> None:
        for worker, _ in self._workers:
            worker.submit(functools.partial(getattr(worker.logger, method), *args))

    def start(self, run: RunInfo, history: list[EpochStats], steps: list[StepLoss]) -> None:
        """Queued for each logger; returns once their imports are done (at most
        PREPARE_SECONDS), not their connections."""
        self._started = True
        for worker, _ in self._workers:
            worker.submit(functools.partial(self._start, worker, run, list(history), list(steps)))
        deadline = time.monotonic() + PREPARE_SECONDS
        for worker, _ in self._workers:
            worker.prepared.wait(max(0.0, deadline - time.monotonic()))

    def step(self, step: int, loss: Tensor) -> None:
        """Kept here, a list append; sent on in a batch every STEPS_EVERY seconds (a tensor
        read per batch: on a GPU one sync per second, none per step)."""
        self._steps.append((step, loss))
        if time.monotonic() - self._steps_sent >= STEPS_EVERY:
            self._send_steps()

    def _send_steps(self) -> None:
        self._steps_sent = time.monotonic()
        if not self._steps:
            return
        import torch

        values = torch.stack([loss for _, loss in self._steps]).tolist()
        points = [(step, float(v)) for (step, _), v in zip(self._steps, values, strict=True)]
        self._steps.clear()
        self._sent += points
        self._each("steps", points)

    def flush_steps(self) -> list[StepLoss]:
        """Send the steps still kept; returns every point sent since the last call, read
        from the device once for the loggers and the caller (the run's steps.csv) alike."""
        self._send_steps()
        points, self._sent = self._sent, []
        return points

    def epoch(self, stats: EpochStats) -> None:
        self._send_steps()  # the epoch's last steps first
        self._each("epoch", stats)

    def digits(self, epoch: int, digits: Digits) -> None:
        self._each("digits", epoch, digits)

    def finish(self, record: dict[str, Any]) -> None:
        """The run's end, for loggers that started (nothing to finish otherwise)."""
        if self._started:
            self._each("finish", dict(record))

    def close(self) -> dict[str, str]:
        """Finish sending (bounded per logger); returns the failed loggers and why."""
        self._send_steps()
        self._each("close")
        for worker, timeout in self._workers:
            if not worker.stop(timeout):
                self._fail(worker.logger.name, f"still sending after {timeout:g} s; given up")
                abandon = getattr(worker.logger, "abandon", None)  # one in its own process
                if abandon is not None:
                    abandon()
        with self._lock:
            return dict(self.failed)
