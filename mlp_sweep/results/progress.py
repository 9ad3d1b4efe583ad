"""What a sweep shows on the console while it runs.

Hydra prints a launch line per job and every run logs a line per epoch; for a sweep of dozens of
runs that buries what matters. Here:

`Progress` watches the sweep's folder from the command's own process, reading the records the
  runs rewrite as they go, so it works for every launcher (in-process, worker processes, SLURM
  jobs on a shared disk). On a terminal it keeps one live display at the bottom (runs done of
  the total, each running run's epoch and latest metrics, elapsed time and ETA); elsewhere (CI,
  a file, a SLURM log) it prints one plain line per finished run:

      [3/8] model.act=selu optim.lr=0.1  ok  test_acc 0.9303  12.1 s
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlp_sweep import labels
from mlp_sweep.results import console_filter
from mlp_sweep.run.reader import job_dirs, read_run
from mlp_sweep.status import FINISHED, Status

# A record that says `running` reads `running elsewhere` from the command's process while its
# job's process trains it (mlp_sweep.run.reader): both are a run in progress here.
RUNNING = (Status.RUNNING, Status.RUNNING_ELSEWHERE)


def is_terminal(stream: IO[str]) -> bool:
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class _Run:
    label: str
    status: Status
    epochs_done: int
    epochs: int | None
    test_acc: float | None
    train_loss: float | None
    train_seconds: float
    error: str | None
    loggers_failed: dict[str, str]
    finished_at: str | None


def read_progress(job_dir: Path, swept: set[str] | None) -> _Run | None:
    """The run's record as the console needs it (mlp_sweep.run.reader's), or None while it
    has none (or is mid-write)."""
    record = read_run(job_dir)
    if not record.readable:
        return None
    epochs = record.params.get("trainer.epochs")
    return _Run(
        label=labels.label(record.overrides, swept) or job_dir.name,
        status=record.status,
        epochs_done=record.epochs_done,
        epochs=epochs if isinstance(epochs, int) else None,
        test_acc=record.get("test_acc"),
        train_loss=record.get("train_loss"),
        train_seconds=record.train_seconds,
        error=record.error,
        loggers_failed=record.loggers_failed,
        finished_at=record.get("finished_at"),
    )


def finished_line(done: int, total: int | None, run: _Run) -> str:
    acc = f"test_acc {run.test_acc:.4f}" if isinstance(run.test_acc, float) else "test_acc -"
    line = f"[{done}/{total or '?'}] {run.label}  {run.status}  {acc}  {run.train_seconds:.1f} s"
    if run.status not in FINISHED and run.error:
        line += f"  ({run.error})"
    elif run.status == Status.PRUNED:
        line += f"  (pruned at epoch {run.epochs_done})"
    if run.loggers_failed:
        line += f"  (logger {', '.join(sorted(run.loggers_failed))} failed)"
    return line


class Progress:
    """A sweep's console while it runs; see the module's docstring. start() ... stop()."""

    def __init__(
        self,
        sweep_dir: Path,
        total: int | None,
        swept: set[str] | None,
        live: bool,
        stream: IO[str] | None = None,
    ) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.total = total
        self.swept = swept
        self.live = live
        self.stream = stream or sys.stdout
        self.interval = 0.5 if live else 1.0
        self._before: dict[str, str | None] = {}  # finished runs found at start: name -> when
        self._done: set[str] = set()
        self._running: dict[str, _Run] = {}
        self._count = 0
        self._drawn = 0  # lines of the live display now on screen
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _job_dirs(self) -> list[Path]:
        return job_dirs(self.sweep_dir)

    def start(self) -> None:
        for job_dir in self._job_dirs():  # a resume: what finished before is not news
            run = read_progress(job_dir, self.swept)
            if run is not None and run.status not in RUNNING:
                self._before[job_dir.name] = run.finished_at
                if run.status in FINISHED:
                    self._done.add(job_dir.name)
        self._count = len(self._done)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="mlp_sweep-progress", daemon=True)
        self._thread.start()
        console_filter.showing = self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        """Report what finished since the last look, and take the live display down."""
        console_filter.showing = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.poll(final=True)

    def before_log(self) -> None:
        """A log line is about to reach the console: report the runs that finished before it and
        take the live display down (the next tick redraws it below the line)."""
        self.poll(final=True)

    def poll(self, final: bool = False) -> None:
        with self._lock:
            lines = []
            for job_dir in self._job_dirs():
                name = job_dir.name
                if name in self._done:
                    continue
                run = read_progress(job_dir, self.swept)
                if run is None:
                    continue
                if run.status in RUNNING:
                    self._running[name] = run
                    continue
                if run.status == Status.INCOMPLETE or (
                    name in self._before and self._before[name] == run.finished_at
                ):
                    continue  # a dead run is no news: a retry or --resume goes on with it
                self._done.add(name)
                self._running.pop(name, None)
                self._count += 1
                lines.append(finished_line(self._count, self.total, run))
            self._show(lines, final)

    def _show(self, lines: list[str], final: bool) -> None:
        out = []
        if self.live and self._drawn:  # up to the display's first line, and clear below
            out.append(f"\x1b[{self._drawn}F\x1b[J")
        out.extend(f"{line}\n" for line in lines)
        self._drawn = 0
        if self.live and not final:
            width = shutil.get_terminal_size((100, 24)).columns
            block = [self._header(), *(self._running_line(r) for r in self._running.values())]
            block = [text[: width - 1] for text in block[: shutil.get_terminal_size().lines - 1]]
            out.extend(f"{text}\n" for text in block)
            self._drawn = len(block)
        if out:
            self.stream.write("".join(out))
            self.stream.flush()

    def _header(self) -> str:
        elapsed = time.monotonic() - self._started
        text = f"sweep {self._count}/{self.total or '?'} done, {len(self._running)} running"
        text += f"  {_clock(elapsed)} elapsed"
        eta = self._eta(elapsed)
        return text + (f", ETA {_clock(eta)}" if eta is not None else "")

    def _eta(self, elapsed: float) -> float | None:
        if not self.total:
            return None
        todo = self.total - len(self._before.keys() & self._done)
        partial = sum(
            r.epochs_done / r.epochs for r in self._running.values() if r.epochs
        )  # the running runs' share of their epochs
        progress = self._count - len(self._before.keys() & self._done) + partial
        if todo <= 0 or progress <= 0:
            return None
        return max(elapsed * (todo - progress) / progress, 0.0)

    def _running_line(self, run: _Run) -> str:
        text = f"  {run.label}  epoch {run.epochs_done}/{run.epochs or '?'}"
        if run.train_loss is not None:
            text += f"  train_loss {run.train_loss:.4f}"
        if run.test_acc is not None:
            text += f"  test_acc {run.test_acc:.4f}"
        return text
