"""One run's record from its start to its end, kept the same way whoever trains it.

The run driver (mlp_sweep.run.runner) takes a run trained alone and a member of a stack
through the same five moments, so their folders hold the same files with the
same keys and form:

    opened         metrics.json says `running`; the job's line in its log; its loggers open
    configured     device, threads and determinism recorded
    started        a resume says from which epoch; the loggers start
    epoch_done     the log line, checkpoint.pt, history.csv and metrics.json, the loggers
    finished       `ok` or `diverged`            (failed: `failed` + traceback.txt;
                                                   interrupted: `interrupted`, then re-raised;
                                                   pruned by a search: `pruned`)

Only the lines' destination differs: a run alone logs through its job's logging (Hydra set it
up); a stack's member through a logger of its own onto the same file, formatted as that job's
logging formats it.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from mlp_sweep.config import Config, Dataset
from mlp_sweep.errors import one_line
from mlp_sweep.labels import command, swept_in_folder
from mlp_sweep.loggers import LOGGED_TO, LoggerSet, open_loggers, run_info
from mlp_sweep.run import steps_file
from mlp_sweep.run.interrupt import signal_name
from mlp_sweep.run.job import JobInfo
from mlp_sweep.run.prior import run_params
from mlp_sweep.run.reader import read_run
from mlp_sweep.run.record import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    SCHEMA_VERSION,
    environment,
    now_iso,
    remove_stale_temps,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
)
from mlp_sweep.run.state import RunState
from mlp_sweep.status import Status
from mlp_sweep.training.data import Data
from mlp_sweep.training.device import gpu_identity
from mlp_sweep.training.loop import EpochStats, History, StepHook
from mlp_sweep.training.predict import confusion, is_image, pick, predict

HISTORY_COLUMNS = [f.name for f in dataclasses.fields(EpochStats)]
DIGITS_SEEN = 1000  # test digits the loggers' grid picks from, each epoch
MISCLASSIFIED_SHOWN = 64
TRACEBACK_FILE = "traceback.txt"

log = logging.getLogger(__name__)


class RunRecord:
    """metrics.json for one run, rewritten atomically as the run moves on."""

    def __init__(self, cfg: Config, run_dir: Path, job: JobInfo) -> None:
        self.path = run_dir / METRICS_FILE
        self.history_path = run_dir / HISTORY_FILE
        self.fields: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "status": Status.RUNNING,
            "error": None,
            "job_num": job.num,
            "overrides": list(job.overrides),
            # Re-runs this configuration at git.commit (the seed is in the config).
            "command": command(*job.overrides),
            "seed": cfg.seed,
            "device_requested": cfg.device,
            "device": None,
            "params": run_params(cfg),
            "test_acc": None,
            "test_loss": None,
            "train_loss": None,
            "best_test_acc": None,
            "best_epoch": None,
            "epochs_done": 0,
            "train_seconds": 0.0,
            "n_params": None,  # the model's trainable parameters (a search may minimize them)
            # How many times this run has started in this folder: resumes and retries count.
            "attempt": 1,
            "resumed_from_epoch": None,
            "started_at": now_iso(),
            "finished_at": None,
            "deterministic": None,
            "threads": None,
            "loggers": [],
            "loggers_failed": {},
            LOGGED_TO: {},  # where each logger put the run: {"mlflow": {"run_id": ...}}
            **environment(),
        }

    def update(self, **values: Any) -> None:
        self.fields.update(values)
        write_json_atomic(self.path, self.fields)

    def epochs_done(self, history: History) -> None:
        if not history.epochs:
            return
        last, best = history.epochs[-1], history.best
        write_csv_atomic(self.history_path, (e.as_dict() for e in history.epochs), HISTORY_COLUMNS)
        self.update(
            test_acc=last.test_acc,
            test_loss=last.test_loss,
            train_loss=last.train_loss,
            best_test_acc=best.test_acc if best else None,
            best_epoch=best.epoch if best else None,
            epochs_done=last.epoch,
            train_seconds=sum(e.seconds for e in history.epochs),
        )


class Lifecycle:
    """One run's record through opened, started, epoch_done and its end; see the module."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        job: JobInfo,
        logger: logging.Logger = log,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.cfg, self.run_dir, self.job, self.log = cfg, run_dir, job, logger
        self.checkpoint = run_dir / CHECKPOINT_FILE
        self.record = RunRecord(cfg, run_dir, job)
        self.record.fields.update(extra or {})
        self.loggers: LoggerSet | None = None
        self.kept = History()  # the epochs the checkpoint holds: what an interruption reports
        self.data: Data | None = None
        self.state: RunState | None = None
        # The train loss every logger.every_n_steps steps of the epochs done (steps.csv),
        # only while a logger watches: (step, epoch, loss).
        self.steps: list[steps_file.Row] = []
        self.steps_file = steps_file.StepsFile(run_dir / steps_file.FILE)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.record.fields["params"])

    def opened(self) -> None:
        """The record says `running` from here on; the loggers are open (not yet started)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / TRACEBACK_FILE).unlink(missing_ok=True)  # an earlier failure's
        remove_stale_temps(self.run_dir)  # an earlier attempt's, killed while writing
        prior = read_run(self.run_dir)
        self.record.fields["attempt"] = prior.attempt + 1
        logged_to = prior.get(LOGGED_TO)
        if isinstance(logged_to, dict):  # the next attempt continues the same logged runs
            self.record.fields[LOGGED_TO] = logged_to
        self.record.update()
        if self.job.num is not None:  # the launch line, here rather than on the sweep's console
            self.log.info("job #%d: %s", self.job.num, " ".join(self.job.overrides))
        self.loggers = open_loggers(self.cfg.logger)
        self.record.fields["loggers"] = self.loggers.names  # written with the device, below

    def configured(self, device: torch.device) -> None:
        """The process is set up to train on `device` (mlp_sweep.run.state.configure_process)."""
        self.record.update(
            device=str(device),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            threads=torch.get_num_threads(),
            **gpu_identity(device),  # which GPU, as the machine numbers it, and its worker's slot
        )

    def data_loaded(self, data: Data, device: torch.device, seconds: float) -> None:
        self.data = data
        self.log.info(
            "data %s: %d train / %d test on %s (%.1fs)",
            self.cfg.data.name.name,
            len(data.x_train),
            len(data.x_test),
            device,
            seconds,
        )

    def started(self, state: RunState) -> None:
        """Training is about to start from `state` (restored from a checkpoint, or new)."""
        self.state = state
        params = sum(p.numel() for p in state.model.parameters() if p.requires_grad)
        self.record.update(n_params=params)
        if state.set_aside:
            self.log.warning("%s", state.set_aside)
        if state.history.epochs:
            self.kept = History(list(state.history.epochs), state.history.status)
            self.record.update(resumed_from_epoch=len(state.history.epochs))
            self.log.info(
                "resumed from %s after epoch %d", self.checkpoint, len(state.history.epochs)
            )
        assert self.loggers is not None
        if self.loggers.names:
            info = run_info(
                self.run_dir,
                self.params,
                self.job.num,
                self.job.overrides,
                self.job.sweep_dir,
                self.record.fields,
                OmegaConf.to_yaml(self.cfg),
            )
            if state.history.epochs:
                self.steps = steps_file.read(self.steps_file.path, len(state.history.epochs))
            self.loggers.start(info, state.history.epochs, [(s, v) for s, _, v in self.steps])

    def step_hook(self) -> StepHook | None:
        """What the training loop calls every logger.every_n_steps steps, or None (nothing to
        do per step) when no logger watches."""
        if self.loggers is None or not self.loggers.names:
            return None
        return self.loggers.step  # epoch_done takes the epoch's points back for steps.csv

    def epoch_done(self, state: RunState) -> None:
        """An epoch is done: its line, the checkpoint, then the record that matches it."""
        assert self.loggers is not None
        history = state.history
        e = history.epochs[-1]
        self.log.info(
            "epoch %d/%d  train_loss %.4f  test_loss %.4f  test_acc %.4f  (%.2fs)",
            e.epoch,
            self.cfg.trainer.epochs,
            e.train_loss,
            e.test_loss,
            e.test_acc,
            e.seconds,
        )
        points = self.loggers.flush_steps()
        if points:  # before the checkpoint: steps.csv never lags the epochs it holds
            rows = [(s, e.epoch, v) for s, v in points]
            self.steps += rows
            self.steps_file.add(rows, self.steps)
        if self.cfg.trainer.checkpoint:
            state.save(self.checkpoint, self.params)
        self.kept = History(list(history.epochs), history.status)
        self._loggers_said()
        self.record.epochs_done(history)
        self.loggers.epoch(e)
        if self.loggers.names and self.data is not None and is_image(self.data.x_test):
            x, y = self.data.x_test[:DIGITS_SEEN], self.data.y_test[:DIGITS_SEEN]
            pred = history.test_pred  # the epoch's evaluation predicted them already
            seen = predict(state.model, x) if pred is None else pred[:DIGITS_SEEN]
            self.loggers.digits(e.epoch, pick(x, y, seen))

    def finished(self, history: History) -> dict[str, Any]:
        """Trained to the end, or diverged: a result either way."""
        if history.epochs and self.record.fields["epochs_done"] != len(history.epochs):
            self.record.epochs_done(history)  # a checkpoint already held them all
        if history.status == Status.DIVERGED:
            self.log.warning("run diverged at epoch %d: non-finite loss", len(history.epochs))
        if history.status == Status.OK:
            self._pictures()
        return self._close(Status(history.status), None)

    def pruned(self) -> dict[str, Any]:
        """Stopped by the search's pruner after an epoch: a result (its epochs stand), not a
        failure, and never trained again."""
        self.log.info(
            "run pruned at epoch %d: the search's pruner stopped it",
            self.record.fields["epochs_done"],
        )
        self._pictures()
        return self._close(Status.PRUNED, None)

    def _pictures(self) -> None:
        """The model's errors on the whole test set: per-class accuracy and the worst class
        in the record, confusion.png in the folder, and misclassified.png where the test set
        is pictures of digits (not data=synthetic, whose 784 features drawn as 28 x 28 are
        noise). A failure here costs one warning line, never the run."""
        if self.state is None or self.data is None or not is_image(self.data.x_test):
            return
        try:
            from mlp_sweep.run import pictures

            x, y = self.data.x_test, self.data.y_test
            pred = self.state.history.test_pred  # the last epoch's evaluation, when trained here
            if pred is None:
                pred = predict(self.state.model, x, self.cfg.trainer.eval_batch_size)
            counts = confusion(y, pred)
            totals = [sum(row) for row in counts]
            class_acc = [round(counts[c][c] / n, 4) if n else None for c, n in enumerate(totals)]
            known = [c for c, acc in enumerate(class_acc) if acc is not None]
            worst = min(known, key=lambda c: class_acc[c] or 0.0) if known else None
            # Written with the run's status, a moment later (_close): one fsync'd write fewer.
            self.record.fields.update(class_acc=class_acc, worst_class=worst)
            sweep = self.job.sweep_dir
            swept = None if sweep is None else swept_in_folder(sweep)
            title = pictures.title(self.run_dir.name, self.job.overrides, swept)
            pictures.draw_confusion(counts, self.run_dir / pictures.CONFUSION_FILE, title)
            if self.cfg.data.name is not Dataset.synthetic:
                digits = pick(x, y, pred, MISCLASSIFIED_SHOWN)
                path = self.run_dir / pictures.MISCLASSIFIED_FILE
                pictures.draw_misclassified(digits, path, title)
        except Exception as err:
            self.log.warning("no confusion.png / misclassified.png: %s", one_line(err))

    def failed(self, err: Exception) -> dict[str, Any]:
        """Recorded, not raised: the sweep goes on. The console gets one line; the whole story
        goes beside the record."""
        error = one_line(err)
        trace = "".join(traceback.format_exception(err))
        write_bytes_atomic(self.run_dir / TRACEBACK_FILE, trace.encode())
        self.log.error("run failed: %s (traceback: %s)", error, self.run_dir / TRACEBACK_FILE)
        return self._close(Status.FAILED, error)

    def interrupted(self, err: BaseException) -> None:
        """Ctrl-C or SIGTERM: recorded at once (the signal may land between the checkpoint and
        the record, so the record says what the checkpoint holds), then the loggers get their
        bounded time. The caller re-raises."""
        self.record.epochs_done(self.kept)
        done = self.record.fields["epochs_done"]
        self.record.update(
            status=Status.INTERRUPTED,
            error=f"interrupted by {signal_name(err)} after epoch {done}",
            finished_at=now_iso(),
        )
        self.log.warning(
            "run interrupted (%s); resume continues from its checkpoint", signal_name(err)
        )
        self._close_loggers()

    def timed_out(self, limit: float) -> dict[str, Any]:
        """trainer.time_limit ran out: recorded, not raised, like a failure, but resumable:
        the checkpoint holds the last epoch, and --resume continues from it."""
        self.record.epochs_done(self.kept)
        done = self.record.fields["epochs_done"]
        self.log.warning(
            "run stopped at its time limit (trainer.time_limit=%gs) after epoch %d; "
            "--resume continues it from its checkpoint",
            limit,
            done,
        )
        error = f"stopped at trainer.time_limit={limit:g}s after epoch {done}"
        return self._close(Status.TIMEOUT, error)

    def abandoned(self, why: str) -> None:
        """Left unfinished for another attempt to continue from its checkpoint."""
        self.log.info("%s", why)
        self._close_loggers(finish=False)  # not finished: the run's next attempt finishes them

    def _close_loggers(self, finish: bool = True) -> None:
        if self.loggers is None:
            return
        if finish:
            self.loggers.finish(self.record.fields)
        self.loggers.close()
        self._loggers_said()
        if self.loggers.names:
            self.record.update()
        self.loggers = None

    def _loggers_said(self) -> None:
        """Which loggers failed, and where they put the run, into the record (not yet written)."""
        assert self.loggers is not None
        self.record.fields["loggers_failed"] = dict(self.loggers.failed)
        self.record.fields[LOGGED_TO] = {**self.record.fields[LOGGED_TO], **self.loggers.logged_to}

    def _close(self, status: Status, error: str | None) -> dict[str, Any]:
        # Written before the loggers finish: what they upload (metrics.json) says how it ended.
        self.record.update(status=status, error=error, finished_at=now_iso())
        self._close_loggers()
        return self.record.fields
