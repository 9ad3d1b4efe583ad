"""One run, start to finish: seed, data, model, training, and its record in its own folder.

Callable without Hydra: `run(Config(), Path("somewhere"))`. Three promises:

- A run that raises is recorded as `failed` with the error's one-line message instead of
  propagating, so one bad configuration cannot sink a sweep or cost it its summary.
- A folder whose record says the run finished (`ok` or `diverged`) with the same config is
  left alone: the run is skipped. A different config for that folder is refused
  (ConfigMismatch) before anything in it is touched.
- An unfinished run continues from its last checkpoint, and on CPU ends with the same numbers
  as an uninterrupted one.
- One writer per folder: a run trains only while holding its folder's lock (mlp_sweep.lock);
  a folder another process is training is left alone and reported `running elsewhere`.

Ctrl-C and SIGTERM stop a run between two instructions: it records itself `interrupted` (its
checkpoint holds the last finished epoch) and the interrupt goes on up to the command.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from mlp_sweep import lock, precision, threads
from mlp_sweep.config import Config, flatten, is_run_setting, validate
from mlp_sweep.data import Data, load_data
from mlp_sweep.device import resolve_device
from mlp_sweep.errors import ConfigMismatch, MlpSweepError
from mlp_sweep.interrupt import signal_name, signals_raise
from mlp_sweep.loggers import LoggerSet, open_loggers, run_info
from mlp_sweep.model import Model, build_mlp
from mlp_sweep.record import (
    CHECKPOINT_FILE,
    FINISHED,
    HISTORY_FILE,
    METRICS_FILE,
    RUNNING_ELSEWHERE,
    SCHEMA_VERSION,
    environment,
    load_checkpoint,
    now_iso,
    read_metrics,
    save_checkpoint,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
)
from mlp_sweep.train import EpochStats, History, fit, make_optimizer

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [f.name for f in dataclasses.fields(EpochStats)]
TRACEBACK_FILE = "traceback.txt"


@dataclass(frozen=True)
class JobInfo:
    """Where a run sits in a sweep; all optional so a run can stand alone."""

    num: int | None = None
    overrides: list[str] = field(default_factory=list)
    # The sweep's folder, for a job of a sweep (its runs share a visdom env, say).
    sweep_dir: Path | None = None


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(err, MlpSweepError):
        return message
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def run_params(cfg: Config) -> dict[str, Any]:
    """The flat, dotted config as it reads back from metrics.json, for comparisons."""
    params: dict[str, Any] = json.loads(json.dumps(flatten(dataclasses.asdict(cfg))))
    return params


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(
        k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not is_run_setting(k)
    )


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = _differing(old, new)
    shown = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def prior_record(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """What run_dir already holds for this config: its record, or None for a fresh folder.

    Raises ConfigMismatch when the record or checkpoint there belongs to another config.
    A torn or foreign metrics.json is no finished result, so it does not block a re-run.
    """
    params = run_params(cfg)
    try:
        record: dict[str, Any] | None = read_metrics(run_dir)
    except (OSError, ValueError):
        record = None
    old = record.get("params") if record else None
    if old is None and (run_dir / CHECKPOINT_FILE).exists():
        try:
            old = json.loads(load_checkpoint(run_dir / CHECKPOINT_FILE)["params"])
        except (OSError, ValueError, KeyError, RuntimeError):
            old = None
    if old is not None and _differing(old, params):
        raise ConfigMismatch(
            f"{run_dir} holds a run of another config ({_differences(old, params)}); "
            "choose a new folder (hydra.sweep.dir / hydra.run.dir) or delete that one"
        )
    return record


class RunRecord:
    """metrics.json for one run, rewritten atomically as the run moves on."""

    def __init__(self, cfg: Config, run_dir: Path, job: JobInfo) -> None:
        self.path = run_dir / METRICS_FILE
        self.history_path = run_dir / HISTORY_FILE
        self.fields: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "status": "running",
            "error": None,
            "job_num": job.num,
            "overrides": list(job.overrides),
            # Re-runs this configuration at git.commit (the seed is in the config).
            "command": shlex.join(["python", "-m", "mlp_sweep", *job.overrides]),
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
            "resumed_from_epoch": None,
            "started_at": now_iso(),
            "finished_at": None,
            "deterministic": None,
            "threads": None,
            "loggers": [],
            "loggers_failed": {},
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


def _checkpoint_state(
    params: dict[str, Any],
    model: Model,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: History,
) -> dict[str, Any]:
    return {
        "params": json.dumps(params),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": [e.as_dict() for e in history.epochs],
        "status": history.status,
    }


def _restore(
    state: dict[str, Any],
    model: Model,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> History:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return History([EpochStats(**e) for e in state["history"]], status=state["status"])


def configure_process(cfg: Config, device: torch.device) -> None:
    """The process-wide settings a run trains under: determinism, torch threads, matmul
    precision (a worker that ran another job before keeps none of its settings)."""
    _set_determinism(cfg.trainer.deterministic, cfg.trainer.compile)
    torch.set_num_threads(threads.resolve(cfg.trainer.threads))
    precision.configure(cfg.trainer.precision, device)


def start_state(
    cfg: Config, data: Data, device: torch.device, checkpoint: Path
) -> tuple[Model, torch.optim.Optimizer, torch.Generator, History]:
    """The run's model, optimizer and batch generator, drawn from its seed as every run draws
    them (a fused run too: the same seed gives the same weights and batches), continued from
    its checkpoint where trainer.checkpoint is on and one exists. Loading data draws nothing
    from torch's RNG, so it may come before or after."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    dtype = precision.dtype(cfg.trainer.precision)
    model = build_mlp(cfg.model, data.num_features, data.num_classes, device, dtype)
    optimizer = make_optimizer(model.parameters(), cfg.optim)
    history = History()
    if cfg.trainer.checkpoint and checkpoint.exists():
        history = _restore(load_checkpoint(checkpoint), model, optimizer, generator)
    return model, optimizer, generator, history


