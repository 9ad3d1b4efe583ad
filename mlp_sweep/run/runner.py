"""The one run driver: every run, trained alone or as a member of a stack, goes through here.

Callable without Hydra: `run(Config(), Path("somewhere"))`. What it does for every run, once:

- **Claim** (`claim`): a folder whose record says the run finished (`ok`, `diverged`,
  `pruned`) is skipped; an unfinished one is locked, then checked again (it may have finished
  while we waited); a folder another process trains is left alone (`running elsewhere`,
  nothing written); a folder of another config is refused (ConfigMismatch) untouched.
- **Set up**: the config validated, the device and process configured, the data loaded, the
  state drawn from the seed or restored from the checkpoint (mlp_sweep.run.lifecycle records
  each moment).
- **Train** with one of two strategies: alone (mlp_sweep.training.loop.fit) or as a member of a
  stack (mlp_sweep.training.stacked_sgd.fit_stacked). Either way every epoch is recorded, the
  loggers get the train loss every logger.every_n_steps steps (and steps.csv keeps it), and a
  search's pruner hears the epoch and may stop the run there (a pruned member leaves the stack;
  the stack goes on with the rest).
- **End**: `ok` or `diverged`; `pruned`; `timeout` at trainer.time_limit (resumable);
  `interrupted` by Ctrl-C or SIGTERM, recorded and then raised; `failed` with its one-line
  error for any other exception, recorded and not raised, so one bad job cannot sink a sweep.
  A stack that fails as a whole hands its members back unfinished, to continue alone from
  their checkpoints.

On CPU a run ends with the same numbers whether it trained alone, stacked, or was stopped and
resumed from its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlp_sweep.config import Config, validate
from mlp_sweep.errors import MlpSweepError, one_line
from mlp_sweep.run.claim import claim
from mlp_sweep.run.interrupt import signals_raise
from mlp_sweep.run.job import JobInfo
from mlp_sweep.run.lifecycle import Lifecycle
from mlp_sweep.run.state import RunState, compiled, configure_process, start_state
from mlp_sweep.status import Status
from mlp_sweep.training import precision
from mlp_sweep.training.data import Data, load_data
from mlp_sweep.training.device import resolve_device
from mlp_sweep.training.loop import History, TimeLimitReached, deadline_after, fit
from mlp_sweep.training.stacked import Member
from mlp_sweep.training.stacked_sgd import fit_stacked

__all__ = ["JobInfo", "StackMember", "claim", "reporting", "run", "run_stack"]

log = logging.getLogger(__name__)

# While a stack's jobs go through their second step (each job's run_job, whose task calls
# run), the runs the stack ended (timeout, ok, diverged, pruned), by folder: run reports each
# as it ended instead of training it again, as a run alone is trained once per attempt. A stack
# that failed as a whole leaves its runs out: they continue alone. Set only by `reporting`.
_ended: dict[Path, dict[str, Any]] = {}


@contextlib.contextmanager
def reporting(ended: dict[Path, dict[str, Any]]) -> Iterator[None]:
    """For the block, run() reports these runs (a stack's, from run_stack) as they ended."""
    _ended.update({Path(d).absolute(): result for d, result in ended.items()})
    try:
        yield
    finally:
        _ended.clear()


@dataclass
class _Run:
    """One run being driven: its record's lifecycle, its state once drawn, how it ends."""

    life: Lifecycle
    state: RunState | None = None
    member: Member | None = None  # its place in a stack
    stopped: bool = False  # by the search's pruner
    result: dict[str, Any] = field(default_factory=dict)

    def start(self, device: torch.device, data: Data, loaded: float) -> None:
        life = self.life
        life.data_loaded(data, device, loaded)
        self.state = start_state(life.cfg, data, device, life.checkpoint)
        life.started(self.state)
        # Resumed: the study hears the kept epochs (a kill may come between an epoch's record
        # and its report), and its pruner may stop the run where it was stopped.
        self.stopped = self._pruned(self.state.history)

    def epoch_done(self, history: History) -> bool:
        """Record the epoch; whether the search's pruner stops the run here."""
        assert self.state is not None
        self.state.history = history
        self.life.epoch_done(self.state)
        self.stopped = self._pruned(history)
        return self.stopped

    def _pruned(self, history: History) -> bool:
        """Tell the search the history's epochs (the last one too); whether its pruner stops
        the run here (never at its end: nothing left to save)."""
        prune = self.life.job.prune
        if prune is None or not history.epochs or history.status != Status.OK:
            return False
        return prune(history) and len(history.epochs) < self.life.cfg.trainer.epochs

    def end(self) -> None:
        if self.stopped:
            self.result = self.life.pruned()
        else:
            assert self.state is not None
            self.result = self.life.finished(self.state.history)

    def end_at_limit(self, limit: float) -> None:
        """trainer.time_limit ran out: a run that had ended before it keeps its end."""
        history = self.state.history if self.state is not None else History()
        ended = len(history.epochs) == self.life.cfg.trainer.epochs
        if self.stopped or ended or history.status == Status.DIVERGED:
            self.end()
        else:
            self.result = self.life.timed_out(limit)


def _drive(
    runs: Sequence[_Run],
    train: Callable[[], None],
    limit: float | None,
    failed: Callable[[Exception], None],
) -> None:
    """Set up and train (`train`), then end every run by how training ended: the one
    exception ladder of every strategy."""
    try:
        train()
    except TimeLimitReached:
        assert limit is not None
        for run in runs:
            run.end_at_limit(limit)
        return
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM: recorded, then passed on
        for run in runs:
            run.life.interrupted(err)
        raise
    except Exception as err:  # recorded, not raised: the sweep goes on
        failed(err)
        return
    for run in runs:
        run.end()


def _configured(cfg: Config, lives: Sequence[Lifecycle]) -> tuple[torch.device, Data, float]:
    """The process set up for cfg's device, and its data loaded (once for a stack)."""
    device = resolve_device(cfg.device)
    configure_process(cfg, device)
    for life in lives:
        life.configured(device)
    tic = time.perf_counter()
    data = load_data(cfg.data, device, precision.dtype(cfg.trainer.precision))
    return device, data, time.perf_counter() - tic


def run(cfg: Config, run_dir: Path, job: JobInfo | None = None) -> dict[str, Any]:
    """Train and record one configuration in run_dir, alone. Returns the record's fields.

    Skips a run that already finished there; resumes one that did not; leaves alone one that
    another process is training (status `running elsewhere`, nothing written).
    """
    ended = _ended.pop(Path(run_dir).absolute(), None)
    if ended is not None:
        log.info("%s: ended in its stack (%s)", run_dir, ended["status"])
        return ended
    with contextlib.ExitStack() as held:
        found = claim(run_dir, cfg, held)  # ConfigMismatch propagates: nothing touched
        if found is not None:
            if found.status == Status.RUNNING_ELSEWHERE:
                log.warning("%s", found.error)
            else:
                log.info("%s: already finished (%s), skipped", run_dir, found.status)
            return found.as_dict()
        with signals_raise():
            return _alone(_Run(Lifecycle(cfg, run_dir, job or JobInfo())))


def _alone(run: _Run) -> dict[str, Any]:
    """The strategy of a run trained alone."""
    life, cfg = run.life, run.life.cfg
    life.opened()

    def train() -> None:
        validate(cfg)
        device, data, loaded = _configured(cfg, [life])
        run.start(device, data, loaded)
        if run.stopped:
            return
        assert run.state is not None
        state = run.state
        trained = compiled(state.model) if cfg.trainer.compile else state.model
        with precision.autocast(cfg.trainer.precision, device):
            fit(
                trained,
                state.optimizer,
                data,
                cfg.trainer,
                cfg.loss,
                state.generator,
                state.history,
                run.epoch_done,
                deadline_after(cfg.trainer.time_limit),
                life.step_hook(),
                cfg.logger.every_n_steps,
            )

    def failed(err: Exception) -> None:
        run.result = life.failed(err)

    _drive([run], train, cfg.trainer.time_limit, failed)
    return run.result


@dataclass
class StackMember:
    """A run offered to a stack: its config, folder, place in the sweep, and where its log
    lines go (the job's own log file, as a run alone writes them)."""

    cfg: Config
    run_dir: Path
    job: JobInfo
    logger: logging.Logger = log


def _joinable(member: StackMember, held: contextlib.ExitStack) -> bool:
    """Whether this run can train in the stack: valid, unfinished, and its folder's lock now
    ours. One that cannot is left to train alone, which records why it did not."""
    try:
        validate(member.cfg)
        return claim(member.run_dir, member.cfg, held) is None
    except MlpSweepError:  # an invalid config, another config's folder
        return False


def run_stack(offered: Sequence[StackMember]) -> dict[Path, dict[str, Any]]:
    """Train what can of these runs as one stack, each recorded in its own folder. Returns how
    each run that ended in the stack ended, by folder (none where fewer than two could join: a
    run alone is a run; none where the stack failed: its runs continue alone)."""
    with contextlib.ExitStack() as held:
        joined = [m for m in offered if _joinable(m, held)]
        if len(joined) < 2:
            return {}
        nums = [m.job.num for m in joined]
        extra = {"fused": {"jobs": nums, "members": len(nums)}}
        runs = [_Run(Lifecycle(m.cfg, m.run_dir, m.job, m.logger, extra)) for m in joined]
        for run in runs:
            run.life.opened()
            run.life.log.info(
                "trained stacked with jobs %s (hydra/launcher=fused)",
                ", ".join(f"#{n}" for n in nums),
            )
        first = joined[0].cfg  # the stack's data, precision and clock are its members' (fuse_key)
        with signals_raise():
            _stacked(runs, first)
        return {m.run_dir: run.result for m, run in zip(joined, runs, strict=True) if run.result}


def _stacked(runs: list[_Run], first: Config) -> None:
    """The strategy of runs trained as one stack."""

    def train() -> None:
        # Determinism and precision are the stack's (fuse_key); its threads are the first's.
        device, data, loaded = _configured(first, [r.life for r in runs])
        for run in runs:
            run.start(device, data, loaded)
            assert run.state is not None
            s, cfg = run.state, run.life.cfg
            run.member = Member(cfg, s.model, s.optimizer, s.generator, s.history)
            run.member.on_steps, run.member.every = run.life.step_hook(), cfg.logger.every_n_steps
        by_member = {id(r.member): r for r in runs}

        def epoch_done(alive: list[Member]) -> list[Member]:
            return [m for m in alive if by_member[id(m)].epoch_done(m.history)]

        parts: dict[tuple[int, str], list[Member]] = {}  # members that stand at one epoch
        for run in runs:
            if run.member is not None and not run.stopped:
                history = run.member.history
                parts.setdefault((len(history.epochs), history.status), []).append(run.member)
        deadline = deadline_after(first.trainer.time_limit)
        with precision.autocast(first.trainer.precision, device):
            for part in parts.values():
                fit_stacked(part, data, epoch_done, deadline)

    def failed(err: Exception) -> None:  # the runs go on alone, from their checkpoints
        log.warning("stacked training failed (%s); its runs continue one by one", one_line(err))
        trace = "".join(traceback.format_exception(err))
        for run in runs:  # the whole story in each run's own log, not on the sweep's console
            run.life.abandoned(f"stacked training failed; continued alone\n{trace}")

    _drive(runs, train, first.trainer.time_limit, failed)
