"""Ctrl-C and SIGTERM as ordinary events: an exception that unwinds the run, recorded on the way.

SIGINT already raises KeyboardInterrupt; SIGTERM (what SLURM, job schedulers and `kill` send)
is made to raise `Interrupted`, a KeyboardInterrupt, so that both take the same path: the run
records itself `interrupted` beside its last checkpoint, the command writes its summary, and
the process exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import faulthandler
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signals that stop a run: Ctrl-C, and what `kill`, SLURM and job schedulers send.
STOPS = {signal.SIGINT, signal.SIGTERM}

# While the command starts: the signals noted so far (None: not holding; see hold_signals).
_pending: list[int] | None = None


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
    global _deferred
    if _importing(frame):
        if _deferred is None:
            _deferred = signum
            _again_soon()
        return
    _deferred = None
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


# A stop that came inside an import, to be raised once the import has ended (None: none).
_deferred: int | None = None


def _importing(frame: FrameType | None) -> bool:
    """Whether the interrupted code is inside an import (importlib's own frames on its stack).

    An exception raised there can land inside importlib's module-lock code and leave a lock
    held by nobody: the next import of that module, by any thread, then waits for ever (seen:
    an interrupted search hung in its summary's `import pandas`, while the thread importing
    matplotlib waited on numpy's lock)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _again_soon() -> None:
    """The deferred signal again in 20 ms, to the main thread: by then, or at a later try, the
    import has ended and the stop is raised where it is safe (an import of torch takes ~2 s).
    Not if the process has stopped taking signals meanwhile (ignore_signals)."""
    main = threading.main_thread().ident
    assert main is not None

    def again() -> None:
        global _deferred
        signum, _deferred = _deferred, None  # the handler defers it anew if still importing
        if signum is not None:
            signal.pthread_kill(main, signum)

    timer = threading.Timer(0.02, again)
    timer.daemon = True
    timer.start()


def _note_signals() -> list[int]:
    """From now on SIGINT and SIGTERM are noted in the returned list, in order, not raised."""
    noted: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    return noted


def defer_signals() -> list[int]:
    """Until stop_on_signals(), SIGINT and SIGTERM are noted in the returned list, not raised.

    For a worker's start-up: an exception raised in the middle of an import (torch's takes
    seconds) can be swallowed by the module being imported, and the worker would run on.
    """
    noted = _note_signals()
    # A worker starts with both blocked (see started_blocked): any that came while its
    # interpreter started are delivered now, to `note`.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
    return noted


@contextmanager
def started_blocked(*more: int) -> Iterator[None]:
    """Start a process within the block and it begins with SIGINT and SIGTERM (and `more`)
    blocked, as a new process inherits its parent's signal mask: a Ctrl-C in its first moments
    (Python's own start-up, before any handler of ours) stays pending until defer_signals()
    takes it, where it would have printed Python's fatal-error report. The parent's own signals
    of that moment are only held back until the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS | set(more))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise Interrupted once (a worker process's setting)."""
    signal.signal(signal.SIGINT, _raise_once)
    signal.signal(signal.SIGTERM, _raise_once)


@contextmanager
def signals_raise(held: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise Interrupted, once (main thread only).

    Replaces any earlier handlers for the block (submitit's, which ignores SIGTERM, say) and
    puts them back after it. held=True: they are only noted until release_signals() (the
    command's start-up, see hold_signals); one noted and never released is raised at the end.
    """
    global _pending, _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if held:
        hold_signals()
    else:
        stop_on_signals()
    try:
        yield
        release_signals()
        if _deferred is not None:  # came inside the block's last import: stop here
            _raise_once(_deferred, None)
    except BaseException:
        _deferred = None  # the block is unwinding already: that was the stop, or a copy of it
        raise
    finally:
        _pending = None
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def hold_signals() -> None:
    """Until release_signals(), SIGINT and SIGTERM are noted, not raised (main thread only).

    For the command's start-up, which is mostly Hydra composing configs: OmegaConf changes a
    node's flags inside try/finally blocks, and an exception raised partway leaves the node
    half-built, so that the finally block fails with an AttributeError; Hydra then prints that
    error's traceback where Ctrl-C should have said one line.
    """
    global _pending
    _pending = _note_signals()


def holding_a_signal() -> bool:
    return bool(_pending)


def release_signals() -> None:
    """From here SIGINT and SIGTERM raise Interrupted; one that came while held is raised now.

    Called where a stop is safe: before the first job starts, outside any config code. Does
    nothing where signals are not held (a worker process, a second call).
    """
    global _pending
    if _pending is None or threading.current_thread() is not threading.main_thread():
        return
    noted, _pending = _pending, None
    stop_on_signals()
    if noted:
        _raise_once(noted[0], None)


@contextmanager
def signals_held() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM wait; the first is delivered at its end, to the
    handler in place before it (code that must not stop partway: composing a job's config).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if any(handler is None for handler in previous.values()):  # set outside Python: leave it
        yield
        return
    noted = _note_signals()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            signal.raise_signal(noted[0])


def stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints where every thread of this process is, to its stderr, and the
    process goes on: for a command (or one of its workers) that seems stuck."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        # A pool's worker inherits it blocked from the fork server (mlp_sweep.launch.pool).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})


def ignore_signals() -> None:
    """While an interrupted command writes what it kept: nothing may cut that short."""
    global _deferred
    _deferred = None
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
