"""Runs from any number of sweeps as one pandas frame, and their per-epoch histories.

    import mlp_sweep
    runs = mlp_sweep.load("outputs/sweeps")          # every run under the folder
    curves = mlp_sweep.history(runs[runs["model.act"] == "selu"])

A run is a folder holding a metrics.json; its sweep is the folder above it when that holds the
sweep's multirun.yaml (a single run is its own sweep). Each row carries the run's whole flat
config (metrics.json's params: every key, not only the swept ones, so sweeps that swept
different keys line up), its status, final and best metrics, and where its history is. A run
whose record cannot be read is listed with status `unreadable`, never dropped in silence; each
status is mlp_sweep.run.reader's, as the summary's (a dead `running` run is `incomplete`).

The same config and seed in two sweeps is a rerun: the `rerun` column marks every copy, and
`reruns="newest"` keeps only the latest one. Reruns of the same code (git commit) on a CPU
give the same numbers; where they do not, one warning line says which runs disagree.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from mlp_sweep.config import is_run_setting
from mlp_sweep.labels import MLFLOW_ARTIFACTS, MULTIRUN_FILE
from mlp_sweep.loggers.run_info import TB_DIR
from mlp_sweep.results.summary import METRIC_COLUMNS, cell
from mlp_sweep.run.reader import HYDRA_DIR, read_run, warning_line
from mlp_sweep.run.record import HISTORY_FILE, METRICS_FILE, job_order
from mlp_sweep.status import Status

log = logging.getLogger(__name__)

ALL_FILE = "summary_all.csv"  # python -m mlp_sweep.summary on a folder of sweeps
ALL_BY_CONFIG_FILE = "summary_all_by_config.csv"
# The record's fields a row carries, beside the flat config (params) and where it lives: the
# summary's metrics (its run_dir and seed come from elsewhere here), and a few more.
FIELDS = (
    *(c for c in METRIC_COLUMNS if c not in ("run_dir", "seed")),
    "n_params",
    "started_at",
    "finished_at",
)
FRONT = ["sweep", "job", "run_dir", "history"]  # the columns that say where a row comes from
# Never hold runs (logger=mlflow's artifacts hold copies of the runs' records).
SKIPPED = {HYDRA_DIR, ".submitit", TB_DIR, "__pycache__", MLFLOW_ARTIFACTS}
TOP_KEYS = ("loss", "seed")  # the config's undotted keys that change what a run computes


def _runs_under(path: Path) -> Iterator[Path]:
    """Every run folder at or under path (a folder with a metrics.json), in a stable order."""
    if (path / METRICS_FILE).is_file():
        yield path
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: job_order(e.name))
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and entry.name not in SKIPPED:
            yield from _runs_under(Path(entry.path))


def _expand(paths: tuple[str | os.PathLike[str], ...]) -> list[Path]:
    found: list[Path] = []
    for given in paths:
        text = os.fspath(given)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches:
            log.warning("%s: matches nothing", text)
        found += [Path(m) for m in matches]
    return found


def _row(run_dir: Path) -> dict[str, Any]:
    sweep = run_dir.parent if (run_dir.parent / MULTIRUN_FILE).is_file() else run_dir
    row: dict[str, Any] = {
        "sweep": str(sweep),
        "job": int(run_dir.name) if run_dir.name.isdigit() and sweep != run_dir else None,
        "run_dir": str(run_dir),
        "history": str(run_dir / HISTORY_FILE),
    }
    record = read_run(run_dir)
    if not record.readable:
        log.warning("%s", warning_line(record))
        return {**row, "status": record.status.value, "error": record.error}
    row.update({key: cell(value) for key, value in record.params.items() if key != "device"})
    row.update({key: record.get(key) for key in FIELDS})  # device: the one the run used
    row.update(status=record.status.value, error=record.error, git=record.git_commit)
    return row


def load(*paths: str | os.PathLike[str], reruns: Literal["all", "newest"] = "all") -> pd.DataFrame:
    """One row per run found under `paths` (sweep folders, folders of sweeps, globs, single
    run folders): where it is (`sweep`, `job`, `run_dir`, `history`: its history.csv), its
    status and metrics, and its whole flat config, one column per key (`model.act`, ...).

    `rerun` marks runs whose config and seed appear in more than one folder; `reruns="newest"`
    keeps only the latest of each (by `finished_at`, else `started_at`).
    """
    if reruns not in ("all", "newest"):
        raise ValueError(f"reruns={reruns!r}: choose 'all' or 'newest'")
    unique: dict[str, dict[str, Any]] = {}  # a run reached through two paths counts once
    for path in _expand(paths or (".",)):
        for run in _runs_under(path):
            key = str(run.resolve())
            if key not in unique:
                unique[key] = _row(run)
    if unique:
        frame = pd.DataFrame(list(unique.values()))
        frame = frame[[*FRONT, *[c for c in frame.columns if c not in FRONT]]]
    else:
        frame = pd.DataFrame(columns=[*FRONT, *FIELDS, "git"])
    frame["job"] = frame["job"].astype("Int64")
    config = config_columns(frame)
    frame["rerun"] = frame.duplicated(config, keep=False) if config else False
    if config and frame["rerun"].any():
        _warn_disagreeing(frame, config)
    if reruns == "newest" and config:
        order = frame.assign(_when=frame["finished_at"].fillna(frame["started_at"])).sort_values(
            "_when", kind="stable", na_position="first"
        )
        frame = frame.loc[sorted(order.drop_duplicates(config, keep="last").index)]
    return frame.reset_index(drop=True)


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The flat config's columns of a loaded frame (what makes two runs the same run): the
    dotted keys and `loss` and `seed`, without those that only say how a run executes
    (threads, time limit, loggers)."""
    reserved = {*FRONT, *FIELDS, "git", "rerun"}
    return [
        c
        for c in frame.columns
        if c not in reserved and ("." in c or c in TOP_KEYS) and not is_run_setting(c)
    ]


