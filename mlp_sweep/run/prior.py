"""What a run folder already holds, and whether it belongs to this config: checked for every
job before any starts. No torch here, so the command's own process needs none for it (a
checkpoint is opened, with torch, only where a folder has one and no record)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mlp_sweep.config import Config, flatten, is_run_setting
from mlp_sweep.errors import ConfigMismatch
from mlp_sweep.run.reader import Record, read_run
from mlp_sweep.run.record import CHECKPOINT_FILE, load_checkpoint


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


def prior_record(run_dir: Path, cfg: Config) -> Record:
    """What run_dir already holds (mlp_sweep.run.reader's Record: `incomplete` for a fresh
    folder), after checking that it belongs to this config.

    Raises ConfigMismatch when the record or checkpoint there belongs to another config.
    A torn or foreign metrics.json is no finished result, so it does not block a re-run.
    """
    params = run_params(cfg)
    record = read_run(run_dir)
    old = record.params if record.readable else None
    if old is None and (run_dir / CHECKPOINT_FILE).exists():
        try:
            old = json.loads(load_checkpoint(run_dir / CHECKPOINT_FILE)["params"])
        except Exception:  # a damaged checkpoint says nothing of its config: the run sets it aside
            old = None
    if old is not None and _differing(old, params):
        raise ConfigMismatch(
            f"{run_dir} holds a run of another config ({_differences(old, params)}); "
            "choose a new folder (hydra.sweep.dir / hydra.run.dir) or delete that one"
        )
    return record
