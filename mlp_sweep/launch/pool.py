"""A small process pool for sweeps: long-lived workers, one job each at a time, clean stops.

Why not concurrent.futures or joblib: on Ctrl-C a sweep must stop its workers at once (each
records its run `interrupted` on the way out) and leave none behind, and a worker that dies
(OOM, SIGKILL) must cost one job, not the pool. Here the parent owns every worker's pid:

- A worker turns its first SIGINT or SIGTERM into an Interrupted exception that unwinds the
  job it runs (the run records itself `interrupted`) and then exits; later ones are ignored.
- On KeyboardInterrupt (or SIGTERM, see mlp_sweep.interrupt) the parent forwards the same
  signal to every worker (a Ctrl-C in a terminal has reached them already), waits for them to
  record and exit, SIGKILLs any that hang, and re-raises.
- Workers are started with `spawn`, so a parent that touched CUDA or OpenMP is never forked;
  each imports the app once and then runs job after job (no start-up per job).

Payloads cross the process boundary with cloudpickle, as Hydra's own launchers do, so task
functions defined in a script or decorated by @hydra.main travel too.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

log = logging.getLogger(__name__)

# How long stopped workers get to record `interrupted` and exit before SIGKILL.
STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class Lost:
    """A job whose worker died before answering (killed, out of memory, crashed)."""

    index: int
    exitcode: int | None

    def __str__(self) -> str:
        how = f"signal {-self.exitcode}" if self.exitcode and self.exitcode < 0 else self.exitcode
        return f"worker process died while running it (exit {how})"


def _worker(conn: Connection, env: dict[str, str], init: bytes) -> None:
    from mlp_sweep.interrupt import stop_on_signals

    stop_on_signals()
    os.environ.update(env)
    try:
        execute: Callable[[int, Any], Any] = cloudpickle.loads(init)
        while True:
            message = conn.recv()
            if message is None:
                return
            index, payload = message
            try:
                answer = ("ok", execute(index, cloudpickle.loads(payload)))
            except Exception as err:  # the app's own failure: the parent decides
                answer = ("error", err)
            try:
                conn.send_bytes(cloudpickle.dumps((index, *answer)))
            except Exception as err:  # an unpicklable result or exception
                conn.send_bytes(cloudpickle.dumps((index, "error", RuntimeError(repr(err)))))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # stopped by the parent, or the parent is gone


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    index: int | None = None  # the job it runs, if any


def run_jobs(
    payloads: Sequence[Any],
    execute: Callable[[int, Any], Any],
    workers: int,
    env: dict[str, str] | None = None,
) -> list[tuple[str, Any]]:
    """Run execute(i, payloads[i]) for every i on `workers` processes.

    Returns, in job order, ("ok", result), ("error", exception) or ("lost", Lost).
    """
    ctx = multiprocessing.get_context("spawn")
    init = cloudpickle.dumps(execute)
    todo = deque(enumerate(payloads))
    results: dict[int, tuple[str, Any]] = {}
    slots: list[_Slot] = []

    def start() -> _Slot:
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(
            target=_worker, args=(child_end, dict(env or {}), init), name="mlp_sweep-worker"
        )
        process.start()
        child_end.close()
        return _Slot(process, parent_end)

    def feed(slot: _Slot) -> None:
        if todo:
            slot.index, payload = todo.popleft()
            slot.conn.send((slot.index, cloudpickle.dumps(payload)))
        else:
            slot.index = None
            slot.conn.send(None)

    try:
        for _ in range(min(workers, len(todo))):
            slot = start()
            slots.append(slot)
            feed(slot)
        while any(slot.index is not None for slot in slots):
            busy = [slot for slot in slots if slot.index is not None]
            ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy])
            for slot in busy:
                if slot.conn in ready and slot.conn.poll():
                    index, kind, value = cloudpickle.loads(slot.conn.recv_bytes())
                    results[index] = (kind, value)
                    feed(slot)
                elif slot.process.sentinel in ready and not slot.conn.poll():
                    assert slot.index is not None
                    slot.process.join()
                    results[slot.index] = ("lost", Lost(slot.index, slot.process.exitcode))
                    slots.remove(slot)
                    if todo:  # a replacement carries on with the rest
                        fresh = start()
                        slots.append(fresh)
                        feed(fresh)
    except BaseException as err:
        _stop(slots, getattr(err, "signum", signal.SIGINT))
        raise
    for slot in slots:
        slot.process.join(timeout=STOP_GRACE_SECONDS)
    return [results[i] for i in range(len(payloads))]


def _stop(slots: list[_Slot], signum: int) -> None:
    """Signal every live worker, wait for them to record and exit, SIGKILL stragglers."""
    for slot in slots:
        if slot.process.is_alive() and slot.process.pid is not None:
            os.kill(slot.process.pid, signum)
    for slot in slots:
        slot.process.join(timeout=STOP_GRACE_SECONDS)
        if slot.process.is_alive():
            log.warning("worker %s did not stop; killed", slot.process.pid)
            slot.process.kill()
            slot.process.join()
