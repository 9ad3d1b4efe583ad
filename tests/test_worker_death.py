"""A worker that dies costs its own job, never the pool: whenever it dies, however it dies.

The pool (mlp_sweep.launch.pool) learns of a death from two places, the worker's pipe (EOF) and
its process sentinel, in either order; a death between two jobs shows first as a failed send.
Each case here kills real worker processes and checks every other job still answers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mlp_sweep.launch import pool as pool_module
from mlp_sweep.launch.pool import Lost, Pool


def _job(seconds: float, folder: str, name: str) -> str:
    """Note that this job started (and in which process), then work for a while."""
    Path(folder, name).write_text(str(os.getpid()))
    time.sleep(seconds)
    return name


def _kill_when_started(marker: Path, sig: int) -> None:
    os.kill(_wait_for(marker), sig)


def _wait_for(path: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT], ids=lambda s: s.name
)
def test_a_worker_killed_mid_job_costs_that_job_only(tmp_path: Path, sig: int) -> None:
    """Round after round (the pipe's EOF and the sentinel race differently each time)."""
    pool = Pool(_job, workers=2)
    try:
        for round_ in range(6):
            folder = tmp_path / str(round_)
            folder.mkdir()
            payloads = [(0.5 if i == 0 else 0.05, str(folder), f"job{i}") for i in range(5)]

            killer = threading.Thread(target=_kill_when_started, args=(folder / "job0", sig))
            killer.start()
            answers = pool.run(payloads)
            killer.join()
            kind, value = answers[0]
            assert kind == "lost" and isinstance(value, Lost), answers[0]
            assert value.exitcode == -sig
            assert f"exit signal {sig}" in str(value)
            assert answers[1:] == [("ok", f"job{i}") for i in range(1, 5)]
    finally:
        pool.close()


def test_a_worker_dead_between_jobs_hands_its_next_job_on(tmp_path: Path) -> None:
    """Killed while idle, after answering: its next job goes to a live worker and runs."""
    pool = Pool(_job, workers=2)
    try:
        assert pool.run([(0.0, str(tmp_path), "a"), (0.0, str(tmp_path), "b")]) == [
            ("ok", "a"),
            ("ok", "b"),
        ]
        pids = {int((tmp_path / n).read_text()) for n in "ab"}
        for pid in pids:  # every worker of the pool dies between the two runs
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        answers = pool.run([(0.0, str(tmp_path), f"c{i}") for i in range(4)])
        assert answers == [("ok", f"c{i}") for i in range(4)]
        assert not pids & {int((tmp_path / f"c{i}").read_text()) for i in range(4)}
    finally:
        pool.close()


def test_a_worker_that_exits_by_itself_mid_job_is_lost_not_fatal(tmp_path: Path) -> None:
    """os._exit in the job (a library calling exit, a segfaulting extension): exit code kept."""
    pool = Pool(_exit_or_work, workers=2)
    try:
        answers = pool.run([(7,), (0,), (0,), (3,)])
    finally:
        pool.close()
    assert [kind for kind, _ in answers] == ["lost", "ok", "ok", "lost"]
    assert answers[0][1].exitcode == 7 and answers[3][1].exitcode == 3


def _exit_or_work(code: int) -> int:
    if code:
        os._exit(code)
    time.sleep(0.05)
    return code


def test_a_fork_server_killed_while_importing_costs_no_job(
    tmp_path: Path, fresh_fork_server: None
) -> None:
    """The fork server killed while it imports (the OOM killer, a user's `kill -9`): the pool
    starts another and every job runs; none is reported lost, for none had begun."""
    os.environ["MLP_SWEEP_TEST_DIE_ONCE"] = str(tmp_path / "died")  # the server's environment
    try:
        pool_module.warm_up("tests.dying_worker")
        pool = Pool(_job, workers=2, preload="tests.dying_worker")
        try:
            answers = pool.run([(0.0, str(tmp_path), f"job{i}") for i in range(4)])
        finally:
            pool.close()
    finally:
        del os.environ["MLP_SWEEP_TEST_DIE_ONCE"]
    assert (tmp_path / "died").exists()  # the first server did die
    assert answers == [("ok", f"job{i}") for i in range(4)]


def test_retries_run_a_job_whose_worker_died_again(tmp_path: Path) -> None:
    """Pool(retries=1): a job whose worker was killed mid-job runs again and answers; the
    retry is told to on_retry with the death; a job that raised is never retried."""
    told: list[tuple[int, int, int]] = []
    pool = Pool(
        _job,
        workers=2,
        retries=1,
        on_retry=lambda i, lost, n: told.append((i, lost.exitcode or 0, n)),
    )
    try:
        killer = threading.Thread(
            target=_kill_when_started, args=(tmp_path / "job0", signal.SIGKILL)
        )
        killer.start()
        answers = pool.run([(0.5 if i == 0 else 0.05, str(tmp_path), f"job{i}") for i in range(3)])
        killer.join()
    finally:
        pool.close()
    assert answers == [("ok", "job0"), ("ok", "job1"), ("ok", "job2")]
    assert told == [(0, -signal.SIGKILL, 1)]


def test_a_fused_worker_killed_mid_stack_costs_its_stack_only(tmp_path: Path) -> None:
    """hydra/launcher=fused, for real: SIGKILL to the worker training one stack. Its members
    are lost (one line each), the other stack finishes, the summary is written, exit 1; then
    --resume trains the lost members from their checkpoints and the sweep ends whole."""
    import json

    import pandas as pd

    from tests.helpers import run_command, start_cli, wait_for

    sweep = tmp_path / "sweep"
    args = ["-m", "model.act=relu,leaky,selu,softplus", "data=synthetic", "data.n_train=8000"]
    args += ["trainer.epochs=4", "hydra/launcher=fused", "hydra.launcher.fuse=always"]
    proc = start_cli(*args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)

    def epochs(job: int) -> int:
        try:
            return int(json.loads((sweep / str(job) / "metrics.json").read_text())["epochs_done"])
        except (OSError, ValueError, KeyError):
            return 0

    wait_for(lambda: epochs(0) >= 1, proc)
    holder = json.loads((sweep / "0" / ".lock").read_text())["pid"]
    assert holder != proc.pid
    os.kill(holder, signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    said = out + err
    assert proc.returncode == 1, said[-3000:]
    assert "Traceback" not in said
    frame = pd.read_csv(sweep / "summary.csv")
    lost = [line for line in said.splitlines() if "worker process died" in line]
    stack = json.loads((sweep / "0" / "metrics.json").read_text())["fused"]["jobs"]
    assert len(lost) == len(stack) and all("(exit signal 9)" in line for line in lost), lost
    assert [frame["status"][j] != "ok" for j in range(4)] == [j in stack for j in range(4)]
    resumed = run_command("--resume", str(sweep), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert pd.read_csv(sweep / "summary.csv")["status"].tolist() == ["ok"] * 4
