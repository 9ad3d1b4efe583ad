"""One writer per run folder, with real processes; and a resume that replays nothing unsafe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlp_sweep.cli.replay import refusal
from mlp_sweep.run import lock
from mlp_sweep.summary import main as summary_main
from tests.helpers import (
    assert_same_history,
    cli_env,
    epochs_written,
    run_command,
    start_cli,
    wait_for,
)

LONG = ["data.limit_train=6000", "data.limit_test=2000", "trainer.epochs=6"]

HOLD = """
import sys, time
from pathlib import Path
from mlp_sweep.run import lock
from mlp_sweep.summary import main as summary_main
lock.acquire(Path(sys.argv[1]), since="2026-01-01T00:00:00+00:00")
print("held", flush=True)
time.sleep(60)
"""


def hold_lock(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, env=cli_env(), text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    proc = hold_lock(folder)
    try:
        holder = lock.holder(folder)
        assert holder is not None and holder.pid == proc.pid
        assert str(holder).startswith(f"pid {proc.pid} on ") and "since 2026-01-01" in str(holder)
        with pytest.raises(lock.RunLocked, match=f"is being trained by pid {proc.pid} on "):
            lock.acquire(folder, since="now")
    finally:
        proc.kill()
        proc.wait()
    # SIGKILL left the file but not the lock: the kernel dropped it with the process.
    assert (folder / lock.LOCK_FILE).exists()
    assert lock.holder(folder) is None
    with lock.holding(folder, since="now"):
        assert lock.holder(folder) is not None  # ours now, and asking did not drop it
        assert lock.holder(folder) is not None
        with lock.holding(folder, since="again"):  # re-entrant
            pass
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from mlp_sweep.run import lock;"
                " print(lock.holder(Path(sys.argv[1])).pid)",
                str(folder),
            ],
            env=cli_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(probe.stdout) == os.getpid()  # still held after the inner block
    assert lock.holder(folder) is None


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_holder_is_right_on_every_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    """Off Linux, holder() takes the lock for an instant; on a read-only descriptor that
    raised EBADF, read as "locked", and a crashed run stayed `running elsewhere` for ever."""
    monkeypatch.setattr(sys, "platform", platform)
    folder = tmp_path / "run"
    proc = hold_lock(folder)
    try:
        holder = lock.holder(folder)
        assert holder is not None and holder.pid == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert lock.holder(folder) is None  # the crashed holder's folder is free again
    os.chmod(folder / lock.LOCK_FILE, 0o644)
    assert lock.holder(folder) is None  # and asking left no lock behind
    with lock.holding(folder, since="now"):
        pass


def killed_sweep(tmp_path: Path) -> Path:
    """A 3-run sweep SIGKILLed while its first runs are mid-way."""
    sweep = tmp_path / "killed"
    proc = start_cli(
        "-m",
        "model.act=relu,selu,softplus",
        *LONG,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        stdout=None,
    )
    wait_for(lambda: epochs_written(sweep / "0") >= 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return sweep


def epoch_lines(log: Path | str) -> list[int]:
    """The epochs a log reports trained (a file, or its text)."""
    text = log.read_text() if isinstance(log, Path) else log
    return [
        int(line.split("epoch ")[1].split("/")[0])
        for line in text.splitlines()
        if "] - epoch " in line
    ]


# Slow on both launchers: by default, one writer per folder is test_a_folder_being_trained_is_
# left_alone's (a second command finds the folder locked, writes nothing into it, says so).
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "basic"])
def test_two_resumes_at_once_train_each_run_once(run_main, tmp_path: Path, launcher: str) -> None:
    sweep = killed_sweep(tmp_path)
    logs = [sweep / str(n) / "mlp_sweep.log" for n in range(3)]
    before = [log.read_text() if log.exists() else "" for log in logs]
    extra = [f"hydra/launcher={launcher}"]
    procs = [start_cli("--resume", str(sweep), *extra, cwd=tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert set(codes) <= {0, 1}, outputs
    for code, (out, err) in zip(codes, outputs, strict=True):
        assert "Traceback" not in out + err
        if code == 1:  # it backed off a run the other one was training, and said so
            assert "is being trained by pid" in out + err
    # Between them, the two resumes trained every epoch the kill left undone exactly once:
    # from the run's checkpoint on, with no epoch trained by both.
    for n, (log, old) in enumerate(zip(logs, before, strict=True)):
        text = log.read_text()
        assert text.startswith(old)
        resumed = json.loads((sweep / str(n) / "metrics.json").read_text())["resumed_from_epoch"]
        assert sorted(epoch_lines(text[len(old) :])) == list(range((resumed or 0) + 1, 7)), n
    assert summary_main([str(sweep)]) == 0  # python -m mlp_sweep.summary, called here
    assert pd.read_csv(sweep / "summary.csv")["status"].tolist() == ["ok"] * 3
    # And each ends where one uninterrupted run ends.
    reference = tmp_path / "reference"
    done = run_main("model.act=relu", *LONG, f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_history(sweep / "0", reference)


def test_a_folder_being_trained_is_left_alone(tmp_path: Path) -> None:
    sweep = tmp_path / "busy"
    args = ["-m", "model.act=relu", *LONG, f"hydra.sweep.dir={sweep}"]
    first = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: epochs_written(sweep / "0") >= 1, first)
    # Frozen mid-run (SIGSTOP to its process group) while the second command looks: still
    # training, holding its lock, however long the second takes on a busy machine.
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        trainer = json.loads((sweep / "0" / "metrics.json").read_text())["pid"]
        hydra_files = {p: p.stat().st_mtime_ns for p in (sweep / "0" / ".hydra").iterdir()}
        log_before = (sweep / "0" / "mlp_sweep.log").read_text()
        assert epochs_written(sweep / "0") < 6  # mid-run indeed

        second = run_command(*args, cwd=tmp_path, timeout=120)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert second.returncode == 1, second.stderr[-3000:]
    said = second.stdout + second.stderr
    assert f"{sweep / '0'} is being trained by pid {trainer} on " in said
    assert "Traceback" not in said
    # The second command wrote nothing into the folder: not Hydra's files, not the log.
    assert {p: p.stat().st_mtime_ns for p in (sweep / "0" / ".hydra").iterdir()} == hydra_files
    assert "left alone" not in (sweep / "0" / "mlp_sweep.log").read_text()
    assert (sweep / "0" / "mlp_sweep.log").read_text().startswith(log_before)
    assert pd.read_csv(sweep / "summary.csv")["status"].tolist() == ["running elsewhere"]

    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-3000:]
    assert pd.read_csv(sweep / "summary.csv")["status"].tolist() == ["ok"]
    assert sorted(epoch_lines(sweep / "0" / "mlp_sweep.log")) == list(range(1, 7))


def test_a_lock_left_by_a_killed_process_is_not_stale(run_cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "one"
    proc = start_cli("model.act=selu", *LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path, stdout=None)
    wait_for(lambda: epochs_written(run_dir) >= 1, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / lock.LOCK_FILE).read_text())["pid"] == proc.pid
    started = time.monotonic()
    result = run_cli("model.act=selu", *LONG, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["resumed_from_epoch"] >= 1
    assert time.monotonic() - started < 60  # nobody waited for a lock


# What --resume refuses to replay from a saved multirun.yaml: code, other plugins, commands
# and paths in launcher settings, folders outside the sweep, values that are not data.
DANGEROUS = [
    "hydra.callbacks.evil._target_=os.system",
    "+hydra.callbacks.evil._target_=builtins.print",
    "hydra.launcher._target_=os.system",
    "hydra.sweeper._target_=os.system",
    "hydra/launcher=joblib",
    "hydra/job_logging=colorlog",
    "hydra.job_logging.handlers.file.class=logging.FileHandler",
    "+model.extra={_target_: os.system}",
    "hydra.sweeper.params.hydra.callbacks.x=y",
    'hydra.launcher.setup=["touch /tmp/pwned"]',  # shell lines in the sbatch script
    "hydra.launcher.additional_parameters={wrap: id}",  # any sbatch option
    "hydra.launcher.submitit_folder=/tmp/elsewhere",
    "hydra.launcher.name=x",
    "hydra.launcher.partition='debug --output=/tmp/x'",  # a second sbatch option
    "hydra.job.env_set.LD_PRELOAD=/tmp/x.so",
    "hydra.searchpath=[file:///tmp]",
    "hydra.job.name='a b'",
    "hydra.job.name=../x",
    "hydra.sweep.subdir=../../escape",
    "hydra.sweep.subdir=${data.root}",
    "hydra.output_subdir=/tmp/x",
    "hydra.run.dir=/tmp/x",
    "hydra.sweeper.storage=postgresql://host/db",
    "hydra.sweeper.storage=sqlite:////tmp/elsewhere.db",
    "hydra.launcher.n_jobs=1,2",
    "data.root=${oc.env:HOME}",
    "model.act=relu\nhidden",
    "optim@model=adam",
    "optim=choice(sgd,../../x)",
    "model.actt=relu",
]
SAFE = [
    "model.act=relu,selu",
    "optim=adam",
    "optim=glob(*)",
    "data=synthetic",
    "experiment=tutorial",
    "hparams_search=optuna",
    "optim.lr=0.1",
    "seed=${hydra.job.num}",
    "hydra/launcher=basic",
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.n_jobs=1",
    "hydra.launcher.mem_per_gpu=4G",
    "hydra.launcher.fuse=always",
    "hydra.launcher.retries=1",
    "hydra/sweeper=mlp_sweep_optuna",
    "hydra.sweeper.n_trials=8",
    "hydra.sweeper.direction=[maximize,minimize]",
    "hydra.sweeper.sampler.name=grid",
    "hydra.sweeper.params.optim.lr=tag(log, interval(0.01, 0.1))",
    "hydra.sweeper.storage=sqlite:///${hydra.sweep.dir}/optuna.db",
    "hydra.sweep.subdir=${hydra.job.num}",
    "hydra.job.name=my_sweep",
    "hydra.job.chdir=false",
    "hydra.verbose=true",
]


@pytest.mark.parametrize("override", DANGEROUS)
def test_resume_refuses_what_can_run_code(override: str, tmp_path: Path) -> None:
    assert refusal(override, tmp_path) is not None


@pytest.mark.parametrize("override", SAFE)
def test_resume_replays_the_projects_own_keys(override: str, tmp_path: Path) -> None:
    assert refusal(override, tmp_path) is None


def test_resume_replays_a_storage_only_inside_the_folder(tmp_path: Path) -> None:
    inside, outside = tmp_path / "sweep" / "optuna.db", tmp_path / "optuna.db"
    assert refusal(f"hydra.sweeper.storage=sqlite:///{inside}", tmp_path / "sweep") is None
    assert refusal(f"hydra.sweeper.storage={inside}", tmp_path / "sweep") is None
    assert refusal(f"hydra.sweeper.storage=sqlite:///{outside}", tmp_path / "sweep")
    assert refusal(f"hydra.sweeper.storage={tmp_path}/sweep/../x", tmp_path / "sweep")


def test_crafted_folder_is_refused_in_one_line(run_cli, run_main, tmp_path: Path) -> None:
    sweep = tmp_path / "theirs"
    made = run_cli(
        "-m",
        "model.act=relu",
        "data=synthetic",
        "data.n_train=200",
        "trainer.epochs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert made.returncode == 0, made.stderr[-3000:]
    saved = yaml.safe_load((sweep / "multirun.yaml").read_text())
    evil = "+hydra.callbacks.evil._target_=hydra.experimental.callback.Callback"
    saved["hydra"]["overrides"]["hydra"].append(evil)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(saved))
    before = (sweep / "0" / "metrics.json").read_bytes()

    result = run_main("--resume", str(sweep))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mlp_sweep: error: --resume={sweep}: {sweep}/multirun.yaml asks for {evil}: "
        "hydra.callbacks.evil._target_ names code to run (_target_), so it is not replayed; if "
        f"you trust the folder, give it yourself: python -m mlp_sweep --resume {sweep} {evil}"
    ]
    assert (sweep / "0" / "metrics.json").read_bytes() == before
    # Given explicitly, it is the user's own choice: accepted.
    result = run_cli("--resume", str(sweep), evil)
    assert result.returncode == 0, result.stderr[-3000:]
