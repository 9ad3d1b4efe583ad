"""One run's record on disk: metrics.json and history.csv, each written atomically.

Atomic means temp file in the same folder, fsync, os.replace, then fsync of the folder
(mlp_sweep.training.writes): a reader, or a kill at any instant, sees the old file or the new
one, never half of one, and a link planted at the name is replaced, never written through.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import platform
import socket
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# Every record's writer, here beside the record's names.
from mlp_sweep.training.writes import write_bytes_atomic as write_bytes_atomic

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
HYDRA_DIR = ".hydra"  # Hydra's output_subdir in every job folder (conf/config.yaml keeps it)
# A damaged file set aside so its run can go on: checkpoint.pt.unreadable, say.
UNREADABLE_SUFFIX = ".unreadable"
SCHEMA_VERSION = 1


def job_order(name: str) -> tuple[int, int, str]:
    """Sort key of a sweep's job folders: by job number, then any other folder by name."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "numpy", "mlp-sweep")


def remove_stale_temps(folder: Path) -> None:
    """Delete the temp files of writes a kill cut short in `folder` (write_bytes_atomic's
    `.<name>.*.tmp`): called by the folder's lock holder, so none is being written now."""
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf; a diverged run's losses are written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, obj: Mapping[str, Any]) -> None:
    text = json.dumps(_json_safe(dict(obj)), indent=2, sort_keys=False, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode())


def write_csv_atomic(path: Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """torch.save, atomically. `state` holds only tensors and plain Python values."""
    import torch  # here, not at the top: summaries and the writers need no torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint back on the CPU; weights_only=True never unpickles arbitrary objects."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not an mlp_sweep checkpoint")
    return state


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_state(where: Path | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the checkout holding this package, or nulls outside git."""
    where = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def slurm_job() -> str | None:
    """This process's SLURM job (array job_task for an array task), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def environment() -> dict[str, Any]:
    """Where and with what a run ran: enough to reproduce it from its own folder."""
    return {**_process_environment(), "pid": os.getpid(), "slurm_job": slurm_job()}


@functools.cache
def _process_environment() -> dict[str, Any]:
    """What holds for every run of this process, looked up once (two git commands and the
    package metadata took ~10 ms a run). The commit is the one whose code this process
    imported at start-up, which is what its runs ran, even if the checkout moves on."""
    return {
        "versions": versions(),
        "git": git_state(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
