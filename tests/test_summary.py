"""`python -m mlp_sweep.summary DIR` on prepared folders: rows, order, seeds, broken records.

One test runs the documented command as a process (its warnings reach stderr through the
logging it sets up); the others call its main() here, with the same arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.results.summary import METRIC_COLUMNS
from mlp_sweep.summary import main

# optim.lr is the same in every job of the fixture: not swept, so not a column.
COLUMNS = ["model.act", *METRIC_COLUMNS]


def make_job(
    sweep: Path, num: int, act: str, lr: float, seed: int, acc: float | None, status: str = "ok"
) -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"model.act={act}", f"optim.lr={lr}", f"seed={seed}"]
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    record = {
        "schema": 1,
        "status": status,
        "error": None,
        "job_num": num,
        "overrides": overrides,
        "seed": seed,
        "device": "cpu",
        "params": {"model.act": act, "optim.lr": lr, "seed": seed},
        "test_acc": acc,
        "test_loss": None if acc is None else 1 - acc,
        "train_loss": 0.5,
        "best_test_acc": acc,
        "best_epoch": 2,
        "epochs_done": 2,
        "train_seconds": 1.5,
    }
    (job / "metrics.json").write_text(json.dumps(record))
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    num = 0
    for act in ("relu", "selu"):
        for seed in (0, 1, 2):
            make_job(
                sweep, num, act, 0.1, seed, acc=0.9 + 0.01 * seed + (0.05 if act == "selu" else 0)
            )
            num += 1
    return sweep


def test_summary_cli_rebuilds_both_tables(capsys: pytest.CaptureFixture[str], sweep: Path) -> None:
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    frame = pd.read_csv(sweep / "summary.csv")
    assert list(frame.columns) == COLUMNS
    assert frame["model.act"].tolist() == ["relu"] * 3 + ["selu"] * 3
    assert frame["seed"].tolist() == [0, 1, 2, 0, 1, 2]
    assert frame["status"].eq("ok").all()
    assert frame["run_dir"].tolist() == [str(sweep / str(i)) for i in range(6)]
    by_config = pd.read_csv(sweep / "summary_by_config.csv")
    assert by_config["model.act"].tolist() == ["relu", "selu"]
    assert by_config["n_runs"].tolist() == [3, 3] and by_config["n_ok"].tolist() == [3, 3]
    assert by_config["test_acc_mean"].tolist() == pytest.approx([0.91, 0.96])
    assert by_config["test_acc_std"].tolist() == pytest.approx([0.01, 0.01])
    assert "relu" in out and f"wrote {sweep / 'summary.csv'} (6 runs)" in out


def test_rows_follow_job_numbers_not_names(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    for num in (10, 2, 1):
        make_job(sweep, num, "relu", 0.01 * num, 0, 0.5)
    assert main([str(sweep)]) == 0
    frame = pd.read_csv(sweep / "summary.csv")
    assert list(frame.columns) == ["optim.lr", *METRIC_COLUMNS]
    assert frame["optim.lr"].tolist() == pytest.approx([0.01, 0.02, 0.1])
    assert not (sweep / "summary_by_config.csv").exists()  # one seed: nothing to average


def test_broken_records_are_listed_not_fatal(run_cli, sweep: Path) -> None:
    (sweep / "1" / "metrics.json").write_text('{"status": "ok", "test_ac')  # torn
    (sweep / "2" / "metrics.json").unlink()  # job folder, no record
    (sweep / "3" / "metrics.json").write_text("")  # empty
    (sweep / "4" / "metrics.json").write_text('["not", "ours"]')  # foreign
    result = run_cli(str(sweep), module="mlp_sweep.summary")
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == [
        "ok",
        "unreadable",
        "incomplete",
        "unreadable",
        "unreadable",
        "ok",
    ]
    # The override columns still say which configuration each broken run was.
    assert frame["model.act"].tolist() == ["relu"] * 3 + ["selu"] * 3
    for num in (1, 3, 4):
        assert str(sweep / str(num) / "metrics.json") in result.stderr
    assert str(sweep / "2") in result.stderr


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_summary_of_nothing_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    target = tmp_path / case
    if case == "empty":
        target.mkdir()
    assert main([str(target)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0]
    assert ("no such folder" if case == "missing" else "no runs found") in lines[0]


def test_runs_on_different_devices_are_not_averaged_together() -> None:
    from mlp_sweep.results.summary import by_config

    frame = pd.DataFrame(
        {
            "optim.lr": [0.1] * 4,
            **{c: [1.0] * 4 for c in METRIC_COLUMNS},
            "status": ["ok"] * 4,
            "test_acc": [0.9, 0.8, 0.7, 0.6],
            "device": ["cpu", "cpu", "cuda:0", "cuda:0"],
            "seed": [0, 1, 0, 1],
        }
    )
    grouped = by_config(frame)
    assert grouped is not None
    assert grouped["device"].tolist() == ["cpu", "cuda:0"]
    assert grouped["test_acc_mean"].tolist() == pytest.approx([0.85, 0.65])
