"""What every logger is told about the run it watches: its name, group and hyperparameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlp_sweep import labels
from mlp_sweep.config import is_run_setting

TB_DIR = "tb"  # <sweep>/tb/<run label>/: the sweep's TensorBoard runs, named as users think

# The record's key for where each logger put the run ({"mlflow": {"run_id": ...}}): what a
# logger's start() returns, kept so that the run's next attempt continues the same run.
LOGGED_TO = "logged_to"

# Shown in TensorBoard's HParams view for every run, beside the keys a job overrides.
CORE_HPARAMS = (
    "model.act",
    "model.init",
    "model.hidden",
    "optim.name",
    "optim.lr",
    "trainer.batch_size",
    "trainer.epochs",
    "data.name",
    "seed",
)


@dataclass(frozen=True)
class RunInfo:
    """What a logger needs to know about the run it watches."""

    run_dir: Path
    label: str  # names the run in legends: "3: model.act=selu optim.lr=0.1"
    group: str  # the sweep's folder name (its runs share one visdom env), or "runs"
    params: dict[str, Any]  # the flat config, as in metrics.json
    hparams: dict[str, Any] = field(default_factory=dict)  # the keys worth comparing
    # Where TensorBoard's event files go: a sweep's run in <sweep>/tb/<its label>, so that
    # TensorBoard's run selector shows "tb/3 model.act=selu" rather than "3"; a single run in
    # its own folder.
    events_dir: Path | None = None
    sweep_dir: Path | None = None  # None for a single run
    job: int | None = None  # the job's number in its sweep
    device: str | None = None  # what it trains on: "cpu", "cuda:0"
    git_commit: str | None = None  # the commit of the code it runs
    # Where earlier attempts of the run were logged, by logger name (the record's
    # `logged_to`): the MLflow run a resumed run continues.
    logged_to: dict[str, Any] = field(default_factory=dict)
    # The job's config as Hydra saves it in <run>/.hydra/config.yaml (which a stack's member
    # only gets once its stack has trained).
    config_yaml: str = ""


def run_info(
    run_dir: Path,
    params: dict[str, Any],
    num: int | None,
    overrides: list[str],
    sweep_dir: Path | None,
    record: dict[str, Any] | None = None,
    config_yaml: str = "",
) -> RunInfo:
    """record: the run's record so far (device, git) with what earlier attempts kept."""
    if sweep_dir is None:  # a single run: named by its folder, grouped with the other runs
        label, group = run_dir.name, "runs"
    else:
        label = f"{num}: {labels.label(overrides, labels.swept_in_folder(sweep_dir))}"
        group = sweep_dir.name
    overridden = [labels.key_of(o) for o in overrides]
    keys = list(CORE_HPARAMS) + [
        k for k in overridden if k in params and k not in CORE_HPARAMS and not is_run_setting(k)
    ]
    label = label.strip()
    events = run_dir if sweep_dir is None else sweep_dir / TB_DIR / folder_name(label)
    record = record or {}
    git = record.get("git")
    return RunInfo(
        run_dir,
        label,
        group,
        params,
        {k: params.get(k) for k in keys},
        events,
        sweep_dir=sweep_dir,
        job=num,
        device=record.get("device"),
        git_commit=git.get("commit") if isinstance(git, dict) else None,
        logged_to=dict(record.get(LOGGED_TO) or {}),
        config_yaml=config_yaml,
    )


def folder_name(label: str, limit: int = 120) -> str:
    """A run's label as a folder name: "3: model.act=selu" -> "3 model.act=selu"."""
    name = re.sub(r'[/\\:*?"<>|\s]+', " ", label).strip()
    return name[:limit].rstrip() or "run"
