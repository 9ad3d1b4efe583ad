"""steps.csv: a run's train loss every logger.every_n_steps steps, kept while a logger watches so
that a resumed run's loggers can draw its whole step line again.

The first time a process writes it, the file is written whole (atomically): that drops whatever
an interrupted earlier attempt wrote past its checkpoint. From then on each epoch's rows are
appended and fsynced before that epoch's checkpoint, so the file never lags the checkpoint and
an epoch costs its own rows, not the whole run's again (with every_n_steps=1, rewriting it each
epoch would write 1.5 million rows over a 100-epoch run). A kill in the middle of an append
leaves at most a torn last line, which reading skips: only whole lines count, and only the rows
of the epochs the checkpoint holds. Neither write follows a link planted at the name: the whole
file replaces it, and an append finding anything but a regular file there writes the whole
file instead (mlp_sweep.training.writes).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from mlp_sweep.training.writes import is_regular, open_append, write_bytes_atomic

FILE = "steps.csv"
COLUMNS = ["step", "epoch", "train_loss"]
Row = tuple[int, int, float]  # (optimizer step, epoch, mean train loss per sample)


def _csv(rows: list[Row], header: bool) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue().encode()


def read(path: Path, epochs: int) -> list[Row]:
    """The rows of the first `epochs` epochs (what the checkpoint holds); none if the file is
    missing or unreadable."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return []
    whole = [line for line in lines if line.endswith("\n")]  # not a torn last line
    try:
        rows = [
            (int(r["step"]), int(r["epoch"]), float(r["train_loss"])) for r in csv.DictReader(whole)
        ]
    except (ValueError, KeyError, TypeError):
        return []
    return [row for row in rows if row[1] <= epochs]


class StepsFile:
    """Writes one run's steps.csv: see the module's docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = False  # by this process

    def add(self, rows: list[Row], every: list[Row]) -> None:
        """The epoch's new rows; `every` holds all the rows of the epochs done, new ones last."""
        if not self.written or not is_regular(self.path):
            write_bytes_atomic(self.path, _csv(every, header=True))
            self.written = True
            return
        with os.fdopen(open_append(self.path), "ab") as f:
            f.write(_csv(rows, header=False))
            f.flush()
            os.fsync(f.fileno())
