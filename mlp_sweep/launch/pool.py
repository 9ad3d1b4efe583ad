"""A small process pool for sweeps: long-lived workers, one job each at a time, clean stops.

Why not concurrent.futures or joblib: on Ctrl-C a sweep must stop its workers at once (each
records its run `interrupted` on the way out) and leave none behind, and a worker that dies
(OOM, SIGKILL) must cost one job, not the pool. Here the parent owns every worker's pid:

- A worker turns its first SIGINT or SIGTERM into an Interrupted exception that unwinds the
  job it runs (the run records itself `interrupted`) and then exits; later ones are ignored.
  One that comes while the worker is still starting (importing torch, which an exception
  raised mid-import may not get through) is noted, and the worker exits once started.
- On KeyboardInterrupt (or SIGTERM, see mlp_sweep.run.interrupt) the parent forwards the same
  signal to every worker (a Ctrl-C in a terminal has reached them already), waits for them to
  record and exit, SIGKILLs any that hang, and re-raises.
- Workers are forked from multiprocessing's fork server, a fresh process that imports the app
  (torch: ~3 s of CPU) once and forks each worker from there, ready to run: a sweep pays for one
  import, not one per worker, and the workers share its pages. The server itself never trains,
  so no worker is forked from a process that touched CUDA or OpenMP.
- The server starts at the top of the command (warm_up), so its import overlaps the parent's own
  work and its checks; a pool that starts before it is ready waits for it.

Payloads cross the process boundary with cloudpickle, as Hydra's own launchers do, so task
functions defined in a script or decorated by @hydra.main travel too.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from mlp_sweep.run.interrupt import (
    defer_signals,
    ignore_signals,
    stacks_on_sigusr1,
    started_blocked,
    stop_on_signals,
)

log = logging.getLogger(__name__)

# How long stopped workers get to record `interrupted` and exit before SIGKILL.
STOP_GRACE_SECONDS = 15.0
# A worker's word that it began a job (its answer comes later).
STARTED = "started"
# Workers that may die starting up with the same job before it counts as lost (a job whose
# payload itself kills every worker that unpacks it must not cycle for ever).
MAX_START_DEATHS = 3


@dataclass(frozen=True)
class Lost:
    """A job whose worker died before answering (killed, out of memory, crashed)."""

    index: int
    exitcode: int | None

    def __str__(self) -> str:
        how = f"signal {-self.exitcode}" if self.exitcode and self.exitcode < 0 else self.exitcode
        return f"worker process died while running it (exit {how})"


def _worker(conn: Connection) -> None:
    try:
        _serve(conn)
    finally:
        ignore_signals()  # exiting: a stop held back during an import must not come now


def _serve(conn: Connection) -> None:
    stopped = defer_signals()
    stacks_on_sigusr1()
    try:
        env, init = conn.recv()
        os.environ.update(env)
        execute: Callable[..., Any] = cloudpickle.loads(init)
        stop_on_signals()
        if stopped:  # asked to stop while starting: run nothing
            return
        while True:
            message = conn.recv()
            if message is None:
                return
            index, payload = message
            # Said first, so that a death before this point costs no job: the pool hands it on.
            conn.send_bytes(cloudpickle.dumps((index, STARTED, None)))
            try:
                answer = ("ok", execute(*cloudpickle.loads(payload)))
            except Exception as err:  # the app's own failure: the parent decides
                answer = ("error", err)
            try:
                conn.send_bytes(cloudpickle.dumps((index, *answer)))
            except Exception as err:  # an unpicklable result or exception
                conn.send_bytes(cloudpickle.dumps((index, "error", RuntimeError(repr(err)))))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # stopped by the parent, or the parent is gone


def _receive(slot: _Slot) -> tuple[int, str, Any] | None:
    """The worker's answer if one is waiting; None if none is, or the worker is gone."""
    try:
        if not slot.conn.poll():
            return None
        index, kind, value = cloudpickle.loads(slot.conn.recv_bytes())
    except (EOFError, OSError):  # its end closed: it died, with or without a signal
        return None
    return index, kind, value


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    index: int | None = None  # the job it was given, if any
    started: bool = False  # whether it said it began that job
    place: int = 0  # its slot: which of the pool's slot_envs it was started with