def _warn_disagreeing(frame: pd.DataFrame, config: list[str]) -> None:
    """One line for reruns of one commit on a CPU whose final test accuracy differs."""
    same = frame[frame["rerun"] & frame["device"].eq("cpu") & frame["status"].eq(Status.OK)]
    for _, group in same.groupby([*config, "git"], dropna=False):
        if group["test_acc"].nunique() > 1:
            runs = ", ".join(group["run_dir"])
            log.warning(
                "reruns of one config and seed at one commit on CPU disagree (test_acc %s): %s",
                " vs ".join(f"{v:.4f}" for v in group["test_acc"]),
                runs,
            )


def history(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch long frame of the frame's runs: each history.csv row (epoch, train_loss,
    test_loss, test_acc, seconds) with its run's `sweep`, `job` and `run_dir`, and the
    frame's config columns, for grouping and plotting. Runs without a history are left out."""
    keep = [c for c in ["sweep", "job", "run_dir", *config_columns(frame)] if c in frame]
    parts = []
    for row in frame[keep].itertuples(index=False):
        path = Path(row.run_dir) / HISTORY_FILE
        try:
            epochs = pd.read_csv(path)
        except (OSError, ValueError):
            continue
        for key, value in zip(keep, row, strict=True):
            epochs[key] = value
        parts.append(epochs)
    if not parts:
        return pd.DataFrame(columns=[*keep, "epoch", "train_loss", "test_loss", "test_acc"])
    long = pd.concat(parts, ignore_index=True)
    return long[[*keep, *[c for c in long.columns if c not in keep]]]


def varying(frame: pd.DataFrame) -> list[str]:
    """The config columns whose value differs between the frame's runs, seed left out."""
    return [
        c
        for c in config_columns(frame)
        if c != "seed" and frame[c].astype(str).nunique(dropna=False) > 1
    ]
