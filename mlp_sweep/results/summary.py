"""Gather every run record of a sweep folder into one pandas table: summary.csv.

    python -m mlp_sweep.summary outputs/sweeps/<sweep>   # rebuild for any existing sweep

Every job folder gets its row, read by mlp_sweep.run.reader (whose rules settle each status):
one whose metrics.json is missing, torn or foreign is `incomplete` or `unreadable`, with a
warning naming the folder, so a summary never crashes on the runs it cannot read and never
hides them; a run whose record says `running` is `running elsewhere` while another process
holds its lock, else `incomplete` (its process died).
"""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlp_sweep.errors import MlpSweepError
from mlp_sweep.labels import (
    MULTIRUN_FILE,
    SUMMARY_FILE,
    SweepFileError,
    key_of,
    read_multirun,
    read_plain_yaml,
)
from mlp_sweep.run.reader import HYDRA_DIR, job_dirs, read_run, warning_line
from mlp_sweep.run.record import METRICS_FILE, write_bytes_atomic
from mlp_sweep.search.objectives import DEFAULT_OBJECTIVE, as_list, pareto_front
from mlp_sweep.search.study import STUDY_FILES
from mlp_sweep.status import FINISHED, Status

log = logging.getLogger(__name__)

TRIAL = "trial"
PARETO = "pareto"  # a search with several objectives: the run's trial is Pareto-optimal
BY_CONFIG_FILE = "summary_by_config.csv"
METRIC_COLUMNS = [
    "status",
    "test_acc",
    "test_loss",
    "train_loss",
    "best_test_acc",
    "best_epoch",
    "worst_class",
    "epochs_done",
    "train_seconds",
    "device",
    "seed",
    "run_dir",
    "error",
]
# Keys that already have a column of their own (device: the one actually used).
OWN_COLUMNS = {"seed", "device"}
AGGREGATED = ["test_acc", "test_loss", "train_loss", "best_test_acc", "train_seconds"]


class SummaryError(MlpSweepError):
    """A folder that cannot be summarized at all (missing, or holding no runs)."""


def parse_override(text: str) -> tuple[str, str]:
    return key_of(text), text.partition("=")[2]


def _job_overrides(job_dir: Path) -> list[str]:
    try:  # as plain data: a received folder's file is never trusted (labels.read_plain_yaml)
        listed = read_plain_yaml(job_dir / HYDRA_DIR / "overrides.yaml")
    except (OSError, SweepFileError):
        return []
    return [str(o) for o in listed] if isinstance(listed, list) else []


