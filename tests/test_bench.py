"""python -m mlp_sweep.bench: its figures are computed as its table says (not how fast they are:
speed is the benchmark's to report, never a test's to time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlp_sweep.bench import epoch_flops


def test_the_epoch_flop_count_of_the_tutorial_mlp() -> None:
    # Per sample: forward 2 * (784*200 + 200*200 + 200*10); backward twice that but the first
    # layer's input gradient; 60k training samples, 10k test samples forward only.
    assert epoch_flops([784, 200, 200, 10]) == pytest.approx(56.7e9, rel=1e-3)
    assert epoch_flops([784, 10], n_train=1, n_test=0) == 2 * 2 * 784 * 10


def test_a_small_run_of_the_benchmark_writes_a_consistent_json(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_cli(
        "--repeats", "1", "--epochs", "1", "--hidden", "32", "--tutorial-batches", "3",
        "--sweep-args=-m model.act=relu,selu data=synthetic trainer.epochs=2",
        "--json", str(out),
        module="mlp_sweep.bench",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["epoch_gflop"] == pytest.approx(epoch_flops([784, 32, 10]) / 1e9)
    assert r["roofline_s"] == pytest.approx(r["epoch_gflop"] / r["matmul_gflops"])
    assert r["speedup"] == pytest.approx(r["tutorial_s"] / r["mlp_sweep_s"])
    assert r["efficiency"] == pytest.approx(r["roofline_s"] / r["mlp_sweep_s"])
    sweep = r["sweep"]
    assert sweep["runs"] == 2 and len(sweep["test_acc"]) == 2
    assert 0 < sweep["train_s_sum"] and 0 < sweep["peak_pss_mb"]
    assert sweep["wall_s"] > sweep["train_s_sum"] / sweep["runs_at_once"]
    assert "speedup    = tutorial / mlp_sweep" in done.stdout
    assert f"json: {out}" in done.stdout
