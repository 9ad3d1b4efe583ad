"""A fused group of a sweep's jobs, as a worker of hydra/launcher=fused runs it.

Two steps. First the group trains as one stack (mlp_sweep.fused), each member under its own
folder's lock, with the record a run keeps (metrics.json from the start, history.csv and
checkpoint.pt every epoch, its loggers, its log lines), so a sweep's progress display,
summary and resume see each member as the run it is. Then each job goes through Hydra's
run_job as any launcher's does (.hydra/, the job's log, callbacks, its return value), where
the task finds its run finished and skips it. A member that cannot join (finished already,
trained elsewhere, another config in its folder) is left to that second step, which does for
it exactly what it does under the other launchers; so is every member, should the fused
training itself fail (they then continue alone from their checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mlp_sweep import lock, precision
from mlp_sweep.config import Config
from mlp_sweep.data import Data, load_data
from mlp_sweep.device import resolve_device
from mlp_sweep.errors import ConfigMismatch
from mlp_sweep.fused import Member, fit_fused
from mlp_sweep.launch.jobs import job_dir, reads_hydra_config, task_config
from mlp_sweep.loggers import LoggerSet, open_loggers, run_info
from mlp_sweep.record import CHECKPOINT_FILE, FINISHED, now_iso, save_checkpoint
from mlp_sweep.runner import (
    JobInfo,
    RunRecord,
    _checkpoint_state,
    configure_process,
    one_line,
    prior_record,
    start_state,
)
from mlp_sweep.train import History

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One job of the group: its config, folder and place in the sweep."""

    cfg: Config
    run_dir: Path
    job: JobInfo
    log_file: Path  # the job's log (hydra.job.name.log), which run_job appends to afterwards


@dataclass
class _Run:
    entry: Entry
    member: Member
    record: RunRecord
    loggers: LoggerSet
    kept: History  # what its checkpoint holds: an interrupted record reports this


def _joinable(entry: Entry, stack: contextlib.ExitStack) -> bool:
    """Whether this run can train in the group: unfinished, and its folder's lock now ours."""
    try:
        prior = _prior(entry)
        if prior in FINISHED:
            return False
        stack.enter_context(lock.holding(entry.run_dir, since=now_iso()))
        return _prior(entry) not in FINISHED  # it may have finished while we asked
    except (ConfigMismatch, lock.RunLocked):
        return False  # the second step reports it as the other launchers do


def _prior(entry: Entry) -> str | None:
    prior = prior_record(entry.run_dir, entry.cfg)
    return prior.get("status") if prior else None


def _log(run: _Run, message: str) -> None:
    """A line in the run's own log, formatted as its job's logging formats them."""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    with open(run.entry.log_file, "a") as f:
        f.write(f"[{stamp}][mlp_sweep.fused][INFO] - {message}\n")


def _start(entry: Entry, group: Sequence[Entry], device: torch.device, data: Data) -> _Run:
    cfg = entry.cfg
    entry.run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(cfg, entry.run_dir, entry.job)
    nums = [e.job.num for e in group]
    record.fields["fused"] = {"jobs": nums, "members": len(group)}
    record.update()
    loggers = open_loggers(cfg.logger)
    record.fields["loggers"] = loggers.names
    checkpoint = entry.run_dir / CHECKPOINT_FILE
    model, optimizer, generator, history = start_state(cfg, data, device, checkpoint)
    if history.epochs:
        record.fields["resumed_from_epoch"] = len(history.epochs)
    record.update(
        device=str(device),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        threads=torch.get_num_threads(),
    )
    run = _Run(
        entry,
        Member(cfg, model, optimizer, generator, history),
        record,
        loggers,
        History(list(history.epochs)),
    )
    _log(run, f"job #{entry.job.num}: {' '.join(entry.job.overrides)}")
    _log(run, f"trained fused with jobs {', '.join(f'#{n}' for n in nums)} (hydra/launcher=fused)")
    if loggers.names:
        info = run_info(
            entry.run_dir,
            record.fields["params"],
            entry.job.num,
            entry.job.overrides,
            entry.job.sweep_dir,
        )
        loggers.start(info, history.epochs)
    return run


def _epoch_done(run: _Run) -> None:
    cfg, m = run.entry.cfg, run.member
    e = m.history.epochs[-1]
    _log(
        run,
        f"epoch {e.epoch}/{cfg.trainer.epochs}  train_loss {e.train_loss:.4f}  test_loss "
        f"{e.test_loss:.4f}  test_acc {e.test_acc:.4f}  ({e.seconds:.2f}s, fused)",
    )
    if cfg.trainer.checkpoint:
        state = _checkpoint_state(
            run.record.fields["params"], m.model, m.optimizer, m.generator, m.history
        )
        save_checkpoint(run.entry.run_dir / CHECKPOINT_FILE, state)
    run.kept.epochs = list(m.history.epochs)
    run.kept.status = m.history.status
    run.record.fields["loggers_failed"] = dict(run.loggers.failed)
    run.record.epochs_done(m.history)
    run.loggers.epoch(e)


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
        data = load_data(first.data, device, precision.dtype(first.trainer.precision))
        runs = [_start(e, joined, device, data) for e in joined]
        by_start: dict[tuple[int, str], list[_Run]] = {}
        for run in runs:
            key = (len(run.member.history.epochs), run.member.history.status)
            by_start.setdefault(key, []).append(run)
        members = {id(r.member): r for r in runs}

        def epoch_done(alive: list[Member]) -> None:
            for member in alive:
                _epoch_done(members[id(member)])

        try:
            with precision.autocast(first.trainer.precision, device):
                for part in by_start.values():
                    fit_fused([r.member for r in part], data, epoch_done)
        except KeyboardInterrupt as err:
            from mlp_sweep.interrupt import signal_name

            for run in runs:
                _close(
                    run,
                    "interrupted",
                    f"interrupted by {signal_name(err)} after epoch {len(run.kept.epochs)}",
                    run.kept,
                )
            raise
        except Exception as err:  # the runs go on alone, from their checkpoints
            trace = "".join(traceback.format_exception(err))
            log.warning(
                "fused training failed (%s); its runs continue one by one\n%s", one_line(err), trace
            )
            for run in runs:
                run.loggers.close()
                _log(run, f"fused training failed: {one_line(err)}; continued alone")
            return
        for run in runs:
            _close(run, run.member.history.status, None, run.member.history)


def _close(run: _Run, status: str, error: str | None, history: History) -> None:
    run.loggers.finish(run.record.fields)
    run.record.fields["loggers_failed"] = run.loggers.close()
    if history.epochs and run.record.fields["epochs_done"] != len(history.epochs):
        run.record.epochs_done(history)
    if status == "diverged":
        _log(run, f"run diverged at epoch {len(history.epochs)}: non-finite loss")
    run.record.update(status=status, error=error, finished_at=now_iso())


def entry(config: DictConfig) -> Entry:
    from mlp_sweep.preflight import to_config

    if reads_hydra_config(config):
        HydraConfig.instance().set_config(config)
    task = task_config(config)
    job = JobInfo(
        num=config.hydra.job.num,
        overrides=list(config.hydra.overrides.task),
        sweep_dir=Path(str(config.hydra.sweep.dir)),
    )
    folder = job_dir(config)
    return Entry(to_config(task), folder, job, folder / f"{config.hydra.job.name}.log")
