"""Opt-in recovery: retries for jobs whose worker died, and a time limit per run.

Real sweeps through the entry point. A worker is SIGKILLed (what the OOM killer sends) while
its job trains: without retries that job alone is lost (one line naming it and the signal, the
others finish, the summary is written, exit 1); with hydra.launcher.retries=1 it runs again
from its checkpoint and the sweep ends whole, the record counting its attempts. A run past
trainer.time_limit is recorded `timeout` and --resume continues it to the numbers of a run
never stopped.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import start_cli, wait_for

# Long enough per epoch (~0.1 s) that a kill lands mid-run, small enough for a quick test.
RUNS = [
    "model.act=relu,selu,softplus",
    "data=synthetic",
    "data.n_train=4000",
    "data.n_test=500",
    "trainer.epochs=12",
    "trainer.batch_size=20",
]


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns=["seconds"])


def _epochs_done(run_dir: Path) -> int:
    try:
        return int(_record(run_dir)["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, run_cli_module) -> Path:
    """The same runs, never interrupted."""
    folder = tmp_path_factory.mktemp("reference") / "sweep"
    done = run_cli_module("-m", *RUNS, "hydra/launcher=basic", f"hydra.sweep.dir={folder}")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def run_cli_module(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests.helpers import cli_env

    cwd = tmp_path_factory.mktemp("cwd")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlp_sweep", *args],
            cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    return run


def _kill_worker_of_job0(tmp_path: Path, *extra: str) -> tuple[int, str, Path]:
    """Run the sweep, SIGKILL the worker training job 0 once it finished an epoch."""
    sweep = tmp_path / "sweep"
    proc = start_cli("-m", *RUNS, *extra, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(lambda: _epochs_done(sweep / "0") >= 1, proc, timeout=120)
    holder = json.loads((sweep / "0" / ".lock").read_text())["pid"]
    assert holder != proc.pid  # a worker, not the command
    os.kill(holder, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err, sweep


# Slow: by default, tests/test_worker_death.py kills real pool workers mid-job (SIGKILL, SIGSEGV,
# SIGABRT) and a real fused sweep's worker; tests/test_chaos.py kills sweeps' workers at random.
@pytest.mark.slow
def test_a_killed_worker_costs_its_job_and_the_sweep_goes_on(tmp_path: Path, reference) -> None:
    code, said, sweep = _kill_worker_of_job0(tmp_path)
    assert code == 1, said[-3000:]
    assert "Traceback" not in said and "EOFError" not in said
    lost = [line for line in said.splitlines() if "worker process died" in line]
    assert len(lost) == 1 and "job #0 " in lost[0] and "(exit signal 9)" in lost[0], said
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].tolist() == ["incomplete", "ok", "ok"]
    for job in ("1", "2"):
        pd.testing.assert_frame_equal(_history(sweep / job), _history(reference / job))


# Slow: the same promise at the pool's level is tests/test_worker_death.py's, by default.
@pytest.mark.slow
def test_retries_run_a_killed_workers_job_again(tmp_path: Path, reference) -> None:
    code, said, sweep = _kill_worker_of_job0(tmp_path, "hydra.launcher.retries=1")
    assert code == 0, said[-3000:]
    assert "Traceback" not in said
    retried = [line for line in said.splitlines() if "running it again" in line]
    assert len(retried) == 1, said
    assert "job #0 (model.act=relu" in retried[0]
    assert "(exit signal 9); running it again (retry 1 of hydra.launcher.retries=1)" in retried[0]
    frame = pd.read_csv(sweep / "summary.csv")
    assert frame["status"].eq("ok").all()
    record = _record(sweep / "0")
    assert record["attempt"] == 2 and record["resumed_from_epoch"] >= 1
    assert [_record(sweep / j)["attempt"] for j in ("1", "2")] == [1, 1]
    for job in ("0", "1", "2"):  # the retried run ends as if never killed
        pd.testing.assert_frame_equal(_history(sweep / job), _history(reference / job))


# Slow: the same promise in-process is test_a_run_stops_at_its_time_limit_and_continues, below.
@pytest.mark.slow
def test_a_run_past_its_time_limit_is_timeout_and_resumes(tmp_path: Path, run_cli_module) -> None:
    """The limit is set from this machine's own epoch time (10 epochs' worth of 40), so the
    run stops partway however fast the machine is."""
    one = [*RUNS[1:-2], "trainer.epochs=40", "trainer.batch_size=20", "hydra/launcher=basic"]
    whole = run_cli_module("-m", *one, f"hydra.sweep.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    epoch = pd.read_csv(tmp_path / "whole" / "0" / "history.csv")["seconds"].median()
    sweep, limit = tmp_path / "sweep", round(10 * epoch, 3)
    limited = run_cli_module("-m", *one, f"trainer.time_limit={limit}", f"hydra.sweep.dir={sweep}")
    said = limited.stdout + limited.stderr
    assert limited.returncode == 1, said[-3000:]
    record = _record(sweep / "0")
    assert record["status"] == "timeout", record
    assert record["error"] == (
        f"stopped at trainer.time_limit={limit:g}s after epoch {record['epochs_done']}"
    )
    stopped_after = record["epochs_done"]
    assert stopped_after < 40
    if stopped_after:  # (0 only where this run was 10 times slower than the one above)
        assert (sweep / "0" / "checkpoint.pt").exists()
        assert len(_history(sweep / "0")) == stopped_after
    assert "--resume continues it from its checkpoint" in said
    assert "retry them with: python -m mlp_sweep --resume" in said
    resumed = run_cli_module("--resume", str(sweep), "trainer.time_limit=null")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    record = _record(sweep / "0")
    assert record["status"] == "ok" and record["attempt"] == 2
    assert record["resumed_from_epoch"] == (stopped_after or None)
    pd.testing.assert_frame_equal(_history(sweep / "0"), _history(tmp_path / "whole" / "0"))


def test_retries_and_time_limit_refused_in_one_line(run_cli_module) -> None:
    for args, line in [
        (["hydra.launcher.retries=-1"], "hydra.launcher.retries=-1: must be an integer >= 0"),
        (["trainer.time_limit=0"], "trainer.time_limit=0.0: must be a number of seconds > 0"),
    ]:
        done = run_cli_module("-m", "model.act=relu,selu", "data=synthetic", *args)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith(f"mlp_sweep: error: {line}")


def test_a_run_stops_at_its_time_limit_and_continues(tmp_path: Path) -> None:
    """In-process: past trainer.time_limit a run is `timeout` with its last epoch's
    checkpoint, and run again without the limit it ends as a run never stopped."""
    import dataclasses

    from mlp_sweep.config import Config, DataConfig, Dataset, ModelConfig, TrainerConfig
    from mlp_sweep.run.runner import run

    cfg = Config(
        model=ModelConfig(hidden=[32]),
        data=DataConfig(name=Dataset.synthetic, n_train=2000, n_test=200),
        trainer=TrainerConfig(epochs=30, batch_size=10, threads="1"),
    )
    whole = run(cfg, tmp_path / "whole")
    epoch = pd.read_csv(tmp_path / "whole" / "history.csv")["seconds"].median()
    limit = round(8 * epoch, 4)
    limited = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, time_limit=limit))
    record = run(limited, tmp_path / "run")
    assert record["status"] == "timeout" and record["epochs_done"] < 30
    assert (
        record["error"]
        == f"stopped at trainer.time_limit={limit:g}s after epoch {record['epochs_done']}"
    )
    stopped_after = record["epochs_done"]
    again = run(cfg, tmp_path / "run")  # the limit is a run setting: the same run continues
    assert again["status"] == "ok" and again["attempt"] == 2
    assert again["resumed_from_epoch"] == (stopped_after or None)
    assert again["test_acc"] == whole["test_acc"]
    pd.testing.assert_frame_equal(_history(tmp_path / "run"), _history(tmp_path / "whole"))


def test_a_stack_stops_at_its_time_limit_and_each_member_continues(tmp_path: Path) -> None:
    """In-process, the fused launcher's path: past trainer.time_limit every member of a stack
    is `timeout` in its own folder with its last epoch's checkpoint; run again without the
    limit, each continues from there (alone, as --resume would run it) to its last epoch."""
    import torch

    from mlp_sweep.config import Activation, Config, DataConfig, Dataset, ModelConfig, TrainerConfig
    from mlp_sweep.launch.stacked_group import Entry, train_group
    from mlp_sweep.run.lifecycle import JobInfo
    from mlp_sweep.run.runner import run

    def config(act: Activation, limit: float | None) -> Config:
        return Config(
            model=ModelConfig(hidden=[32], act=act),
            data=DataConfig(name=Dataset.synthetic, n_train=1500, n_test=200),
            trainer=TrainerConfig(epochs=16, batch_size=10, threads="1", time_limit=limit),
        )

    def group(folder: Path, limit: float | None) -> list[Path]:
        dirs = [folder / str(i) for i in range(2)]
        train_group([
            Entry(config(act, limit), d, JobInfo(num=i), d / "job.log", "%(message)s")
            for i, (act, d) in enumerate(zip((Activation.relu, Activation.selu), dirs, strict=True))
        ])  # fmt: skip
        return dirs

    threads = torch.get_num_threads()  # the group sets this process's, as a worker's
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        _stack_past_its_limit(tmp_path, config, group, run)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _stack_past_its_limit(tmp_path: Path, config, group, run) -> None:  # type: ignore[no-untyped-def]
    from mlp_sweep.config import Activation

    whole = group(tmp_path / "whole", None)
    assert [_record(d)["fused"]["members"] for d in whole] == [2, 2]
    epoch = pd.read_csv(whole[0] / "history.csv")["seconds"].median()
    limit = round(5 * epoch, 4)
    for i, run_dir in enumerate(group(tmp_path / "limited", limit)):
        record = _record(run_dir)
        assert record["status"] == "timeout" and record["epochs_done"] < 16, record
        assert record["error"] == (
            f"stopped at trainer.time_limit={limit:g}s after epoch {record['epochs_done']}"
        )
        stopped_after = record["epochs_done"]
        # None kept (no history.csv) only where the first epoch took 5 epochs' time: a busy CPU.
        kept = len(_history(run_dir)) if (run_dir / "history.csv").exists() else 0
        assert kept == stopped_after
        act = (Activation.relu, Activation.selu)[i]
        again = run(config(act, None), run_dir)
        assert again["status"] == "ok" and again["attempt"] == 2
        assert again["resumed_from_epoch"] == (stopped_after or None)
        assert len(_history(run_dir)) == 16
