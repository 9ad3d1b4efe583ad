"""A group of a sweep's jobs trained as one stack, as a worker of hydra/launcher=fused runs it.

Two steps. First the group trains as one stack (mlp_sweep.training.stacked_sgd), each member
under its own folder's lock and through the same lifecycle as a run trained alone
(mlp_sweep.run.lifecycle: metrics.json from the start, history.csv and checkpoint.pt every
epoch, its loggers, its log lines), so a sweep's progress display, summary and resume see each
member as the run it is. Then each job goes through Hydra's run_job as any launcher's does
(.hydra/, the job's log, callbacks, its return value), where the task finds its run finished
and skips it. A member that cannot join (finished already, trained elsewhere, another config in
its folder) is left to that second step, which does for it exactly what it does under the other
launchers; so is every member, should the stacked training itself fail (they then continue
alone from their checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.config import Config, to_config
from mlp_sweep.errors import ConfigMismatch
from mlp_sweep.launch.task import job_dir, reads_hydra_config, task_config
from mlp_sweep.run import lock
from mlp_sweep.run.lifecycle import JobInfo, Lifecycle, one_line
from mlp_sweep.run.prior import prior_status
from mlp_sweep.run.record import now_iso
from mlp_sweep.run.state import RunState, configure_process, start_state
from mlp_sweep.status import FINISHED, Status
from mlp_sweep.training import precision
from mlp_sweep.training.data import Data, load_data
from mlp_sweep.training.device import resolve_device
from mlp_sweep.training.loop import TimeLimitReached, deadline_after
from mlp_sweep.training.stacked import Member
from mlp_sweep.training.stacked_sgd import fit_stacked

log = logging.getLogger(__name__)
# The lifecycle's logger name, so a member's lines read as a run's alone.
LIFECYCLE_LOGGER = "mlp_sweep.run.lifecycle"


@dataclass
class Entry:
    """One job of the group: its config, folder, place in the sweep, and its log's form."""

    cfg: Config
    run_dir: Path
    job: JobInfo
    log_file: Path  # the job's log (hydra.job.name.log), which run_job appends to afterwards
    log_format: str  # its job logging's file format, and date format (None: logging's own)
    log_datefmt: str | None = None


@dataclass
class _Run:
    entry: Entry
    life: Lifecycle
    state: RunState
    member: Member
    handler: logging.Handler


def _joinable(entry: Entry, held: contextlib.ExitStack) -> bool:
    """Whether this run can train in the group: unfinished, and its folder's lock now ours."""
    try:
        if prior_status(entry.run_dir, entry.cfg) in FINISHED:
            return False
        held.enter_context(lock.holding(entry.run_dir, since=now_iso()))
        # It may have finished while we asked.
        return prior_status(entry.run_dir, entry.cfg) not in FINISHED
    except (ConfigMismatch, lock.RunLocked):
        return False  # the second step reports it as the other launchers do


def _member_logger(entry: Entry) -> tuple[logging.Logger, logging.Handler]:
    """A logger onto the job's own log file, formatted as the job's logging formats it (the
    job's logging is Hydra's to set up, in run_job, after the group has trained)."""
    entry.run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(entry.log_file, mode="a")
    handler.setFormatter(logging.Formatter(entry.log_format, entry.log_datefmt))
    logger = logging.Logger(LIFECYCLE_LOGGER, logging.INFO)  # standalone: no propagation
    logger.addHandler(handler)
    return logger, handler


def _start(
    entry: Entry,
    nums: list[int | None],
    device: torch.device,
    data: Data,
    loaded: float,
    held: contextlib.ExitStack,
) -> _Run:
    """A member's lifecycle up to training, as a run alone goes through it."""
    logger, handler = _member_logger(entry)
    held.callback(handler.close)
    extra = {"fused": {"jobs": nums, "members": len(nums)}}
    life = Lifecycle(entry.cfg, entry.run_dir, entry.job, logger, extra)
    life.opened()
    jobs = ", ".join(f"#{n}" for n in nums)
    life.log.info("trained stacked with jobs %s (hydra/launcher=fused)", jobs)
    life.configured(device)
    life.data_loaded(data, device, loaded)  # loaded once for the group
    state = start_state(entry.cfg, data, device, life.checkpoint)
    life.started(state)
    member = Member(entry.cfg, state.model, state.optimizer, state.generator, state.history)
    return _Run(entry, life, state, member, handler)


def train_group(entries: Sequence[Entry]) -> None:
    """Train what can of these runs as one stack, each recorded in its own folder."""
    with contextlib.ExitStack() as held:
        joined = [e for e in entries if _joinable(e, held)]
        if len(joined) < 2:
            return  # one run alone is a run: the second step trains it
        first = joined[0].cfg
        device = resolve_device(first.device)
        # Determinism and precision are the group's (fuse_key); its threads are the first's.
        configure_process(first, device)
        tic = time.perf_counter()
        data = load_data(first.data, device, precision.dtype(first.trainer.precision))
        loaded = time.perf_counter() - tic
        nums = [e.job.num for e in joined]
        runs = [_start(e, nums, device, data, loaded, held) for e in joined]
        by_start: dict[tuple[int, str], list[_Run]] = {}
        for run in runs:
            key = (len(run.member.history.epochs), run.member.history.status)
            by_start.setdefault(key, []).append(run)
        members = {id(r.member): r for r in runs}

        def epoch_done(alive: list[Member]) -> None:
            for member in alive:
                members[id(member)].life.epoch_done(members[id(member)].state)

        limit = first.trainer.time_limit  # the group's (fuse_key)
        deadline = deadline_after(limit)
        try:
            with precision.autocast(first.trainer.precision, device):
                for part in by_start.values():
                    fit_stacked([r.member for r in part], data, epoch_done, deadline)
        except TimeLimitReached:
            assert limit is not None
            for run in runs:  # members of an earlier part may have ended in time
                history = run.member.history
                ended = len(history.epochs) == run.entry.cfg.trainer.epochs
                if ended or history.status == Status.DIVERGED:
                    run.life.finished(history)
                else:
                    run.life.timed_out(limit)
            return
        except KeyboardInterrupt as err:
            for run in runs:
                run.life.interrupted(err)
            raise
        except Exception as err:  # the runs go on alone, from their checkpoints
            trace = "".join(traceback.format_exception(err))
            log.warning(
                "stacked training failed (%s); its runs continue one by one\n%s",
                one_line(err),
                trace,
            )
            for run in runs:
                run.life.abandoned(f"stacked training failed: {one_line(err)}; continued alone")
            return
        for run in runs:
            run.life.finished(run.member.history)


def entry(config: DictConfig) -> Entry:
    """A job of the group, from its composed config (Hydra's node included)."""
    if reads_hydra_config(config):
        HydraConfig.instance().set_config(config)
    job = JobInfo(
        num=config.hydra.job.num,
        overrides=list(config.hydra.overrides.task),
        sweep_dir=Path(str(config.hydra.sweep.dir)),
    )
    folder = job_dir(config)
    logging_cfg = config.hydra.job_logging
    formatter = OmegaConf.select(logging_cfg, "handlers.file.formatter", default="simple")
    form = OmegaConf.select(logging_cfg, f"formatters.{formatter}", default=None) or {}
    return Entry(
        to_config(task_config(config)),
        folder,
        job,
        folder / f"{config.hydra.job.name}.log",
        str(form.get("format") or logging.BASIC_FORMAT),
        form.get("datefmt"),
    )
