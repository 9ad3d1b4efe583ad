"""logger=tensorboard: a run's curves, test digits and hyperparameters as TensorBoard events.

A sweep's runs write into `<sweep dir>/tb/<job> <swept values>/` (a single run into its own
folder), so `tensorboard --logdir <sweep dir>` lists them as `tb/3 model.act=selu`, named as
the plots and visdom name them. Each epoch adds the scalars train_loss, test_loss, test_acc
and seconds at step = epoch, and the image `test/digits` (test digits under their true and
predicted labels, misclassified first) at step = epoch, flushed at once so a running
TensorBoard shows them live. `train/loss_step` is the train loss every logger.every_n_steps
optimizer steps, at step = the run's optimizer step (flushed every few seconds). With
`hparams: true` the run also carries its hyperparameters and, when it ends, its final metrics
(final/test_acc, final/best_test_acc, final/test_loss, final/train_loss), written into the run
itself rather than into the timestamped sub-run SummaryWriter.add_hparams would make.

A resumed run rewrites its curves from the restored history and steps.csv (purge_step=1 hides
what an earlier process wrote), so the event files always say what history.csv and steps.csv
say.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from mlp_sweep.config import TensorBoardConfig
from mlp_sweep.loggers.run_info import RunInfo
from mlp_sweep.training.loop import EpochStats

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from mlp_sweep.training.predict import Digits

SCALARS = ("train_loss", "test_loss", "test_acc", "seconds")
STEP_TAG = "train/loss_step"
DIGITS_TAG = "test/digits"
FLUSH_SECONDS = 2.0  # step points reach the event file at least this often
FINAL = ("test_acc", "best_test_acc", "test_loss", "train_loss")


def hparam_value(value: Any) -> bool | int | float | str:
    """What TensorBoard's HParams accept: numbers, bools and strings."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


class TensorBoardLogger:
    name = "tensorboard"
    finish_seconds = 30.0  # its events go to a local file: only a stuck disk takes this long

    def __init__(self, cfg: TensorBoardConfig) -> None:
        self.cfg = cfg
        self.writer: SummaryWriter | None = None
        self.flushed = 0.0

    def prepare(self) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

        from mlp_sweep.loggers.digits import prepare

        prepare()

    def start(
        self, run: RunInfo, history: list[EpochStats], steps: list[tuple[int, float]]
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        events = run.events_dir or run.run_dir
        self.writer = SummaryWriter(log_dir=str(events), purge_step=1)
        if self.cfg.hparams:
            values = {k: hparam_value(v) for k, v in run.hparams.items()}
            exp, ssi, _ = hparams(values, {f"final/{m}": 0.0 for m in FINAL})
            events = self.writer._get_file_writer()  # the run's own, not a sub-run's
            events.add_summary(exp)
            events.add_summary(ssi)
        for stats in history:
            self._scalars(stats)
        for step, loss in steps:
            self.writer.add_scalar(STEP_TAG, loss, step)
        self.writer.flush()
        self.flushed = time.monotonic()

    def steps(self, points: list[tuple[int, float]]) -> None:
        assert self.writer is not None
        for step, loss in points:
            self.writer.add_scalar(STEP_TAG, loss, step)
        if time.monotonic() - self.flushed > FLUSH_SECONDS:
            self.writer.flush()
            self.flushed = time.monotonic()

    def digits(self, epoch: int, digits: Digits) -> None:
        from mlp_sweep.loggers.digits import caption, grid

        assert self.writer is not None
        self.writer.add_image(DIGITS_TAG, grid(digits), epoch, dataformats="HWC")
        self.writer.add_text(DIGITS_TAG, caption(digits), epoch)
        self.writer.flush()

    def _scalars(self, stats: EpochStats) -> None:
        assert self.writer is not None
        for tag in SCALARS:
            self.writer.add_scalar(tag, getattr(stats, tag), stats.epoch)

    def epoch(self, stats: EpochStats) -> None:
        self._scalars(stats)
        assert self.writer is not None
        self.writer.flush()
        self.flushed = time.monotonic()

    def finish(self, record: dict[str, Any]) -> None:
        assert self.writer is not None
        if self.cfg.hparams:
            step = record.get("epochs_done") or 0
            for metric in FINAL:
                value = record.get(metric)
                if value is not None:
                    self.writer.add_scalar(f"final/{metric}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
