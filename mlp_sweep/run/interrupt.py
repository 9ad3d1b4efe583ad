"""Ctrl-C and SIGTERM as ordinary events: an exception that unwinds the run, recorded on the way.

SIGINT already raises KeyboardInterrupt; SIGTERM (what SLURM, job schedulers and `kill` send)
is made to raise `Interrupted`, a KeyboardInterrupt, so that both take the same path: the run
records itself `interrupted` beside its last checkpoint, the command writes its summary, and
the process exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signals that stop a run: Ctrl-C, and what `kill`, SLURM and job schedulers send.
STOPS = {signal.SIGINT, signal.SIGTERM}


class Interrupted(KeyboardInterrupt):
    """A signal asked this process to stop."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def signal_name(err: BaseException) -> str:
    return signal.Signals(getattr(err, "signum", signal.SIGINT)).name


def exit_code(err: BaseException) -> int:
    return 128 + int(getattr(err, "signum", signal.SIGINT))


def _raise_once(signum: int, frame: FrameType | None) -> None:
    # The first signal unwinds; later ones (a second Ctrl-C, the parent forwarding the same
    # stop) are ignored so they cannot cut short the recording of the first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def defer_signals() -> list[int]:
    """Until stop_on_signals(), SIGINT and SIGTERM are noted in the returned list, not raised.

    For a worker's start-up: an exception raised in the middle of an import (torch's takes
    seconds) can be swallowed by the module being imported, and the worker would run on.
    """
    noted: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    # A worker starts with both blocked (see started_blocked): any that came while its
    # interpreter started are delivered now, to `note`.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
    return noted


@contextmanager
def started_blocked() -> Iterator[None]:
    """Start a process within the block and it begins with SIGINT and SIGTERM blocked, as a
    new process inherits its parent's signal mask: a Ctrl-C in its first moments (Python's own
    start-up, before any handler of ours) stays pending until defer_signals() takes it, where
    it would have printed Python's fatal-error report. The parent's own signals of that moment
    are only held back until the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise Interrupted once (a worker process's setting)."""
    signal.signal(signal.SIGINT, _raise_once)
    signal.signal(signal.SIGTERM, _raise_once)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise Interrupted, once (main thread only).

    Replaces any earlier handlers for the block (submitit's, which ignores SIGTERM, say) and
    puts them back after it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_on_signals()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ignore_signals() -> None:
    """While an interrupted command writes what it kept: nothing may cut that short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