def cell(value: Any) -> Any:
    """A record's value as one table cell: a list or mapping as its JSON text."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def load_row(job_dir: Path, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """One summary row (without override columns) and the job's overrides; `extra`: more of
    the record's fields to carry (a search's objectives)."""
    record = read_run(job_dir)
    row: dict[str, Any] = {"run_dir": str(job_dir)}
    if not record.readable:
        log.warning("%s", warning_line(record))
        row.update(status=record.status, error=record.error)
        return row, _job_overrides(job_dir)
    row.update({k: record.get(k) for k in (*METRIC_COLUMNS, *extra) if k != "run_dir"})
    row.update(status=record.status, error=record.error, _params=record.params)
    return row, record.overrides or _job_overrides(job_dir)


def build_summary(sweep_dir: Path) -> pd.DataFrame:
    """One row per job folder, ordered by job number: swept keys, then metrics."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SummaryError(f"{sweep_dir}: no such folder")
    search = search_settings(sweep_dir)
    extra = tuple(name for name in search.objectives if name not in METRIC_COLUMNS)
    rows, keys = [], []
    for job_dir in job_dirs(sweep_dir):
        row, overrides = load_row(job_dir, extra)
        params = row.pop("_params", {})
        for text in overrides:
            key, value = parse_override(text)
            if key in OWN_COLUMNS:
                continue
            if key not in keys:
                keys.append(key)
            row[key] = cell(params.get(key, value))
        rows.append(row)
    if not rows:
        raise SummaryError(
            f"{sweep_dir}: no runs found (no job folders with .hydra/ or {METRICS_FILE})"
        )
    frame = pd.DataFrame(rows)
    for column in METRIC_COLUMNS:
        if column not in frame:
            frame[column] = None
    for column in ("best_epoch", "worst_class", "epochs_done", "seed"):  # whole, even by blanks
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    # The swept keys are those whose value differs between jobs; overrides common to every job
    # (data.limit_train=2000, say) stay in each run's metrics.json rather than in the table.
    swept = [key for key in keys if frame[key].astype(str).nunique(dropna=False) > 1]
    columns = list(METRIC_COLUMNS)
    if search.is_search:  # job number == trial number (times the seeds each trial trains)
        jobs = [_job_number(Path(d)) for d in frame["run_dir"]]
        frame[TRIAL] = pd.array([None if n is None else n // search.seeds for n in jobs], "Int64")
        swept = [TRIAL, *swept]
        if len(search.objectives) > 1:
            for name in extra:
                frame[name] = pd.to_numeric(frame.get(name), errors="coerce")
            frame[PARETO] = pareto_column(frame, search.objectives, search.directions)
            at = columns.index("run_dir")
            columns[at:at] = [*extra, PARETO]
    return frame[swept + columns]


@dataclass(frozen=True)
class SearchSettings:
    """What summary and plots need of a sweep's Optuna search (its multirun.yaml)."""

    is_search: bool = False
    seeds: int = 1
    objectives: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()


def search_settings(sweep_dir: Path) -> SearchSettings:
    """The search settings of the sweep in sweep_dir, read from its multirun.yaml; a plain
    sweep's (or a folder without that file) are the defaults. A file that cannot be read as
    Hydra writes it gives a search's defaults and one warning (per process and version of it)."""
    if not any((sweep_dir / name).exists() for name in STUDY_FILES):
        return SearchSettings()
    path = sweep_dir / MULTIRUN_FILE
    try:
        seen = path.stat()
    except OSError:
        return SearchSettings(is_search=True)
    return _search_in_file(path, seen.st_mtime_ns, seen.st_size)


@functools.lru_cache(maxsize=8)
def _search_in_file(path: Path, mtime_ns: int, size: int) -> SearchSettings:
    try:
        sweeper = read_multirun(path.parent)["hydra"]["sweeper"]
        objectives = as_list(sweeper.get("objective")) or [DEFAULT_OBJECTIVE]
        directions = as_list(sweeper.get("direction")) or ["maximize"]
        seeds = max(1, int(sweeper.get("seeds") or 1))
    except SweepFileError as err:
        log.warning("%s; the search's settings taken as the defaults", err)
        return SearchSettings(is_search=True)
    except (KeyError, TypeError, ValueError, AttributeError):  # not the sweeper's settings
        return SearchSettings(is_search=True)
    if len(objectives) != len(directions) or not set(directions) <= {"maximize", "minimize"}:
        objectives, directions = [DEFAULT_OBJECTIVE], ["maximize"]
    return SearchSettings(
        is_search=True,
        seeds=seeds,
        objectives=tuple(objectives),
        directions=tuple(directions),
    )


def pareto_column(
    frame: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]
) -> pd.Series:
    """Whether each run's trial is Pareto-optimal: among trials whose runs all finished with
    every objective's value (not pruned), no other trial's means are at least as good on every
    objective and better on one. As the sweeper's console lists them."""
    usable = frame["status"].isin(FINISHED) & frame["status"].ne(Status.PRUNED)
    values = frame[list(objectives)].apply(pd.to_numeric, errors="coerce")
    usable &= values.notna().all(axis=1)
    whole = usable.groupby(frame[TRIAL]).transform("all")
    means = values[whole].groupby(frame[TRIAL][whole]).mean()
    front = pareto_front(means.to_numpy().tolist(), directions)
    optimal = {trial for trial, best in zip(means.index, front, strict=True) if best}
    return frame[TRIAL].isin(optimal)


def _job_number(job_dir: Path) -> int | None:
    return int(job_dir.name) if job_dir.name.isdigit() else None


def override_keys(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in METRIC_COLUMNS]


def seeds_swept(frame: pd.DataFrame) -> bool:
    return bool(frame["seed"].nunique(dropna=True) > 1)


def by_config(frame: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per configuration, seeds pooled: n_runs, n_ok, the sweeps it ran in (a frame
    from mlp_sweep.load), and the mean and std of AGGREGATED over its `ok` runs.

    `keys` name a configuration ("configuration": all runs in one); by default a summary's
    swept keys, and the device where it differs between runs.
    """
    if keys is None:
        keys = override_keys(frame) + (["device"] if frame["device"].nunique() > 1 else [])
    counts = {"sweeps": ("sweep", "nunique")} if "sweep" in frame else {}
    keys = list(keys) or ["configuration"]
    frame = frame.assign(ok=frame["status"].eq(Status.OK), configuration="all")
    frame[AGGREGATED] = frame[AGGREGATED].apply(pd.to_numeric, errors="coerce")
    sizes = frame.groupby(keys, dropna=False, sort=False).agg(
        n_runs=("status", "size"), n_ok=("ok", "sum"), **counts
    )
    stats = (
        frame[frame["ok"]].groupby(keys, dropna=False, sort=False)[AGGREGATED].agg(["mean", "std"])
    )
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    return sizes.join(stats).reset_index()


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode()


def write_summary(sweep_dir: Path) -> pd.DataFrame:
    """Build summary.csv (and summary_by_config.csv when seeds were swept) in sweep_dir."""
    sweep_dir = Path(sweep_dir)
    frame = build_summary(sweep_dir)
    write_bytes_atomic(sweep_dir / SUMMARY_FILE, _csv_bytes(frame))
    if seeds_swept(frame):
        write_bytes_atomic(sweep_dir / BY_CONFIG_FILE, _csv_bytes(by_config(frame)))
    return frame


def format_table(frame: pd.DataFrame) -> str:
    """The summary as a terminal table: metrics rounded, the long run_dir and error left out."""
    shown = frame.drop(columns=["run_dir", "error"]).copy()
    for column in override_keys(shown):  # 0.01 and 1e-12 both readable, not 1.000000e-02
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: f"{v:g}")
    for column in ("test_acc", "best_test_acc", "test_loss", "train_loss"):
        shown[column] = pd.to_numeric(shown[column], errors="coerce").round(4)
    shown["train_seconds"] = pd.to_numeric(shown["train_seconds"], errors="coerce").round(1)
    lines = [shown.to_string(index=False)]
    for run_dir, status, error in frame[["run_dir", "status", "error"]].itertuples(index=False):
        if error and isinstance(error, str):
            lines.append(f"{status} {run_dir}: {error}")
    return "\n".join(lines)


def count_failed(frame: pd.DataFrame) -> int:
    return int((~frame["status"].isin(FINISHED)).sum())
