"""Results from Python: mlp_sweep.load / history over several real sweeps, the summary command
over a folder of sweeps, and compare / table with their statistics."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import mlp_sweep
from mlp_sweep.results.compare import holm, t_two_sided_p

SMALL = [
    "data=synthetic",
    "data.n_train=200",
    "data.n_test=100",
    "trainer.epochs=2",
    "hydra/launcher=basic",
]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real sweeps that swept different keys, sharing one run (relu, default, seed 0),
    and a single run, under one folder."""
    root = tmp_path_factory.mktemp("results")

    def start(*args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "mlp_sweep", *args, *SMALL]
        return subprocess.Popen(command, cwd=root, stderr=subprocess.PIPE, text=True)

    # The second sweep after the first (its rerun is the newer), beside the single run.
    for batch in (
        [["-m", "model.act=relu,selu", "seed=0,1", "hydra.sweep.dir=sweeps/acts"]],
        [
            ["-m", "model.init=default,xavier_normal", "hydra.sweep.dir=sweeps/inits"],
            ["hydra.run.dir=sweeps/single", "model.act=softplus"],
        ],
    ):
        for command in [start(*args) for args in batch]:
            _, err = command.communicate(timeout=240)
            assert command.returncode == 0, err[-3000:]
    return root / "sweeps"


def test_load_lines_up_sweeps_that_swept_different_keys(sweeps: Path) -> None:
    runs = mlp_sweep.load(sweeps)
    assert len(runs) == 7
    assert sorted(Path(s).name for s in runs["sweep"].unique()) == ["acts", "inits", "single"]
    # Every run carries the whole config, not only what its sweep swept.
    assert runs["model.act"].notna().all() and runs["model.init"].notna().all()
    acts = runs[runs["sweep"].str.endswith("acts")]
    assert acts["job"].tolist() == [0, 1, 2, 3]
    assert acts[["model.act", "seed"]].values.tolist() == [
        ["relu", 0], ["relu", 1], ["selu", 0], ["selu", 1]
    ]  # fmt: skip
    assert set(acts["model.init"]) == {"default"}
    for row in runs.itertuples():
        record = json.loads((Path(row.run_dir) / "metrics.json").read_text())
        assert row.test_acc == record["test_acc"] and row.status == record["status"] == "ok"
        assert Path(row.history).is_file()
    # relu / default / seed 0 ran in both sweeps: a rerun, marked in both; "newest" keeps one.
    reruns = runs[runs["rerun"]]
    assert sorted(Path(r).parent.name for r in reruns["run_dir"]) == ["acts", "inits"]
    assert set(reruns["test_acc"]) == {reruns["test_acc"].iloc[0]}  # same numbers on CPU
    newest = mlp_sweep.load(sweeps, reruns="newest")
    assert len(newest) == 6 and newest["rerun"].sum() == 1  # the copy kept is still a rerun
    assert Path(newest[newest["rerun"]]["run_dir"].iloc[0]).parent.name == "inits"
    # Globs and single folders: the same rows.
    assert len(mlp_sweep.load(str(sweeps / "*"))) == 7
    assert len(mlp_sweep.load(sweeps / "acts", sweeps / "acts" / "0")) == 4

    curves = mlp_sweep.history(runs)
    assert len(curves) == 7 * 2 and curves["epoch"].tolist() == [1, 2] * 7
    first = pd.read_csv(Path(runs["run_dir"].iloc[0]) / "history.csv")
    assert curves["test_acc"].iloc[:2].tolist() == first["test_acc"].tolist()
    assert {"sweep", "run_dir", "model.act", "seed"} <= set(curves.columns)


def test_reruns_that_disagree_are_one_warning(
    sweeps: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    copy = tmp_path / "sweeps"
    shutil.copytree(sweeps, copy)
    path = copy / "inits" / "0" / "metrics.json"
    record = json.loads(path.read_text())
    record["test_acc"] = 0.123
    path.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        mlp_sweep.load(copy)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("reruns of one config and seed at one commit")
    assert "0.1230" in said[0] and str(copy / "inits" / "0") in said[0]


def test_summary_command_over_a_folder_of_sweeps(sweeps: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlp_sweep.summary", str(sweeps)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "(7 runs in 3 sweeps, 2 of them reruns)" in done.stdout
    grouped = pd.read_csv(sweeps / "summary_all_by_config.csv")
    # relu / selu / softplus x default / xavier_normal as they occur; seeds pooled.
    relu = grouped[(grouped["model.act"] == "relu") & (grouped["model.init"] == "default")]
    assert relu["n_runs"].tolist() == [3] and relu["sweeps"].tolist() == [2]
    assert len(pd.read_csv(sweeps / "summary_all.csv")) == 7
    # One sweep: what it always did.
    one = subprocess.run(
        [sys.executable, "-m", "mlp_sweep.summary", str(sweeps / "acts")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0 and "wrote" in one.stdout and "(4 runs)" in one.stdout


def test_compare_and_table_with_their_noise() -> None:
    # Five seeds x two inits; b is 1 point below a on each init/seed, c varies around a.
    rows = []
    for seed in range(5):
        for init in ("default", "xavier"):
            base = 0.95 + 0.002 * seed + (0.001 if init == "xavier" else 0.0)
            sign = (-1) ** (seed + (init == "xavier"))  # as often above a as below
            for act, acc in (("a", base), ("b", base - 0.01), ("c", base + sign * 1e-3)):
                rows.append({"act": act, "init": init, "seed": seed, "acc": acc, "status": "ok"})
    frame = pd.DataFrame(rows)
    pairs = mlp_sweep.compare(frame, by="act", metric="acc", paired_on=["init", "seed"])
    assert pairs[["a", "b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    ab = pairs.iloc[0]
    assert ab["n"] == 10 and ab["diff"] == pytest.approx(0.01) and ab["a_better"] == 10
    assert ab["p"] == 0.0 and ab["exceeds_noise"]  # the same difference every time
    ac = pairs.iloc[1]
    assert ac["diff"] == pytest.approx(0.0, abs=1e-12) and ac["a_better"] == 5
    assert ac["p"] == pytest.approx(1.0) and not ac["exceeds_noise"]
    assert (pairs["p_holm"] >= pairs["p"]).all()

    shown = mlp_sweep.table(frame, rows="act", cols="init", metric="acc")
    assert list(shown.index) == ["a", "b", "c"] and list(shown.columns) == ["default", "xavier"]
    assert shown.loc["a", "default"] == "0.9540 ± 0.0032 (5)"


def test_student_t_and_holm() -> None:
    # Standard table values: t(0.975, df) has a two-sided p of 0.05.
    for t, df in ((12.706, 1), (4.303, 2), (2.776, 4), (2.262, 9), (2.042, 30)):
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm([math.nan, 0.01])[0]) and holm([math.nan, 0.01])[1] == 0.01
