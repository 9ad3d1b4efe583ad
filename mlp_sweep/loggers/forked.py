"""A logger in a process of its own, forked from the run's once its library is imported.

A logger's work (visdom's JSON and HTTP requests and PNG encoding, TensorBoard's event
records) is Python that holds the interpreter's lock while it runs, and the training loop
needs that lock between every two tensor operations: in the run's own process each
millisecond of logging is close to a millisecond of training lost. In a child process it costs
the training process a pickled message through a pipe, written and answered on the logger's
thread (mlp_sweep.loggers.worker), never on the training loop's.

The child is forked after the logger's `prepare()`, so it starts with the library imported,
and it knows nothing of the run but what it is sent. Its calls are answered in order, one by
one: what the call returned, or the failure as one line, which the parent raises as
LoggerFailure so the logger fails exactly as one in a thread does (one warning, never the
run). The child ends when the pipe closes; it ignores Ctrl-C and SIGTERM (the run decides
when its loggers close) and the kernel kills it when the thread that forked it ends
(PR_SET_PDEATHSIG), so it never outlives the run, even one killed with SIGKILL. A logger given
up at close is killed.

Linux only (PR_SET_PDEATHSIG); elsewhere the loggers stay threads of the run's process.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import signal
import struct
import sys
import threading
from typing import Any

from mlp_sweep.loggers.protocol import LoggerFailure, RunLogger, describe_failure

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_NAME = 15
HEADER = struct.Struct("<Q")  # each message: its length, then the pickle
SUPPORTED = sys.platform == "linux"
# Signals a logger's process ignores: Ctrl-C reaches the whole process group and scancel every
# process of the job, and the run, which handles them, closes its loggers itself.
LEFT_TO_THE_RUN = {signal.SIGINT, signal.SIGTERM}


def _write(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None  # the other end closed
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read(fd: int) -> tuple[bool, Any]:
    """(True, message), or (False, (None, None)) once the other end has closed."""
    header = _read_exactly(fd, HEADER.size)
    body = None if header is None else _read_exactly(fd, HEADER.unpack(header)[0])
    return (False, (None, None)) if body is None else (True, pickle.loads(body))


def _how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


class ForkedLogger:
    """A RunLogger whose calls run in a child process; see the module's docstring."""

    def __init__(self, logger: RunLogger) -> None:
        self.logger = logger
        self.name = logger.name
        self.pid = 0
        self._calls = self._answers = -1  # our ends of the two pipes
        self._lock = threading.Lock()  # the pid is not killed once reaped (it may be reused)

    @property
    def finish_seconds(self) -> float:
        return self.logger.finish_seconds

    def prepare(self) -> None:
        self.logger.prepare()  # the imports, here: the child starts with them done
        calls_read, calls_write = os.pipe()
        answers_read, answers_write = os.pipe()
        # The child is born with Ctrl-C and SIGTERM held back, until it ignores them.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, LEFT_TO_THE_RUN)
        try:
            pid = os.fork()
        except OSError:  # no memory or no process slot left: the logger fails, not the run
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            for fd in (calls_read, calls_write, answers_read, answers_write):
                os.close(fd)
            raise
        if pid == 0:  # the child: never returns
            status = 1
            try:
                _serve(self.logger, calls_read, answers_write)
                status = 0
            finally:
                os._exit(status)  # no atexit handlers, no flushing the parent's buffers
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        os.close(calls_read)
        os.close(answers_write)
        self.pid, self._calls, self._answers = pid, calls_write, answers_read

    def _call(self, method: str, *args: Any) -> Any:
        try:
            _write(self._calls, (method, args))
            answered, (failure, result) = _read(self._answers)
        except OSError:  # EPIPE: the child is gone
            answered, failure, result = False, None, None
        except Exception:  # arguments that do not pickle: never called again, let it go
            self._end()
            raise
        if not answered:
            raise LoggerFailure(f"its process ended ({self._end()})")
        if failure is not None:  # never called again (the first failure stops a logger)
            self._end()
            raise LoggerFailure(failure)
        return result

    def start(self, run: Any, history: list[Any], steps: list[Any]) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call("start", run, history, steps)
        return result

    def steps(self, points: list[Any]) -> None:
        self._call("steps", points)

    def epoch(self, stats: Any) -> None:
        self._call("epoch", stats)

    def digits(self, epoch: int, digits: Any) -> None:
        self._call("digits", epoch, digits)

    def finish(self, record: dict[str, Any]) -> None:
        self._call("finish", record)

    def close(self) -> None:
        self._call("close")
        self._end()  # the child sees its pipe close, and exits

    def abandon(self) -> None:
        """Kill the child: its logger was given up (say, a server that never answers). The
        logger's thread, blocked on the child's answer, then sees it gone and reaps it; the
        pipes are closed only on that thread, which may still be using them."""
        with self._lock:
            if self.pid:
                os.kill(self.pid, signal.SIGKILL)

    def _end(self) -> str:
        """Close our ends of the pipes and wait for the child; how it ended."""
        for fd in (self._calls, self._answers):
            if fd >= 0:
                os.close(fd)
        self._calls = self._answers = -1
        with self._lock:
            if not self.pid:
                return "already ended"
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
        return _how_it_ended(status)


def _serve(logger: RunLogger, calls: int, answers: int) -> None:
    """The child's life: answer calls until the pipe closes."""
    gc.freeze()  # the parent's objects: never scanned here, so never copied by the scan
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # What ps, top and htop call it (the command line stays the run's).
        libc.prctl(PR_SET_NAME, f"logger {logger.name}".encode()[:15])
    for signum in LEFT_TO_THE_RUN:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, LEFT_TO_THE_RUN)
    # Nothing of the parent's but the two pipes: its files, sockets and its job's output
    # (a reader of the job's stdout would otherwise wait for this process to end too).
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    low, high = sorted((calls, answers))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
    logging.disable(logging.CRITICAL)  # the parent's handlers write to files closed above
    while True:  # after a failure the parent calls no more: it closes the pipe
        got, message = _read(calls)
        if not got:
            return
        method, args = message
        failure = result = None
        try:
            result = getattr(logger, method)(*args)
        except Exception as err:
            failure = describe_failure(err)
        _write(answers, (failure, result))
