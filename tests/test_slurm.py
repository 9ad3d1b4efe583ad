"""hydra/launcher=slurm against a real one-node SLURM cluster that these tests start.

The cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd on 127.0.0.1) lives in a temporary
folder for this module and is stopped by its pids afterwards; .ci/install-slurm.sh installs the
Debian packages. The module skips, saying why, only where those packages are missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests import helpers
from tests.cluster import slurm_cluster
from tests.feature_matrix import (
    basic_matrix,
    check_features,
    check_same,
    logger_args,
    matrix_loggers,
    run_matrix,
)
from tests.helpers import assert_same_history, cli_env, epochs_written, start_cli, wait_for

# Included in the default run; `-m "not slow and not cluster"` leaves it out (~75 s).
pytestmark = pytest.mark.cluster

SUBSET = ["data.limit_train=2000", "data.limit_test=500", "trainer.epochs=2"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    reason = slurm_cluster.available()
    if reason is not None:
        pytest.skip(f"no SLURM here ({reason}); bash .ci/install-slurm.sh installs it")
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher",
        reason='needs the cluster extra: pip install ".[cluster]"',
    )
    workdir = tmp_path_factory.mktemp("slurm")
    env = slurm_cluster.start(workdir)
    try:
        yield {**cli_env(), **env}
    finally:
        slurm_cluster.stop(workdir)


def sweep_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return helpers.run_command(*args, cwd=cwd, env=env, timeout=300)


# Slow: by default the feature x launcher matrix's SLURM row below runs its sweeps as arrays,
# logs to tensorboard inside the jobs and compares every number with the basic launcher's.
@pytest.mark.slow
def test_activation_sweep_runs_as_a_slurm_array(slurm_env, tmp_path: Path) -> None:
    pytest.importorskip(
        "tensorboard", reason='logs to tensorboard, the viz extra: pip install ".[viz]"'
    )
    sweep = tmp_path / "acts"
    args = ["-m", "model.act=relu,leaky,selu,softplus", *SUBSET, *SLURM, f"hydra.sweep.dir={sweep}"]
    result = sweep_cli([*args, "logger=tensorboard"], tmp_path, slurm_env)
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["model.act"].tolist() == ["relu", "leaky", "selu", "softplus"]
    assert frame["status"].tolist() == ["ok"] * 4
    records = [json.loads((sweep / str(n) / "metrics.json").read_text()) for n in range(4)]
    array_ids = {r["slurm_job"].split("_")[0] for r in records}
    assert len(array_ids) == 1, array_ids  # one array job, one task per run
    assert sorted(int(r["slurm_job"].split("_")[1]) for r in records) == [0, 1, 2, 3]
    assert all(r["threads"] == 1 for r in records)  # cpus_per_task follows the thread budget
    # The console says where the SLURM logs go, and they are there.
    assert f"{sweep / '.submitit'}/<job id>/" in result.stdout
    assert any((sweep / ".submitit" / records[0]["slurm_job"]).glob("*_log.out"))
    # The logger ran inside each SLURM job: its events say what history.csv says.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acts = ["relu", "leaky", "selu", "softplus"]
    for n, record in enumerate(records):
        assert record["loggers"] == ["tensorboard"] and record["loggers_failed"] == {}
        events = EventAccumulator(str(sweep / "tb" / f"{n} model.act={acts[n]}"))
        events.Reload()
        history = pd.read_csv(sweep / str(n) / "history.csv")
        logged = [e.value for e in events.Scalars("test_acc")]
        assert logged == pytest.approx(history["test_acc"].tolist(), rel=1e-6)
    # Same numbers as the same runs on this machine's default launcher: SLURM changes nothing.
    local = tmp_path / "local"
    result = sweep_cli(
        ["-m", "model.act=relu,leaky,selu,softplus", *SUBSET, f"hydra.sweep.dir={local}"],
        tmp_path,
        cli_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert pd.read_csv(local / "summary.csv")["test_acc"].tolist() == frame["test_acc"].tolist()


# Slow: by default, a run whose process is killed mid-epoch is test_worker_death's and
# test_chaos's, and SLURM's own stop (jobs cancelled, then resumed through SLURM) is the Ctrl-C
# test below.
@pytest.mark.slow
def test_scancel_mid_run_then_resume_through_slurm(slurm_env, tmp_path: Path) -> None:
    sweep = tmp_path / "cancelled"
    long = ["data.limit_train=20000", "data.limit_test=2000", "trainer.epochs=6"]
    args = ["-m", "model.act=relu,selu", *long, *SLURM, f"hydra.sweep.dir={sweep}"]
    proc = start_cli(*args, cwd=tmp_path, env=slurm_env)
    try:
        wait_for(lambda: epochs_written(sweep / "1") >= 1, proc, timeout=120)
        job = json.loads((sweep / "1" / "metrics.json").read_text())["slurm_job"]
        subprocess.run(["scancel", job], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 1, err[-3000:]
    assert f"SLURM job {job} ended without a result" in err + out
    assert (
        err.strip().splitlines()[-1].startswith("mlp_sweep: 1 of 2 runs failed or did not finish")
    )
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"][0] == "ok"
    assert frame["status"][1] in ("interrupted", "incomplete"), frame["status"][1]
    assert 1 <= frame["epochs_done"][1] < 6

    result = sweep_cli(["--resume", str(sweep)], tmp_path, slurm_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming: 1 of 2 runs already finished" in result.stdout
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == ["ok", "ok"]
    resumed = json.loads((sweep / "1" / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] >= 1 and resumed["slurm_job"] != job

    # The resumed run ends exactly where an uninterrupted run of the same seed ends.
    reference = tmp_path / "reference"
    result = sweep_cli(["model.act=selu", *long, f"hydra.run.dir={reference}"], tmp_path, cli_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_history(sweep / "1", reference)


# Slow (~25 s): by default the cluster runs a sweep as an array, and Ctrl-C's promise is
# tests/test_interrupt.py's on the local launchers.
@pytest.mark.slow
def test_ctrl_c_on_the_submitting_command_cancels_its_slurm_jobs(slurm_env, tmp_path: Path) -> None:
    sweep = tmp_path / "stopped"
    long = ["data.limit_train=20000", "data.limit_test=2000", "trainer.epochs=8"]
    args = ["-m", "model.act=relu,selu", *long, *SLURM, f"hydra.sweep.dir={sweep}"]
    proc = start_cli(*args, cwd=tmp_path, env=slurm_env)
    try:
        wait_for(lambda: min(epochs_written(sweep / n) for n in "01") >= 1, proc, timeout=120)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("mlp_sweep: interrupted (SIGINT); 0 of 2 runs")
    assert "cancelled the sweep's SLURM jobs" in out + err
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == ["interrupted", "interrupted"]
    queue = subprocess.run(
        ["squeue", "-h", "-o", "%i"], env=slurm_env, capture_output=True, text=True, check=True
    )
    jobs = {json.loads((sweep / n / "metrics.json").read_text())["slurm_job"] for n in "01"}
    assert not jobs & set(queue.stdout.split()), queue.stdout

    result = sweep_cli(["--resume", str(sweep)], tmp_path, slurm_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pd.read_csv(sweep / "summary.csv")["status"].tolist() == ["ok", "ok"]


# Slow (~25 s): by default tests/test_pruning.py prunes on the basic launcher and the default
# launcher's workers, and the cluster runs a sweep as an array.
@pytest.mark.slow
def test_a_search_prunes_its_trials_inside_slurm_jobs(slurm_env, tmp_path: Path) -> None:
    """Each trial reports its epochs to the study's journal from its SLURM job, and stops there
    when the pruner says: tests/test_pruning.py's search, on the cluster."""
    pytest.importorskip("optuna", reason="needs the search extra: pip install '.[search]'")
    from mlp_sweep.search.study import load_study
    from tests.test_pruning import SEARCH

    sweep = tmp_path / "search"
    result = sweep_cli(["-m", *SEARCH, *SLURM, f"hydra.sweep.dir={sweep}"], tmp_path, slurm_env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((sweep / str(n) / "metrics.json").read_text()) for n in range(6)]
    assert all(r.get("slurm_job") for r in records)  # trained in SLURM jobs
    assert [r["status"] for r in records] == ["ok"] * 3 + ["pruned"] * 3
    study = load_study(sweep)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    for trial, record in zip(study.trials, records, strict=True):
        assert sorted(trial.intermediate_values) == list(range(1, record["epochs_done"] + 1))


