"""python -m mlp_sweep.bench: its figures are computed as its table says (not how fast they are:
speed is the benchmark's to report, never a test's to time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlp_sweep.bench.training import epoch_flops


def test_the_epoch_flop_count_of_the_tutorial_mlp() -> None:
    # Per sample: forward 2 * (784*200 + 200*200 + 200*10); backward twice that but the first
    # layer's input gradient; 60k training samples, 10k test samples forward only.
    assert epoch_flops([784, 200, 200, 10]) == pytest.approx(56.7e9, rel=1e-3)
    assert epoch_flops([784, 10], n_train=1, n_test=0) == 2 * 2 * 784 * 10


@pytest.mark.slow  # a developer's tool; its arithmetic is checked above by default
def test_a_small_run_of_the_benchmark_writes_a_consistent_json(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_cli(
        # One thread: two would wait on each other whenever the 2-core machine is busy.
        "--repeats", "1", "--epochs", "1", "--hidden", "32", "--tutorial-batches", "3",
        "--threads", "1",
        # The basic launcher: the sweep's figures without two workers importing torch.
        "--sweep-args=-m model.act=relu,selu data=synthetic trainer.epochs=2 hydra/launcher=basic",
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


@pytest.mark.slow  # six real sweeps and two fresh processes: ~40 s
def test_the_sweep_overhead_mode_measures_real_sweeps_and_folders(run_cli, tmp_path: Path) -> None:
    """sweep-overhead runs the plain Hydra anchor and both launchers at each size, and scans
    folders of finished runs (copies of a real one) as --resume would: all found finished."""
    out = tmp_path / "overhead.json"
    done = run_cli(
        "sweep-overhead", "--sizes", "2,4", "--folder-runs", "30", "--json", str(out),
        module="mlp_sweep.bench",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [row["n"] for row in r["sizes"]] == [2, 4]
    for row in r["sizes"]:
        assert all(row[k] > 0 for k in ("check", "plain", "basic", "default"))
    assert sorted(r["folders"]) == ["3", "30"]  # a tenth of the runs, for memory per run
    assert all(f["summary"] > 0 and f["resume"] > 0 for f in r["folders"].values())
    assert "2->4: plain Hydra" in done.stdout and "folder of 30 runs" in done.stdout


def test_a_fake_folder_reads_as_the_runs_it_copies(tmp_path: Path) -> None:
    import shutil

    from mlp_sweep.bench.overhead import fake_sweep
    from mlp_sweep.results.summary import build_summary

    template = tmp_path / "t"
    job = template / "0"
    (job / ".hydra").mkdir(parents=True)
    (template / "multirun.yaml").write_text(f"hydra:\n  sweep:\n    dir: {template}\n")
    record = {"status": "ok", "seed": 0, "overrides": ["seed=0", "trainer.epochs=1"],
              "params": {"seed": 0}, "test_acc": 0.5}  # fmt: skip
    (job / "metrics.json").write_text(json.dumps(record))
    (job / ".hydra" / "config.yaml").write_text("a: 1\nseed: 0\nb: 2\n")
    shutil.copytree(job, template / "1")
    fake_sweep(template, tmp_path / "f", 5)
    frame = build_summary(tmp_path / "f")
    assert list(frame["seed"]) == [0, 1, 2, 3, 4] and set(frame["status"]) == {"ok"}
    assert (tmp_path / "f" / "3" / ".hydra" / "config.yaml").read_text() == "a: 1\nseed: 3\nb: 2\n"


def test_the_median_interval_is_the_sign_tests() -> None:
    """The loggers bench brackets its median ratio by order statistics: for 20 rounds, the 6th
    and 15th values hold the median with 95.9% confidence (1 - 2 P(Binomial(20, 1/2) <= 5))."""
    from math import comb

    from mlp_sweep.bench.loggers import median_interval

    assert median_interval(20) == (
        5,
        14,
        pytest.approx(1 - 2 * sum(comb(20, k) for k in range(6)) / 2**20),
    )
    assert median_interval(20)[2] == pytest.approx(0.9586, abs=1e-4)
    assert median_interval(8) == (0, 7, pytest.approx(1 - 2 / 2**8))  # the widest there is
    for n in range(6, 60):
        low, high, confidence = median_interval(n)
        assert confidence >= 0.95 and low + high == n - 1
        wider = 1 - 2 * sum(comb(n, k) for k in range(low + 2)) / 2**n  # one rank narrower
        assert wider < 0.95


@pytest.mark.slow  # six full-MNIST epochs and a visdom server: ~30 s
def test_the_loggers_bench_compares_each_watched_run_with_its_round(run_cli) -> None:
    done = run_cli(
        "loggers", "--settings", "none,visdom,tensorboard", "--repeats", "2", "--epochs", "1",
        module="mlp_sweep.bench",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    order = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("  round")]
    assert order == ["none", "visdom", "tensorboard", "tensorboard", "visdom", "none"]
    for setting in ("visdom", "tensorboard"):
        assert f"  logger={setting}" in done.stdout
    assert "CPU of the loggers' threads" in done.stdout and "visdom server CPU" in done.stdout
    # Each watched run's loggers worked in processes of their own, reaped when the run ended.
    lines = done.stdout.splitlines()
    forked = {
        line.split()[0]: float(after.split("child processes ")[1].split()[0])
        for line, after in zip(lines, lines[1:], strict=False)
        if line.startswith("  logger=")
    }
    assert forked["logger=visdom"] > forked["logger=none"] + 0.01  # git's alone: ~0.01 s
    assert forked["logger=tensorboard"] > forked["logger=none"] + 0.01