def compiled(model: Model) -> Model:
    """torch.compile of the model; the checkpoint keeps saving the model itself. On CUDA the
    "reduce-overhead" mode captures the steps in CUDA graphs (the MLP's kernels are small)."""
    if not isinstance(model, torch.nn.Module):  # the functional impl trains eagerly
        return model
    device = next(model.parameters()).device
    mode = "reduce-overhead" if device.type == "cuda" else None
    return cast(Model, torch.compile(model, mode=mode))


def _set_determinism(enabled: bool, compiling: bool) -> None:
    if enabled:
        # cuBLAS needs this before its first use to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if compiling or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(enabled)
    else:
        # The public call imports torch._inductor (a second per process) only to set its own
        # flag, which matters to torch.compile alone: without it, set the ATen flag directly.
        torch._C._set_deterministic_algorithms(enabled)


def run(cfg: Config, run_dir: Path, job: JobInfo | None = None) -> dict[str, Any]:
    """Train and record one configuration in run_dir. Returns the final metrics.json fields.

    Skips a run that already finished there; resumes one that did not; leaves alone one that
    another process is training (status `running elsewhere`, nothing written).
    """
    prior = prior_record(run_dir, cfg)  # ConfigMismatch propagates: nothing touched
    if prior is not None and prior.get("status") in FINISHED:  # final: safe to read unlocked
        log.info("%s: already finished (%s), skipped", run_dir, prior["status"])
        return prior
    try:
        with lock.holding(run_dir, since=now_iso()):
            prior = prior_record(run_dir, cfg)  # it may have finished while we waited
            if prior is not None and prior.get("status") in FINISHED:
                log.info("%s: finished elsewhere meanwhile (%s), skipped", run_dir, prior["status"])
                return prior
            with signals_raise():
                return _train(cfg, run_dir, job or JobInfo())
    except lock.RunLocked as err:
        log.warning("%s", err)
        return {
            "status": RUNNING_ELSEWHERE,
            "error": str(err),
            "test_acc": None,
            "best_test_acc": None,
            "run_dir": str(run_dir),
        }


