"""Loggers in processes of their own (mlp_sweep.loggers.forked): the same promises as loggers
in threads (one warning for a failure, a bounded close, calls in order), plus the process's
own: it does the work, it never outlives the run, and nothing of it is left behind."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from mlp_sweep.loggers import LoggerSet, RunInfo, forked
from mlp_sweep.loggers.forked import ForkedLogger
from mlp_sweep.training.loop import EpochStats
from tests.helpers import Recorder, processes, wait_until

pytestmark = pytest.mark.skipif(not forked.SUPPORTED, reason="loggers are forked on Linux only")


class FileRecorder(Recorder):
    """Writes each call, with the pid it ran in, to a file: the test reads what the child did.
    Its start and finish say what they were sent (the run's label, the record's status)."""

    def __init__(self, name: str, path: Path, fail_on: str | None = None) -> None:
        super().__init__(name, fail_on)
        self.path = path

    def _call(self, what: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {what}\n")
        if what == self.fail_on:
            raise OSError(28, "No space left on device")
        if self.fail_on == f"hang at {what.split()[0]}":
            time.sleep(600)  # as a server that never answers

    def prepare(self) -> None:
        super().prepare()
        self.path.write_text("")

    def start(self, run: RunInfo, history: list[EpochStats], steps: list[Any]) -> None:
        self._call(f"start {run.label}")

    def finish(self, record: dict[str, Any]) -> None:
        self._call(f"finish {record['status']}")

    def recorded(self) -> tuple[set[int], list[str]]:
        lines = [line.split(" ", 1) for line in self.path.read_text().splitlines()]
        return {int(pid) for pid, _ in lines}, [what for _, what in lines]


def children() -> list[int]:
    """This process's children that are still there (zombies included)."""
    return [p.pid for p in processes() if p.ppid == os.getpid()]


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie, waiting for its parent to reap it, does not)."""
    return any(p.pid == pid and p.alive for p in processes())


def three_epochs(loggers: LoggerSet) -> None:
    loggers.start(RunInfo(Path("."), "0: model.act=relu", "sweep", {}), [], [])
    for epoch in (1, 2, 3):
        loggers.step(epoch, torch.tensor(1.0))
        loggers.epoch(EpochStats(epoch, 1.0, 1.0, 0.5, 0.1))
        loggers.digits(epoch, None)  # type: ignore[arg-type]  # a recorder reads none
    loggers.finish({"status": "ok"})


def test_each_logger_works_in_its_own_process_and_fails_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = children()
    full = FileRecorder("tensorboard", tmp_path / "full", fail_on="epoch 2")
    fine = FileRecorder("visdom", tmp_path / "fine")
    with caplog.at_level(logging.WARNING):
        loggers = LoggerSet([(ForkedLogger(full), 5.0), (ForkedLogger(fine), 5.0)])
        three_epochs(loggers)
        failed = loggers.close()
    assert failed == {"tensorboard": "OSError: [Errno 28] No space left on device"}
    every = [f"{what} {e}" for e in (1, 2, 3) for what in ("step", "epoch", "digits")]
    pids, calls = fine.recorded()
    assert calls == ["start 0: model.act=relu", *every, "finish ok", "close"]
    full_pids, full_calls = full.recorded()
    assert full_calls == ["start 0: model.act=relu", *every[:5]]
    assert len(pids | full_pids) == 2 and os.getpid() not in pids | full_pids
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
        "logger tensorboard failed: OSError: [Errno 28] No space left on device; "
        "the run goes on without it"
    ]
    assert children() == before  # both ended and were waited for


def test_a_logger_process_that_never_answers_is_given_up_and_killed(tmp_path: Path) -> None:
    before = children()
    hangs = FileRecorder("visdom", tmp_path / "hangs", fail_on="hang at close")
    loggers = LoggerSet([(ForkedLogger(hangs), 1.0)])
    three_epochs(loggers)
    tic = time.monotonic()
    failed = loggers.close()
    assert time.monotonic() - tic < 5
    assert failed == {"visdom": "still sending after 1 s; given up"}
    assert hangs.recorded()[1][-1] == "close"
    wait_until(lambda: children() == before, "the killed logger's process to be reaped")


def test_a_logger_process_killed_mid_run_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGINT and SIGTERM (Ctrl-C, scancel) leave it alone: the run closes it. SIGKILL (the
    kernel's OOM killer) ends it; the run goes on."""
    logger = ForkedLogger(FileRecorder("visdom", tmp_path / "killed"))
    with caplog.at_level(logging.WARNING):
        loggers = LoggerSet([(logger, 5.0)])
        loggers.start(RunInfo(Path("."), "0: x", "sweep", {}), [], [])
        wait_until(lambda: "start" in (tmp_path / "killed").read_text(), "the logger started")
        assert Path(f"/proc/{logger.pid}/comm").read_text() == "logger visdom\n"  # in ps, top
        for signum in (signal.SIGINT, signal.SIGTERM):
            os.kill(logger.pid, signum)
        loggers.epoch(EpochStats(1, 1.0, 1.0, 0.5, 0.1))
        wait_until(lambda: "epoch 1" in (tmp_path / "killed").read_text(), "epoch 1 logged")
        os.kill(logger.pid, signal.SIGKILL)
        loggers.epoch(EpochStats(2, 1.0, 1.0, 0.5, 0.1))
        failed = loggers.close()
    assert failed == {"visdom": f"its process ended (killed by signal {int(signal.SIGKILL)})"}
    assert len([r for r in caplog.records if "logger visdom failed" in r.getMessage()]) == 1


def test_a_logger_process_never_outlives_its_run(tmp_path: Path) -> None:
    """The run's process killed with SIGKILL (no close, no cleanup) while its logger's process
    waits on a server that never answers (so it would never read its pipe's end): that process
    goes with the run."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_forked_loggers import FileRecorder
        from mlp_sweep.loggers import LoggerSet, RunInfo
        from mlp_sweep.loggers.forked import ForkedLogger
        calls = Path({str(tmp_path / "calls")!r})
        logger = ForkedLogger(FileRecorder("visdom", calls, fail_on="hang at start"))
        loggers = LoggerSet([(logger, 5.0)])
        loggers.start(RunInfo(Path("."), "0: x", "sweep", {{}}), [], [])
        print(logger.pid, flush=True)
        time.sleep(600)
        """
    )
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert run.stdout is not None
        child = int(run.stdout.readline())
        wait_until(lambda: "start" in (tmp_path / "calls").read_text(), "the logger to hang")
        assert _alive(child)
        run.kill()
        run.wait(10)
        wait_until(lambda: not _alive(child), "the logger's process to go with its run")
    finally:
        run.kill()
        if child and _alive(child):  # only where the test failed: leave nothing running
            os.kill(child, signal.SIGKILL)