def _server(preload: str | None) -> None:
    """Start the fork server if it is not running: it imports `preload` (when given, and if this
    is its first start) before it forks any worker.

    Started with SIGINT, SIGTERM and SIGUSR1 blocked, which it and every worker it forks inherit:
    a Ctrl-C in a worker's first moments stays pending until defer_signals() takes it, and a
    signal sent to the whole process group (a terminal's Ctrl-C, `kill -USR1 -<pgid>`) never
    stops the server; it exits once the command and its workers are gone.
    """
    from multiprocessing import forkserver

    if preload:
        multiprocessing.get_context("forkserver").set_forkserver_preload([preload])
    # multiprocessing starts its resource tracker with its first process, and then unblocks
    # SIGINT and SIGTERM in this process whatever they were: started first, outside the block.
    resource_tracker.ensure_running()
    with started_blocked(signal.SIGUSR1):
        forkserver.ensure_running()


def _spawn(preload: str | None) -> _Slot:
    ctx = multiprocessing.get_context("forkserver")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(target=_worker, args=(child_end,), name="mlp_sweep-worker")
    _server(preload)
    process.start()  # waits for the server's imports the first time, then takes milliseconds
    child_end.close()
    return _Slot(process, parent_end)


def _await_server_exit(timeout: float = 5.0) -> None:
    """Wait (bounded) until a fork server that stopped answering has exited. Its socket closes
    a moment before the kernel makes it a zombie; a restart in that moment finds it "alive"
    (multiprocessing checks with waitpid) and fails again. WNOWAIT leaves the reaping to
    multiprocessing."""
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while pid is not None and time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)


def warm_up(preload: str) -> None:
    """Start the fork server now, importing `preload` while the command does the rest of its
    start-up; the pool's workers are forked from it, ready, when the sweep launches."""
    _server(preload)