def _kill_job_0(proc: subprocess.Popen[str], folder: Path, env: dict[str, str]) -> None:
    """SIGKILL on job 0's process inside its SLURM job (on this one-node cluster, by the pid
    its record gives), then the submitting command left to notice the job's end and finish."""
    os.kill(json.loads((folder / "0" / "metrics.json").read_text())["pid"], signal.SIGKILL)
    proc.wait(timeout=240)


def test_the_feature_matrix_on_slurm(
    slurm_env, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SLURM's row of the feature x launcher matrix (tests/test_feature_matrix.py): the same
    sweeps inside SLURM jobs leave what the basic launcher leaves, to the last bit."""
    loggers = matrix_loggers()
    logger = logger_args(loggers)
    ours = run_matrix("slurm", SLURM, tmp_path, logger, env=slurm_env, kill=_kill_job_0)
    check_features(ours, loggers)
    check_same(ours, basic_matrix(tmp_path_factory, logger), exact=True)
    # Each sweep was one array job, a task per run, each with the cores its threads use, and
    # the console said where SLURM's logs go.
    grid = tmp_path / "grid"
    records = [json.loads((grid / str(n) / "metrics.json").read_text()) for n in range(4)]
    assert len({r["slurm_job"].split("_")[0] for r in records}) == 1
    assert sorted(int(r["slurm_job"].split("_")[1]) for r in records) == [0, 1, 2, 3]
    assert all(r["threads"] == 1 for r in records)
    assert f"{grid / '.submitit'}/<job id>/" in ours.stages["grid"].said
