"""The real entry point, as a user runs it: multiruns into tmp_path, read back with pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.results.summary import METRIC_COLUMNS
from tests.helpers import assert_same_history, cli_env, sweep_in

ACTS = ["relu", "leaky", "selu", "softplus"]


def test_activation_sweep_writes_a_four_row_summary(activation_sweep) -> None:
    result, sweep = activation_sweep  # conftest: -m model.act=relu,leaky,selu,softplus *QUICK
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(sweep / "summary.csv")
    assert list(frame.columns) == ["model.act", *METRIC_COLUMNS]
    assert frame["model.act"].tolist() == ACTS
    assert frame["status"].tolist() == ["ok"] * 4
    assert frame["device"].tolist() == ["cpu"] * 4
    assert frame["epochs_done"].tolist() == [2] * 4
    assert frame["test_acc"].between(0.5, 1.0).all(), frame["test_acc"]  # 2000 samples, 80 steps
    assert (frame["best_test_acc"] >= frame["test_acc"]).all()
    assert frame["train_seconds"].gt(0).all()
    # The table is printed too, and every run's own folder holds its record and history.
    assert "softplus" in result.stdout and str(sweep / "summary.csv") in result.stdout
    for num, run_dir in enumerate(frame["run_dir"]):
        assert Path(run_dir) == sweep / str(num)
        record = json.loads((Path(run_dir) / "metrics.json").read_text())
        assert record["params"]["model.act"] == ACTS[num]
        assert record["params"]["data.limit_train"] == 2000
        assert record["test_acc"] == pytest.approx(frame["test_acc"][num])
        assert record["versions"]["torch"] and "commit" in record["git"]
        history = pd.read_csv(Path(run_dir) / "history.csv")
        assert history["epoch"].tolist() == [1, 2]
        assert history["test_acc"].iloc[-1] == pytest.approx(record["test_acc"])
        assert (Path(run_dir) / ".hydra" / "config.yaml").exists()


# Two activations x two seeds, read by the two tests below.
SEED_SWEEP = ["model.act=relu,selu", "seed=3,4", "data=synthetic", "data.n_train=500"]
SEED_SWEEP += ["trainer.epochs=2"]


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sweep_in(tmp_path_factory, "seeds", *SEED_SWEEP)


def test_seed_sweep_adds_mean_and_std_per_configuration(seed_sweep: Path) -> None:
    frame = pd.read_csv(seed_sweep / "summary.csv")
    assert list(frame.columns) == ["model.act", *METRIC_COLUMNS]
    assert frame["seed"].tolist() == [3, 4, 3, 4]
    by_config = pd.read_csv(seed_sweep / "summary_by_config.csv")
    assert by_config["model.act"].tolist() == ["relu", "selu"]
    assert by_config["n_runs"].tolist() == [2, 2]
    relu = frame[frame["model.act"] == "relu"]["test_acc"]
    assert by_config["test_acc_mean"][0] == pytest.approx(relu.mean())
    assert by_config["test_acc_std"][0] == pytest.approx(relu.std())


def test_single_run_on_cpu(single_run) -> None:
    result, root = single_run  # conftest: SINGLE_RUN, in the default run folder
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (root / "outputs" / "runs").iterdir()
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["device"] == "cpu"
    assert record["epochs_done"] == 2 and record["job_num"] is None
    assert result.stdout.splitlines()[-1].startswith("ok: test_acc")
    assert result.stdout.splitlines()[-1].endswith(f"record: {run_dir}")


def test_default_folders_land_in_outputs_and_never_collide(tmp_path: Path) -> None:
    """Two sweeps started at once (one process each: the launcher is not what names folders)."""
    args = [
        sys.executable,
        "-m",
        "mlp_sweep",
        "-m",
        "data=synthetic",
        "data.n_train=200",
        "trainer.epochs=1",
        "seed=0,1",
        "hydra/launcher=basic",
    ]
    procs = [
        subprocess.Popen(
            args,
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr.read() if proc.stderr else ""
    sweeps = sorted((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 2
    for sweep in sweeps:
        assert len(pd.read_csv(sweep / "summary.csv")) == 2


def test_a_run_is_reproducible_from_its_own_folder(run_cli, seed_sweep: Path) -> None:
    """A run's record holds the command that reruns it: in a new process, the same numbers to
    the last bit, epoch by epoch (CPU determinism)."""
    import shlex

    record = json.loads((seed_sweep / "3" / "metrics.json").read_text())
    assert record["seed"] == 4 and record["params"]["model.act"] == "selu"
    assert record["deterministic"] is True
    assert record["git"]["commit"] is None or len(record["git"]["commit"]) == 40
    command = shlex.split(record["command"])
    assert command[:3] == ["python", "-m", "mlp_sweep"]
    again = run_cli(*command[3:], "hydra.run.dir=again")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun_dir = Path(again.stdout.splitlines()[-1].split("record: ")[1])
    rerun = json.loads((rerun_dir / "metrics.json").read_text())
    assert rerun["params"] == record["params"]
    for key in ("test_acc", "test_loss", "train_loss", "best_test_acc"):
        assert rerun[key] == record[key], key
    assert_same_history(rerun_dir, seed_sweep / "3")