class Pool:
    """`workers` processes that run execute(*payload) for each payload given to run().

    Workers start on first use and stay for later run() calls (an Optuna search launches a
    batch at a time), until close(); a worker that died is replaced on the next job, in its
    slot (with that slot's environment: its GPU).
    """

    def __init__(
        self,
        execute: Callable[..., Any],
        workers: int,
        env: dict[str, str] | None = None,
        retries: int = 0,
        on_retry: Callable[[int, Lost, int], None] | None = None,
        preload: str | None = None,
        slot_envs: Sequence[dict[str, str]] | None = None,
    ) -> None:
        """retries: how many times a job whose worker died while running it runs again (a job
        that raised is the app's own answer, never retried); on_retry(index, lost, retry) is
        told each time. preload: the module the fork server imports for every worker, if this
        pool is the first to start it (warm_up may have started it already). slot_envs: the
        environment of each worker slot besides `env` (at least `workers` of them), set in the
        worker before it runs anything (CUDA_VISIBLE_DEVICES: mlp_sweep.launch.gpu_slots)."""
        if slot_envs is not None and len(slot_envs) < workers:
            raise ValueError(f"{workers} workers need as many slot_envs, not {len(slot_envs)}")
        self.workers, self.env, self.preload = workers, dict(env or {}), preload
        self.slot_envs = [dict(e) for e in slot_envs] if slot_envs is not None else None
        self.retries, self.on_retry = retries, on_retry
        self._init = cloudpickle.dumps(execute)
        self._slots: list[_Slot] = []

    def _start(self, place: int | None = None) -> _Slot:
        """A new worker with the pool's job set-up, in slot `place` (None: the first free
        one). One that dies while starting is replaced."""
        if place is None:
            taken = {slot.place for slot in self._slots}
            place = min(set(range(self.workers)) - taken, default=0)
        env = {**self.env, **(self.slot_envs[place] if self.slot_envs else {})}
        for _ in range(MAX_START_DEATHS):
            try:
                slot = _spawn(self.preload)
            except (OSError, EOFError):  # the server died (killed while importing, say)
                _await_server_exit()
                continue  # the next _spawn starts a new one
            try:
                slot.conn.send((env, self._init))
            except OSError:  # it died before its set-up reached it
                slot.process.join()
                slot.conn.close()
                continue
            slot.place = place
            self._slots.append(slot)
            return slot
        raise RuntimeError("worker processes die as they start; see their output above")

    def run(
        self,
        payloads: Sequence[tuple[Any, ...]],
        more: Callable[[], tuple[Any, ...] | None] | None = None,
        on_answer: Callable[[int, str, Any], None] | None = None,
    ) -> list[tuple[str, Any]]:
        """Every payload's answer, in order: ("ok", result), ("error", exc) or ("lost", Lost).

        more: asked for one more payload whenever a worker is free and none is left, so a
        worker never waits for the others (None: nothing more for now); its payloads follow
        `payloads` in the answers. on_answer(index, kind, value) is told each answer as it
        comes, before that worker is given its next payload.

        On KeyboardInterrupt (or any error here) every worker is stopped before re-raising.
        """
        payloads = list(payloads)
        todo = deque(enumerate(payloads))
        results: dict[int, tuple[str, Any]] = {}
        deaths: dict[int, int] = {}  # workers that died before beginning a job, by job
        retried: dict[int, int] = {}  # retries of jobs whose worker died running them

        def take() -> tuple[int, tuple[Any, ...]] | None:
            if todo:
                return todo.popleft()
            payload = more() if more is not None else None
            if payload is None:
                return None
            payloads.append(payload)
            return len(payloads) - 1, payload

        def settle(index: int, kind: str, value: Any) -> None:
            results[index] = (kind, value)
            if on_answer is not None:
                on_answer(index, kind, value)

        def feed(slot: _Slot) -> None:
            slot.index, slot.started = None, False
            item = take()
            if item is None:
                return
            index, payload = item
            try:
                slot.conn.send((index, cloudpickle.dumps(payload)))
            except OSError:  # it died between two jobs: its job goes to the next worker
                todo.appendleft(item)
                replace(slot)
                return
            slot.index = index

        def died(slot: _Slot) -> None:
            """Dead with its job unanswered: its pipe may say so (EOF) before its sentinel
            does, or after. A job it began is lost (and only that one) or, with retries left,
            runs again; one it never began (it died starting up) goes to the next worker."""
            index = slot.index
            assert index is not None
            slot.process.join()
            lost = Lost(index, slot.process.exitcode)
            counts = retried if slot.started else deaths
            counts[index] = counts.get(index, 0) + 1
            if slot.started and counts[index] <= self.retries:
                if self.on_retry is not None:
                    self.on_retry(index, lost, counts[index])
                todo.append((index, payloads[index]))
            elif not slot.started and counts[index] < MAX_START_DEATHS:
                todo.appendleft((index, payloads[index]))
            else:
                settle(index, "lost", lost)
            replace(slot)

        def replace(slot: _Slot) -> None:
            """A dead worker out of the pool; a new one carries on with the rest."""
            slot.process.join()
            slot.conn.close()
            self._slots.remove(slot)
            start_for_next(slot.place)

        def start_for_next(place: int | None = None) -> bool:
            """A new worker (in slot `place`, or the first free one) for the next payload, if
            there is one."""
            item = take()
            if item is None:
                return False
            todo.appendleft(item)
            feed(self._start(place))
            return True

        for slot in [s for s in self._slots if not s.process.is_alive()]:
            slot.process.join()  # died while idle: replaced below
            self._slots.remove(slot)
        try:
            for slot in list(self._slots):
                feed(slot)
            while len(self._slots) < self.workers and start_for_next():
                pass
            while any(slot.index is not None for slot in self._slots):
                busy = [slot for slot in self._slots if slot.index is not None]
                ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy])
                for slot in busy:
                    if slot.conn not in ready and slot.process.sentinel not in ready:
                        continue
                    answer = _receive(slot)
                    if answer is not None and answer[1] == STARTED:
                        slot.started = True
                    elif answer is not None:
                        index, kind, value = answer
                        settle(index, kind, value)
                        feed(slot)
                    elif slot.process.sentinel in ready or not slot.process.is_alive():
                        died(slot)
                # A worker left idle (nothing was left when it asked) may find work now.
                for slot in [s for s in self._slots if s.index is None]:
                    feed(slot)
                    if slot.index is None:
                        break
        except BaseException as err:
            self.stop(getattr(err, "signum", signal.SIGINT))
            raise
        return [results[i] for i in range(len(payloads))]

    def close(self) -> None:
        """Let idle workers exit (they finish nothing: run() has returned)."""
        for slot in self._slots:
            try:
                slot.conn.send(None)
            except OSError:
                pass
        for slot in self._slots:
            slot.process.join(timeout=STOP_GRACE_SECONDS)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
        self._slots.clear()

    def stop(self, signum: int) -> None:
        """Signal every live worker, wait for them to record and exit, SIGKILL stragglers."""
        for slot in self._slots:
            if slot.process.is_alive() and slot.process.pid is not None:
                os.kill(slot.process.pid, signum)
        for slot in self._slots:
            slot.process.join(timeout=STOP_GRACE_SECONDS)
            if slot.process.is_alive():
                log.warning("worker %s did not stop; killed", slot.process.pid)
                slot.process.kill()
                slot.process.join()
        self._slots.clear()
