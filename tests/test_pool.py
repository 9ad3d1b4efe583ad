"""Workers started at the top of the command (mlp_sweep.launch.warm_pool): the pool adopts them,
kills the ones it does not need, and a command that stops before launching leaves none."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest

from mlp_sweep.cli.resume import resume_argv
from mlp_sweep.launch import pool
from mlp_sweep.launch.warm_pool import expected_workers
from mlp_sweep.training import threads
from tests.helpers import FORK_SERVER, processes, run_python


@pytest.mark.parametrize(
    ("argv", "workers"),
    [  # on 8 cores: the sweep's workers, at most 7 (the command keeps a core)
        (["-m", "model.act=relu,leaky,selu,softplus"], 4),
        (["-m", "model.act=relu,leaky", "seed=range(3)"], 6),
        (["-m", "seed=range(20)"], 7),
        (["-m", "seed=range(1)"], 1),
        (["-m", "seed=range(10)", "hydra/launcher=parallel"], 7),
        (["-m", "seed=range(10)", "hydra.launcher.n_jobs=3"], 3),
        (["-m", "seed=range(10)", "trainer.threads=2"], 4),
        (["-m", "seed=range(10)", "trainer.threads=auto"], 7),
        (["model.act=relu"], 0),  # a single run: no pool
        (["-m", "seed=range(10)", "hydra/launcher=basic"], 0),
        (["-m", "seed=range(10)", "hydra/launcher=slurm"], 0),
        (["-m", "seed=range(10)", "hydra/launcher=fused"], 0),  # its timing wants quiet cores
        (["-m", "hparams_search=optuna"], 0),  # the search sizes its own batches
        (["-m", "seed=range(4)", "trainer.threads=1,2"], 0),
        (["-m", "seed=range(4)", "hydra.launcher.n_jobs=null"], 0),
        (["-m", "seed=range(4)", "--cfg", "job"], 0),
        (["-m", "seed=range(4)", "--config-name", "other"], 0),
        (["-m", "x=${oops"], 0),  # the command itself reports the line
        (["--resume", "/no/such/folder"], 0),
    ],
)
def test_the_command_line_says_how_many_workers_to_start(argv: list[str], workers: int) -> None:
    assert expected_workers(argv, cores=8, replay=resume_argv) == workers


def test_a_single_core_keeps_its_core() -> None:
    assert expected_workers(["-m", "seed=range(10)"], cores=1) == 0


def test_the_pool_forks_every_worker_from_one_server_that_imported_once(
    tmp_path: Path, fresh_fork_server: None
) -> None:
    """warm_up starts the fork server, which imports the preload (torch, for the command) once;
    every worker is forked from it with the module already there, and runs job after job."""
    imports = tmp_path / "imports"
    os.environ["MLP_SWEEP_TEST_IMPORTS"] = str(imports)  # the server's environment
    try:
        pool.warm_up("tests.counted_import")
        workers = pool.Pool(_where, 3)
        try:
            answers = workers.run([()] * 9)
        finally:
            workers.close()
    finally:
        del os.environ["MLP_SWEEP_TEST_IMPORTS"]
    assert {kind for kind, _ in answers} == {"ok"}
    pids = {pid for _, (pid, _, _) in answers}
    parents = {ppid for _, (_, ppid, _) in answers}
    assert len(pids) == 3 and all(preloaded for _, (_, _, preloaded) in answers)
    server = imports.read_text().split()
    assert len(server) == 1 and parents == {int(server[0])}  # one import, in the server
    assert os.getpid() not in parents


def _where() -> tuple[int, int, bool]:
    import sys

    return os.getpid(), os.getppid(), "tests.counted_import" in sys.modules


def _workers_with(marker: str) -> list[int]:
    """Live fork servers and pool workers whose environment holds marker (the command's).

    Not multiprocessing's resource tracker: it exits on its own once it sees the command gone,
    which may be a moment after the command's exit.
    """
    return [
        p.pid
        for p in processes()
        if p.alive and marker.encode() in p.environ and FORK_SERVER in p.cmdline
    ]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
@pytest.mark.skipif(threads.cores() < 2, reason="on one core the fork server starts at launch")
def test_a_refused_sweep_leaves_no_worker_behind(run_cli, tmp_path: Path) -> None:
    """The fork server the command started early goes with the command."""
    argv = ["-m", "model.act=relu,selu", "optim.lr=-1", f"hydra.sweep.dir={tmp_path}/s"]
    assert expected_workers(argv) >= 1  # so there is one to leave behind
    marker = f"MLP_SWEEP_TEST_MARK={uuid.uuid4().hex}"
    name, value = marker.split("=")
    os.environ[name] = value  # inherited by the command and by every worker it starts
    try:
        done = run_cli(*argv)
    finally:
        del os.environ[name]
    assert done.returncode == 2
    assert done.stderr.strip().startswith("mlp_sweep: error: optim.lr")
    assert len(done.stderr.strip().splitlines()) == 1
    deadline = time.monotonic() + 10  # it sees the command gone at once; the kernel, soon after
    while _workers_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_with(marker) == []


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_worker_stopped_while_starting_runs_nothing() -> None:
    """A stop that reaches a worker still starting (the parent stopping its pool while a late
    worker waits for its set-up) ends it once started, before any job. (Raised mid-start, the
    exception was sometimes lost and the worker ran the job it was sent: tests/test_interrupt.py's
    parallel-sigterm case caught that, 1 run in 2.)"""
    slot = pool._spawn(None)
    try:
        deadline = time.monotonic() + 60
        while not _catches_sigterm(slot.process.pid):
            assert time.monotonic() < deadline and slot.process.is_alive()
            time.sleep(0.01)
        os.kill(slot.process.pid, signal.SIGTERM)
        slot.conn.send(({}, cloudpickle.dumps(os.getpid)))
        slot.conn.send((0, cloudpickle.dumps(())))
        slot.process.join(timeout=60)
        assert slot.process.exitcode == 0
        with pytest.raises((EOFError, ConnectionResetError)):  # it answered nothing
            slot.conn.recv_bytes()
    finally:
        slot.process.kill()
        slot.process.join()


# The command as `python -m mlp_sweep` runs it, saying at its exit whether torch was imported
# in its own process (alter_sys: its workers start from mlp_sweep.__main__, as they would).
_SAYS_IF_TORCH = (
    "import atexit, runpy, sys; "
    "atexit.register(lambda: print('torch imported here:', 'torch' in sys.modules)); "
    "sys.argv = ['mlp_sweep', *sys.argv[1:]]; "
    "runpy.run_module('mlp_sweep', run_name='__main__', alter_sys=True)"
)


def test_the_command_itself_never_imports_torch_on_the_parallel_launcher(
    tmp_path: Path,
) -> None:
    """Its workers import torch (~2.5 s of CPU each) while it checks the jobs; a third import
    in the command's own process would only compete with theirs for the cores. MNIST, so the
    data check (md5 of the shipped files) is on the path too."""
    args = ["-m", "model.act=relu,selu", "data.limit_train=200", "data.limit_test=100"]
    args += ["hydra.launcher.n_jobs=1"]  # one worker is enough to leave the command idle
    result = run_python(
        "-c", _SAYS_IF_TORCH, *args, "trainer.epochs=1", f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 runs" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "torch imported here: False"
    # A single run trains in the command's own process: there it is imported.
    result = run_python(
        "-c", _SAYS_IF_TORCH, "model.act=relu", "data=synthetic", "trainer.epochs=1",
        f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "torch imported here: True"


def _sleep(seconds: float, name: str) -> str:
    time.sleep(seconds)
    return name


def test_a_free_worker_takes_the_next_job_at_once() -> None:
    """run(more=...): no batches. While one worker runs a long job the other runs every short
    one, each asked for only once the previous answer was told (as a search asks Optuna)."""
    events: list[str] = []
    lengths = iter([1.5, 0.05, 0.05, 0.05, 0.05])

    def more() -> tuple[float, str] | None:
        seconds = next(lengths, None)
        if seconds is None:
            return None
        name = f"job{len([e for e in events if e.startswith('asked')])}"
        events.append(f"asked {name}")
        return seconds, name

    def told(index: int, kind: str, value: object) -> None:
        events.append(f"told {value}")

    workers = pool.Pool(_sleep, 2)
    try:
        answers = workers.run([], more=more, on_answer=told)
    finally:
        workers.close()
    assert answers == [("ok", f"job{i}") for i in range(5)]
    # job0 (long) and job1 start together; each short one follows the one before at once.
    assert events == [
        "asked job0", "asked job1", "told job1", "asked job2", "told job2", "asked job3",
        "told job3", "asked job4", "told job4", "told job0",
    ]  # fmt: skip
