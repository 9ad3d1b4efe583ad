"""The feature x launcher matrix: every feature of a run, on every launcher, gives the same
folders, records, statuses and numbers (tests/test_feature_matrix.py; SLURM's row in
tests/test_slurm.py, which owns the cluster).

One `Matrix` is the same four real multiruns of the entry point on one launcher:

- a grid with the loggers installed here (tensorboard: steps.csv, events; mlflow: its local
  store in the sweep), a run that diverges and two that fail;
- a search (Optuna, ASHA) whose pruner stops some of its trials;
- a sweep stopped at its time limit, then resumed without it;
- a sweep killed (SIGKILL, the whole process group) while its first job trains, read by
  `mlp_sweep.load` and by the summary (they must agree), then resumed (with the same loggers:
  the resumed run continues its MLflow run, adding no epoch twice).

`shape()` reduces each run folder to what must not depend on the launcher: its files, its
record's keys, its status; `numbers()` to its history, which must match (exactly where the
runs train alone; within fp64's last bits where one launcher stacks them).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import importlib.util
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import mlp_sweep
from mlp_sweep.results.summary import write_summary
from mlp_sweep.training.files import IDX_FILES
from tests.helpers import cli_env, epochs_written, group_gone, run_command, wait_for

# The search stage needs the search extra (optuna); without it the other stages still run.
SEARCHED = importlib.util.find_spec("optuna") is not None
# Tiny and in fp64 (a stack sums in another order than a run alone: fp64 keeps that to the
# last bits). lr 0.1 unless a sweep says otherwise.
TINY = [
    "data=synthetic",
    "data.n_train=400",
    "data.n_test=100",
    "model.hidden=[32]",
    "trainer.batch_size=50",
    "trainer.epochs=3",
    "trainer.precision=fp64",
    "trainer.threads=1",
    "optim.lr=0.1",
]
LAUNCHERS = {
    "basic": ["hydra/launcher=basic"],
    "parallel": ["hydra/launcher=parallel"],
    "fused": ["hydra/launcher=fused", "hydra.launcher.fuse=always"],
}
# Files a launcher may add or leave out, and why: the fused launcher's record names its stack.
LAUNCHER_ONLY_KEYS = {"fused"}
# The lock file names its last holder; tb/ and .submitit/ are the sweep's, not a run's.
NOT_COMPARED = {".lock"}


@dataclass
class Stage:
    """One command of the matrix and what its sweep folder held right after it."""

    code: int
    said: str  # the command's stderr, then stdout
    shapes: dict[str, dict[str, Any]]  # job folder -> shape()
    numbers: dict[str, list[dict[str, float]]]  # job folder -> numbers()
    seconds: float
    mlflow: dict[str, Any] | None = None  # mlflow_runs() of its folder


@dataclass
class Matrix:
    """The stages on one launcher, in order, and what was read of the killed sweep."""

    launcher: str
    stages: dict[str, Stage] = field(default_factory=dict)
    killed_load: list[str] = field(default_factory=list)  # mlp_sweep.load's statuses
    killed_summary: list[str] = field(default_factory=list)  # the summary's


def _stage(args: list[str], folder: Path, cwd: Path, env: dict[str, str]) -> Stage:
    tic = time.monotonic()
    done = run_command(*args, cwd=cwd, env=env, timeout=300)
    seconds = time.monotonic() - tic
    runs = run_folders(folder)
    return Stage(
        done.returncode,
        done.stderr + done.stdout,
        {name: shape(d) for name, d in runs.items()},
        {name: numbers(d) for name, d in runs.items()},
        seconds,
        mlflow_runs(folder),
    )


def matrix_loggers() -> list[str]:
    """The loggers the matrix's sweeps use: those whose extra is installed here."""
    return [n for n in ("tensorboard", "mlflow") if importlib.util.find_spec(n) is not None]


def logger_args(loggers: list[str]) -> list[str]:
    return [f"logger=[{','.join(loggers)}]"] if loggers else []


def mlflow_runs(folder: Path) -> dict[str, Any] | None:
    """What the sweep left in its local MLflow store (logger=mlflow's default), read with
    MLflow's client: its parent runs' statuses, and per job its run's status, its status tag
    and the epochs its test_acc holds. None where the sweep has no store."""
    db = folder / "mlflow.db"
    if not db.exists():
        return None
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    jobs: dict[str, Any] = {}
    for run in runs:
        if run in parents:
            continue
        job = run.data.tags["job"]
        assert job not in jobs, f"{folder}: job {job} has two MLflow runs"
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
        jobs[job] = (run.info.status, run.data.tags.get("status"), sorted(epochs))
    return {"parents": [r.info.status for r in parents], "jobs": jobs}


def broken_data_root(root: Path) -> Path:
    """A data root whose Fashion-MNIST files are garbage: its runs fail while loading data,
    after every check before the jobs has passed."""
    fashion = root / "FashionMNIST" / "raw"
    fashion.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        (fashion / name).write_bytes(b"\x00\x00\x08\x03garbage" * 10)
    return root


