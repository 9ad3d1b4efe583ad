"""hydra/launcher=fused: each fused run equals its twin trained alone, epoch by epoch.

Real multiruns of the entry point: the same grid under hydra/launcher=fused and under
hydra/launcher=basic (every run alone), histories compared. fp64 within 1e-6 relative; fp32
within 2e-3 relative on each epoch's losses and 0.002 on the final test accuracy: the stacked
matmuls (one wide GEMM, then batched ones) sum in another order than a run's own, so the last
bits of each step differ, and SGD carries those differences forward (measured: see the README).
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env

GRID = [
    "model.act=relu,leaky,selu,softplus",
    "model.init=default,kaiming_normal",
    "optim.lr=0.01,0.05",
]
SMALL = ["data=synthetic", "data.n_train=600", "data.n_test=200", "trainer.epochs=3"]


def _history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _twins(
    run_cli, tmp_path: Path, *args: str, fused_args: tuple[str, ...] = ()
) -> tuple[Path, Path, str]:
    """The sweep on the fused launcher and on the basic one: their folders, and what the fused
    one printed."""
    fused, alone = tmp_path / "fused", tmp_path / "alone"
    said = ""
    for launcher, folder in (("fused", fused), ("basic", alone)):
        force = ["hydra.launcher.fuse=always", *fused_args] if launcher == "fused" else []
        done = run_cli(
            "-m", *args, f"hydra/launcher={launcher}", *force, f"hydra.sweep.dir={folder}",
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        said = said or done.stdout
    return fused, alone, said


def _worst(fused: Path, alone: Path, n: int | list[int]) -> float:
    """The largest relative difference of a loss or accuracy, over runs and epochs."""
    worst = 0.0
    for i in range(n) if isinstance(n, int) else n:
        a, b = _history(fused / str(i)), _history(alone / str(i))
        assert len(a) == len(b) and a, i
        for ra, rb in zip(a, b, strict=True):
            for key in ("train_loss", "test_loss", "test_acc"):
                worst = max(worst, abs(ra[key] - rb[key]) / max(abs(rb[key]), 1e-12))
    return worst


def test_fp64_fused_runs_equal_their_twins_every_epoch(fused_twins) -> None:
    """SGD runs of one seed share a stack, one stack per seed; Adam is not fused (its runs
    train alone in the same sweep); every run, fused or not, equals its twin trained alone
    (conftest's FUSED_GRID, in fp64)."""
    done, fused, alone = fused_twins
    said = done.stdout
    assert "Launching 8 jobs (4 fused in 2 stacks)" in said
    stacks = set()
    for i in range(8):
        record = _record(fused / str(i))
        assert record["status"] == "ok" and "fused" not in _record(alone / str(i))
        assert (fused / str(i) / ".hydra" / "overrides.yaml").exists()
        assert (fused / str(i) / "checkpoint.pt").exists()
        if record["params"]["optim.name"] == "adam":
            assert "fused" not in record
            continue
        assert record["fused"]["members"] == 2
        stacks.add(tuple(record["fused"]["jobs"]))
        # The seed's two runs, not one activation's two seeds.
        assert {_record(fused / str(j))["seed"] for j in record["fused"]["jobs"]} == {
            record["seed"]
        }
    sgd = [i for i in range(8) if _record(fused / str(i))["params"]["optim.name"] == "sgd"]
    assert sorted(i for jobs in stacks for i in jobs) == sgd and len(stacks) == 2
    assert _worst(fused, alone, 8) <= 1e-6
    summary = (fused / "summary.csv").read_text().splitlines()
    assert len(summary) == 9


@pytest.mark.slow
def test_fp32_fused_runs_match_their_twins_on_mnist(run_cli, tmp_path: Path) -> None:
    """fp32 stacks on MNIST within 2e-3 of their twins (the killed fused sweep below checks the
    same bound on synthetic data, after a Ctrl-C and a resume). By default the suite checks
    fp64 stacks against their twins, within 1e-6."""
    data = ["data.limit_train=6000", "data.limit_test=2000", "trainer.epochs=3"]
    fused, alone, _ = _twins(run_cli, tmp_path, GRID[0], GRID[2], *data)
    assert _worst(fused, alone, 8) <= 2e-3
    for i in range(8):
        acc_fused, acc_alone = (
            _record(fused / str(i))["test_acc"],
            _record(alone / str(i))["test_acc"],
        )
        assert abs(acc_fused - acc_alone) <= 0.002, i


def test_mixed_seeds_and_a_diverging_member_equal_their_twins(run_cli, tmp_path: Path) -> None:
    """Stacks of several seeds (each member gathers its own batches from its own generator);
    a member that diverges is recorded so and leaves the others' numbers as they were."""
    fused, alone, _ = _twins(
        run_cli, tmp_path, "seed=0,1", "optim.lr=0.05,1e6", *SMALL, "trainer.precision=fp64",
        fused_args=("hydra.launcher.max_group=4", "hydra.launcher.n_jobs=1"),
    )  # fmt: skip
    stacks = {tuple(_record(fused / str(i))["fused"]["jobs"]) for i in range(4)}
    assert any(len({_record(fused / str(j))["seed"] for j in s}) > 1 for s in stacks), stacks
    statuses = [_record(fused / str(i))["status"] for i in range(4)]
    assert statuses == [_record(alone / str(i))["status"] for i in range(4)]
    assert statuses.count("diverged") == 2 and statuses.count("ok") == 2
    for i in range(4):
        assert len(_history(fused / str(i))) == len(_history(alone / str(i)))
    assert _worst(fused, alone, [i for i, s in enumerate(statuses) if s == "ok"]) <= 1e-6


# Slow: a fused sweep killed mid-stack and resumed whole is tests/test_worker_death.py's, by
# default; this one adds Ctrl-C and the fp32 bound against twins trained alone.
@pytest.mark.slow
def test_a_killed_fused_sweep_resumes_each_member_from_its_checkpoint(
    run_cli, run_main, tmp_path: Path
) -> None:
    args = [
        GRID[0],
        "data=synthetic",
        "data.n_train=8000",
        "data.n_test=200",
        "trainer.epochs=6",
    ]
    folder = tmp_path / "k"
    twin = tmp_path / "twin"
    # The twins trained alone, by the entry point in this process.
    done = run_main("-m", *args, "hydra/launcher=basic", f"hydra.sweep.dir={twin}")
    assert done.returncode == 0, done.stderr[-3000:]
    command = [sys.executable, "-m", "mlp_sweep", "-m", *args, "hydra/launcher=fused",
               "hydra.launcher.fuse=always", f"hydra.sweep.dir={folder}"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=tmp_path, env=cli_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    # Every member past its first epoch: the grid may train as two stacks on two workers, and
    # one of them may still be starting when the other has done two epochs.
    while not all(_epochs(folder / str(i)) >= 1 for i in range(4)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    records = [_record(folder / str(i)) for i in range(4)]
    assert {r["status"] for r in records} == {"interrupted"}
    kept = [len(_history(folder / str(i))) for i in range(4)]
    assert all(0 < k < 6 for k in kept)
    done = run_cli("--resume", str(folder), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for i in range(4):
        record = _record(folder / str(i))
        assert record["status"] == "ok" and record["resumed_from_epoch"] == kept[i]
    assert _worst(folder, twin, 4) <= 2e-3


def _epochs(run_dir: Path) -> int:
    try:
        return int(_record(run_dir).get("epochs_done") or 0)
    except (OSError, ValueError):
        return 0


# Slow (~30 s: it times stacks before its sweeps): by default the fused launcher is checked by
# its twins above and its killed worker in tests/test_worker_death.py.
@pytest.mark.slow
def test_auto_fuses_only_what_it_measured_to_pay(run_cli, run_main, tmp_path: Path) -> None:
    """fuse=auto times a stack against the runs alone on this machine before the sweep, and
    says what it found; fuse=never is the parallel launcher."""
    done = run_cli(
        "-m", "model.act=relu,selu,leaky,softplus", *SMALL, "hydra/launcher=fused",
        f"hydra.sweep.dir={tmp_path / 'auto'}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if "Launching 4 jobs" in x)
    assert "measured 2 runs at 1 thread:" in line and "ms a step alone" in line
    fused = "(none fused" not in line
    assert (": fused)" in line) == fused and (": run alone)" in line) == (not fused)
    records = [_record(tmp_path / "auto" / str(i)) for i in range(4)]
    assert all(("fused" in r) == fused and r["status"] == "ok" for r in records)
    done = run_main(
        "-m", "model.act=relu,selu", *SMALL, "hydra/launcher=fused", "hydra.launcher.fuse=never",
        f"hydra.sweep.dir={tmp_path / 'never'}",
    )  # fmt: skip
    assert "Launching 2 jobs (none fused) on 2 worker processes" in done.stdout