def _train(cfg: Config, run_dir: Path, job: JobInfo) -> dict[str, Any]:
    (run_dir / TRACEBACK_FILE).unlink(missing_ok=True)  # an earlier failure's, now retried
    record = RunRecord(cfg, run_dir, job)
    record.update()
    if job.num is not None:  # the launch line, here rather than on the sweep's console
        log.info("job #%d: %s", job.num, " ".join(job.overrides))
    loggers = open_loggers(cfg.logger)
    try:
        status, error = _fit_and_record(cfg, run_dir, job, record, loggers)
    finally:  # also on an interrupt: the loggers get their bounded time to finish
        loggers.finish(record.fields)
        record.fields["loggers_failed"] = loggers.close()
        if loggers.names:  # written now: an interrupt does not reach the final write below
            record.update()
    record.update(status=status, error=error, finished_at=now_iso())
    return record.fields


def _fit_and_record(
    cfg: Config, run_dir: Path, job: JobInfo, record: RunRecord, loggers: LoggerSet
) -> tuple[str, str | None]:
    """Train, recording as it goes. Returns (status, error); raises only on an interrupt."""
    checkpoint = run_dir / CHECKPOINT_FILE
    record.fields["loggers"] = loggers.names  # written with the device, below
    kept = History()  # the epochs the checkpoint holds: what an interrupted record reports
    try:
        validate(cfg)
        device = resolve_device(cfg.device)
        configure_process(cfg, device)
        record.update(
            device=str(device),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            threads=torch.get_num_threads(),
        )
        tic = time.perf_counter()
        data = load_data(cfg.data, device, precision.dtype(cfg.trainer.precision))
        log.info(
            "data %s: %d train / %d test on %s (%.1fs)",
            cfg.data.name.name,
            len(data.x_train),
            len(data.x_test),
            device,
            time.perf_counter() - tic,
        )
        model, optimizer, generator, history = start_state(cfg, data, device, checkpoint)
        if history.epochs:
            kept.epochs = list(history.epochs)
            record.update(resumed_from_epoch=len(history.epochs))
            log.info("resumed from %s after epoch %d", checkpoint, len(history.epochs))
        params = record.fields["params"]
        if loggers.names:
            info = run_info(run_dir, params, job.num, job.overrides, job.sweep_dir)
            loggers.start(info, history.epochs)

        def on_epoch(history: History) -> None:
            e = history.epochs[-1]
            log.info(
                "epoch %d/%d  train_loss %.4f  test_loss %.4f  test_acc %.4f  (%.2fs)",
                e.epoch,
                cfg.trainer.epochs,
                e.train_loss,
                e.test_loss,
                e.test_acc,
                e.seconds,
            )
            if cfg.trainer.checkpoint:
                save_checkpoint(
                    checkpoint, _checkpoint_state(params, model, optimizer, generator, history)
                )
            kept.epochs = list(history.epochs)
            record.fields["loggers_failed"] = dict(loggers.failed)
            record.epochs_done(history)
            loggers.epoch(e)

        trained = compiled(model) if cfg.trainer.compile else model
        with precision.autocast(cfg.trainer.precision, device):
            history = fit(
                trained, optimizer, data, cfg.trainer, cfg.loss, generator, history, on_epoch
            )
        if record.fields["epochs_done"] != len(history.epochs):  # a checkpoint held them all
            record.epochs_done(history)
        if history.status == "diverged":
            log.warning("run diverged at epoch %d: non-finite loss", len(history.epochs))
        return history.status, None
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM: recorded, then passed on
        # The signal may land between the checkpoint and the record: say what the checkpoint
        # holds, so history.csv, metrics.json and the resume agree.
        record.epochs_done(kept)
        record.update(
            status="interrupted",
            error=f"interrupted by {signal_name(err)} after epoch {record.fields['epochs_done']}",
            finished_at=now_iso(),
        )
        log.warning("run interrupted (%s); resume continues from its checkpoint", signal_name(err))
        raise
    except Exception as err:  # recorded, not raised: the sweep goes on
        error = one_line(err)
        # The console gets one line; the whole story goes beside the record.
        trace = "".join(traceback.format_exception(err))
        write_bytes_atomic(run_dir / TRACEBACK_FILE, trace.encode())
        log.error("run failed: %s (traceback: %s)", error, run_dir / TRACEBACK_FILE)
        return "failed", error