def kill_group(proc: subprocess.Popen[str], folder: Path, env: dict[str, str]) -> None:
    """SIGKILL the sweep's whole process group (the command, its workers, their loggers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Every process of the group gone (its workers too), so no lock is held any more.
    assert group_gone(proc.pid), "the killed sweep's processes outlived SIGKILL"


Killer = Callable[[subprocess.Popen[str], Path, dict[str, str]], None]


def run_matrix(
    launcher: str,
    launcher_args: list[str],
    where: Path,
    logger: list[str],
    env: dict[str, str] | None = None,
    kill: Killer = kill_group,
) -> Matrix:
    """The matrix's commands on this launcher, in folders under `where`."""
    env = env or cli_env()
    base = [*TINY, *launcher_args]
    root = broken_data_root(where / "datasets")
    m = Matrix(launcher)

    def sweep(name: str, *args: str) -> None:
        folder = where / name
        args = ("-m", *base, *args, f"hydra.sweep.dir={folder}")
        m.stages[name] = _stage(list(args), folder, where, env)

    def resume(name: str, *extra: str) -> None:
        folder = where / name
        m.stages[f"{name} resumed"] = _stage(["--resume", str(folder), *extra], folder, where, env)

    sweep("grid", *logger, "data=synthetic,fashion_mnist", "optim.lr=0.1,1e12",
          f"data.root={root}", "data.download=false")  # fmt: skip
    if SEARCHED:
        sweep("search", "hparams_search=optuna", "hydra.sweeper.n_trials=6",
              "hydra.sweeper.sampler.name=random", "hydra.sweeper.sampler.seed=3",
              "hydra.sweeper.pruning.reduction_factor=2", "optim.lr=interval(0.001,0.5)",
              "model.act=relu,selu", "model.init=default")  # fmt: skip
    sweep("limited", "model.act=relu,selu", "data.n_train=20000", "trainer.time_limit=0.001")
    resume("limited", "trainer.time_limit=null")
    _kill(m, base, where / "killed", where, env, kill, logger)
    resume("killed")
    return m


def _kill(
    m: Matrix,
    base: list[str],
    folder: Path,
    cwd: Path,
    env: dict[str, str],
    kill: Killer,
    logger: list[str],
) -> None:
    """Kill job 0 with SIGKILL once it has an epoch and is training the next, then read the
    folder both ways: mlp_sweep.load and the summary."""
    slow = ["data.n_train=20000", "model.act=relu,selu", *logger]
    log = folder.parent / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlp_sweep", "-m", *base, *slow, f"hydra.sweep.dir={folder}"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )
        try:
            wait_for(lambda: epochs_written(folder / "0") >= 1, proc, timeout=240)
        except AssertionError as err:
            kill_group(proc, folder, env)
            raise AssertionError(f"{err}: {log.read_text()[-3000:]}") from None
        kill(proc, folder, env)
    # Read here, in this process: the same functions `mlp_sweep.load` and
    # `python -m mlp_sweep.summary` call.
    m.killed_load = [str(v) for v in mlp_sweep.load(folder)["status"]]
    m.killed_summary = [str(v) for v in write_summary(folder)["status"]]


def run_folders(sweep: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted(sweep.iterdir()) if d.is_dir() and d.name.isdigit()}


def shape(run_dir: Path) -> dict[str, Any]:
    """What a run folder must hold whichever launcher ran it."""
    files = sorted(
        str(p.relative_to(run_dir))
        for p in run_dir.rglob("*")
        if p.is_file() and p.name not in NOT_COMPARED
    )
    record = json.loads((run_dir / "metrics.json").read_text())
    return {
        "files": files,
        "keys": sorted(set(record) - LAUNCHER_ONLY_KEYS),
        "status": record["status"],
        "epochs_done": record["epochs_done"],
        "loggers": record["loggers"],
        "loggers_failed": record["loggers_failed"],
    }


