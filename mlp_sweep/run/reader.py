"""The one reader of run folders: metrics.json as a typed, frozen Record, its status settled.

Every consumer of a run folder (the summary, `mlp_sweep.load`, the progress display, the
search, the launchers' skip test, a resume) reads it here, so two views of one folder cannot
disagree. The rules, applied once:

- no metrics.json: `incomplete` (the run never wrote a record);
- a metrics.json that is torn, foreign or not JSON: `unreadable`;
- `running` while another process (or this one) holds the folder's lock: `running elsewhere`;
- `running` with the lock free: `incomplete` (its process died; --resume continues it).

The record's own words stay in `fields` (metrics.json as written, `{}` where none was read).
No torch and no pandas here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mlp_sweep.run import lock
from mlp_sweep.run.record import HYDRA_DIR, METRICS_FILE, job_order
from mlp_sweep.status import FINISHED, Status

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Record:
    """What a run folder holds: its settled status and its metrics.json, read-only."""

    run_dir: Path
    status: Status
    error: str | None = None
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    problem: str | None = None  # why metrics.json could not be read, for a warning line

    @property
    def finished(self) -> bool:
        """Final: never trained again (a resume skips it)."""
        return self.status in FINISHED

    @property
    def readable(self) -> bool:
        """Whether metrics.json was read (a dead run's record is readable, and incomplete)."""
        return bool(self.fields)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def params(self) -> dict[str, Any]:
        """The run's whole flat config, as its record holds it."""
        params = self.fields.get("params")
        return dict(params) if isinstance(params, dict) else {}

    @property
    def overrides(self) -> list[str]:
        listed = self.fields.get("overrides")
        return [str(o) for o in listed] if isinstance(listed, list) else []

    @property
    def epochs_done(self) -> int:
        return _int(self.fields.get("epochs_done"))

    @property
    def attempt(self) -> int:
        """How many times the run started in this folder (0: never)."""
        return max(_int(self.fields.get("attempt")), 1) if self.fields else 0

    @property
    def train_seconds(self) -> float:
        value = self.fields.get("train_seconds")
        return float(value) if isinstance(value, int | float) else 0.0

    @property
    def loggers_failed(self) -> dict[str, str]:
        failed = self.fields.get("loggers_failed")
        return dict(failed) if isinstance(failed, dict) else {}

    @property
    def git_commit(self) -> str | None:
        git = self.fields.get("git")
        return git.get("commit") if isinstance(git, dict) else None

    def as_dict(self) -> dict[str, Any]:
        """metrics.json's fields with the settled status and error (what a run returns)."""
        return {**self.fields, "status": self.status, "error": self.error}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def read_fields(run_dir: Path) -> dict[str, Any]:
    """metrics.json as written. Raises OSError or ValueError when missing, torn or foreign."""
    fields = json.loads((Path(run_dir) / METRICS_FILE).read_bytes())
    if not isinstance(fields, dict) or fields.get("status") not in set(Status):
        raise ValueError(f"{Path(run_dir) / METRICS_FILE} is not an mlp_sweep record")
    return fields


def read_run(run_dir: Path) -> Record:
    """The run folder's Record, its status settled by the module's rules."""
    run_dir = Path(run_dir)
    try:
        fields = read_fields(run_dir)
    except FileNotFoundError:
        return Record(run_dir, Status.INCOMPLETE, f"no {METRICS_FILE}", problem="missing")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return Record(run_dir, Status.UNREADABLE, f"unreadable {METRICS_FILE}", problem=str(err))
    status, error = Status(fields["status"]), fields.get("error")
    if status == Status.RUNNING:
        holder = lock.holder(run_dir)
        if holder is not None:
            status, error = Status.RUNNING_ELSEWHERE, f"being trained by {holder}"
        else:
            status, error = Status.INCOMPLETE, error or "run did not finish"
    return Record(run_dir, status, error, MappingProxyType(fields))


def elsewhere(run_dir: Path, why: str) -> Record:
    """The Record of a folder another process is training (reported, never written)."""
    fields = {"run_dir": str(run_dir), "test_acc": None, "best_test_acc": None}
    return Record(run_dir, Status.RUNNING_ELSEWHERE, why, MappingProxyType(fields))


def is_job_dir(path: Path) -> bool:
    """A folder of a sweep's job: Hydra made it (.hydra/) or it holds a record."""
    return (path / HYDRA_DIR).is_dir() or (path / METRICS_FILE).exists()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders, by job number (then any other folder by name)."""
    try:
        entries = [Path(e.path) for e in os.scandir(sweep_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    return sorted((d for d in entries if is_job_dir(d)), key=lambda d: job_order(d.name))


def warning_line(record: Record) -> str:
    """The one warning line for a folder whose record could not be read."""
    return f"{record.run_dir / METRICS_FILE}: {record.problem}; listed as {record.status}"
