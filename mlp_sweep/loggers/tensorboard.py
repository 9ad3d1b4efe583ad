"""logger=tensorboard: a run's curves and hyperparameters as TensorBoard event files.

The events go into the run's own folder, so `tensorboard --logdir <sweep dir>` shows every run
of the sweep by its job number. Each epoch adds the scalars train_loss, test_loss, test_acc and
seconds at step = epoch, flushed at once so a running TensorBoard shows them live. With
`hparams: true` the run also carries its hyperparameters and, when it ends, its final metrics
(final/test_acc, final/best_test_acc, final/test_loss, final/train_loss), written into the run
itself rather than into the timestamped sub-run SummaryWriter.add_hparams would make.

A resumed run rewrites its curves from the restored history (purge_step=1 hides what an earlier
process wrote), so the event files always say what history.csv says.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlp_sweep.config import TensorBoardConfig
from mlp_sweep.loggers.run_info import RunInfo
from mlp_sweep.training.loop import EpochStats

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

SCALARS = ("train_loss", "test_loss", "test_acc", "seconds")
FINAL = ("test_acc", "best_test_acc", "test_loss", "train_loss")


def hparam_value(value: Any) -> bool | int | float | str:
    """What TensorBoard's HParams accept: numbers, bools and strings."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


class TensorBoardLogger:
    name = "tensorboard"

    def __init__(self, cfg: TensorBoardConfig) -> None:
        self.cfg = cfg
        self.writer: SummaryWriter | None = None

    def start(self, run: RunInfo, history: list[EpochStats]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(run.run_dir), purge_step=1)
        if self.cfg.hparams:
            values = {k: hparam_value(v) for k, v in run.hparams.items()}
            exp, ssi, _ = hparams(values, {f"final/{m}": 0.0 for m in FINAL})
            events = self.writer._get_file_writer()  # the run's own, not a sub-run's
            events.add_summary(exp)
            events.add_summary(ssi)
        for stats in history:
            self._scalars(stats)
        self.writer.flush()

    def _scalars(self, stats: EpochStats) -> None:
        assert self.writer is not None
        for tag in SCALARS:
            self.writer.add_scalar(tag, getattr(stats, tag), stats.epoch)

    def epoch(self, stats: EpochStats) -> None:
        self._scalars(stats)
        assert self.writer is not None
        self.writer.flush()

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