def numbers(run_dir: Path) -> list[dict[str, float]]:
    """The run's history, epoch by epoch, without its times."""
    try:
        with open(run_dir / "history.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    return [{k: float(v) for k, v in r.items() if k != "seconds"} for r in rows]


def same_numbers(a: list[dict[str, float]], b: list[dict[str, float]], exact: bool) -> str | None:
    """None when the two histories agree (exactly, or within 1e-6 relative); else where they
    part."""
    if len(a) != len(b):
        return f"{len(a)} epochs against {len(b)}"
    for ra, rb in zip(a, b, strict=True):
        for key, va in ra.items():
            vb = rb[key]
            if va == vb or (va != va and vb != vb):  # equal, or both NaN
                continue
            if exact or abs(va - vb) > 1e-6 * max(abs(vb), 1e-12):
                return f"epoch {ra['epoch']:g} {key}: {ra} vs {rb}"
    return None


# Stages whose statuses do not depend on timing. A search's pruning does: which trials the
# pruner stops depends on which others reached an epoch first, so its runs are compared by
# status (a pruned run's folder like a pruned run's) and by their epochs' numbers.
FIXED = {
    "grid": (1, ["ok", "diverged", "failed", "failed"]),
    "limited": (1, ["timeout", "timeout"]),
    "limited resumed": (0, ["ok", "ok"]),
    "killed resumed": (0, ["ok", "ok"]),
}


# A record's status -> its MLflow run's.
MLFLOW_STATUS = {"ok": "FINISHED", "diverged": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}


def check_features(m: Matrix, loggers: list[str]) -> None:
    """Each feature did what it says on m's launcher."""
    logged = "tensorboard" in loggers
    for name, (code, statuses) in FIXED.items():
        stage = m.stages[name]
        assert stage.code == code, f"{m.launcher} {name}: exit {stage.code}\n{stage.said[-3000:]}"
        assert [s["status"] for s in stage.shapes.values()] == statuses, (m.launcher, name)
        assert "Traceback" not in stage.said, (m.launcher, name, stage.said[-3000:])
    grid = m.stages["grid"].shapes
    if logged:  # the logger watched every run that trained, and steps.csv kept it
        for job in ("0", "1"):
            assert grid[job]["loggers"] == loggers and not grid[job]["loggers_failed"]
            assert "steps.csv" in grid[job]["files"], (m.launcher, job, grid[job]["files"])
    if "mlflow" in loggers:
        check_mlflow(m)
    assert "traceback.txt" in grid["2"]["files"]
    last = m.stages["grid"].said.strip().splitlines()
    assert any(line.startswith("mlp_sweep: 2 of 4 runs failed or did not finish") for line in last)
    # Killed while job 0 trained: one answer for the folder, whoever reads it.
    assert m.killed_load[0] == "incomplete", m.killed_load
    assert m.killed_load == m.killed_summary
    if not SEARCHED:
        return
    search = m.stages["search"]
    assert search.code == 0, search.said[-3000:]
    statuses = [s["status"] for s in search.shapes.values()]
    assert len(statuses) == 6 and set(statuses) <= {"ok", "pruned"}, statuses
    assert "pruned" in statuses, f"{m.launcher}: the search's pruner stopped no trial"
    for shape in search.shapes.values():
        if shape["status"] == "pruned":
            assert 1 <= int(shape["epochs_done"]) < 3


def check_mlflow(m: Matrix) -> None:
    """Every run that trained is one MLflow run under its sweep's one parent, whose status
    says the record's and whose test_acc holds each epoch once (the killed run, resumed,
    continued its own)."""
    for name, parent in (("grid", "FAILED"), ("killed resumed", "FINISHED")):
        stage = m.stages[name]
        assert stage.mlflow is not None, (m.launcher, name, "no MLflow store")
        assert stage.mlflow["parents"] == [parent], (m.launcher, name, stage.mlflow)
        trained = {job: s for job, s in stage.shapes.items() if s["epochs_done"]}
        assert set(stage.mlflow["jobs"]) == set(trained), (m.launcher, name, stage.mlflow)
        for job, (status, tag, epochs) in stage.mlflow["jobs"].items():
            record = trained[job]
            assert (status, tag) == (MLFLOW_STATUS[record["status"]], record["status"])
            assert epochs == list(range(1, record["epochs_done"] + 1)), (m.launcher, name, job)


def check_same(ours: Matrix, basic: Matrix, exact: bool) -> None:
    """The same files, record keys, statuses and numbers in every run folder as the basic
    launcher's, stage by stage (exact where runs train alone; within fp64's last bits where a
    launcher stacks them: a stack sums in another order)."""
    for name in FIXED:
        mine, theirs = ours.stages[name], basic.stages[name]
        assert mine.shapes == theirs.shapes, (ours.launcher, name)
        assert mine.mlflow == theirs.mlflow, (ours.launcher, name)
        for job, history in theirs.numbers.items():
            differs = same_numbers(mine.numbers[job], history, exact)
            assert differs is None, f"{ours.launcher} {name} job {job}: {differs}"
    # A search's trials draw the same values on every launcher (a seeded sampler); a pruned
    # run's folder is a pruned run's, and every epoch a trial trained on both launchers has
    # the same numbers.
    if not SEARCHED:
        return
    mine, theirs = ours.stages["search"], basic.stages["search"]
    by_status = {s["status"]: s for s in theirs.shapes.values()}
    for job, shape in mine.shapes.items():
        if shape["status"] in by_status:
            reference = {**by_status[str(shape["status"])], "epochs_done": shape["epochs_done"]}
            assert shape == reference, (ours.launcher, "search", job)
        a, b = mine.numbers[job], theirs.numbers[job]
        common = min(len(a), len(b))
        differs = same_numbers(a[:common], b[:common], exact)
        assert differs is None, f"{ours.launcher} search job {job}: {differs}"


def basic_matrix(factory: pytest.TempPathFactory, logger: list[str]) -> Matrix:
    """The basic launcher's matrix, run once for the whole session even where the suite's
    files are spread over pytest-xdist workers (the SLURM row compares with it too)."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    saved = base / "basic-matrix.pickle"
    with open(base / "basic-matrix.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not saved.exists():
            where = base / "basic-matrix"
            where.mkdir()
            saved.write_bytes(pickle.dumps(run_matrix("basic", LAUNCHERS["basic"], where, logger)))
    matrix: Matrix = pickle.loads(saved.read_bytes())
    return matrix
