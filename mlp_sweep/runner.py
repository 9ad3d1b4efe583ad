"""One run, start to finish: seed, data, model, training, and its record in its own folder.

Callable without Hydra: `run(Config(), Path("somewhere"))`. A run that raises is recorded as
`failed` with the error's one-line message instead of propagating, so one bad configuration
cannot sink a sweep or cost it its summary.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlp_sweep.config import Config, flatten, validate
from mlp_sweep.data import load_data
from mlp_sweep.device import resolve_device
from mlp_sweep.errors import MlpSweepError
from mlp_sweep.model import build_mlp
from mlp_sweep.record import (
    HISTORY_FILE,
    METRICS_FILE,
    SCHEMA_VERSION,
    environment,
    now_iso,
    write_csv_atomic,
    write_json_atomic,
)
from mlp_sweep.train import EpochStats, History, fit, make_optimizer

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [f.name for f in dataclasses.fields(EpochStats)]


@dataclass(frozen=True)
class JobInfo:
    """Where a run sits in a sweep; all optional so a run can stand alone."""

    num: int | None = None
    overrides: list[str] = field(default_factory=list)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(err, MlpSweepError):
        return message
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


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
            "seed": cfg.seed,
            "device_requested": cfg.device,
            "device": None,
            "params": flatten(dataclasses.asdict(cfg)),
            "test_acc": None,
            "test_loss": None,
            "train_loss": None,
            "best_test_acc": None,
            "best_epoch": None,
            "epochs_done": 0,
            "train_seconds": 0.0,
            "started_at": now_iso(),
            "finished_at": None,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "torch_threads": torch.get_num_threads(),
            **environment(),
        }

    def update(self, **values: Any) -> None:
        self.fields.update(values)
        write_json_atomic(self.path, self.fields)

    def epoch_done(self, history: History) -> None:
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


def run(cfg: Config, run_dir: Path, job: JobInfo | None = None) -> dict[str, Any]:
    """Train and record one configuration in run_dir. Returns the final metrics.json fields."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(cfg, run_dir, job or JobInfo())
    record.update()
    try:
        validate(cfg)
        device = resolve_device(cfg.device)
        record.update(device=str(device))
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        tic = time.perf_counter()
        data = load_data(cfg.data, device)
        log.info(
            "data %s: %d train / %d test on %s (%.1fs)",
            cfg.data.name.name,
            len(data.x_train),
            len(data.x_test),
            device,
            time.perf_counter() - tic,
        )
        model = build_mlp(cfg.model, data.num_features, data.num_classes, device)
        optimizer = make_optimizer(model.parameters(), cfg.optim)

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
            record.epoch_done(history)

        history = fit(model, optimizer, data, cfg.trainer, cfg.loss, generator, on_epoch=on_epoch)
        status, error = history.status, None
        if status == "diverged":
            log.warning("run diverged at epoch %d: non-finite loss", len(history.epochs))
    except Exception as err:  # recorded, not raised: the sweep goes on
        status, error = "failed", one_line(err)
        log.error("run failed: %s", error, exc_info=not isinstance(err, MlpSweepError))
    record.update(status=status, error=error, finished_at=now_iso())
    return record.fields
