"""What the launchers need to know of a sweep's task and of a job's config, shared by the
worker's job (jobs.py), the stacked group (stacked_group.py) and the task itself."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from hydra.types import TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mlp_sweep.run.job import JobInfo

# Set on mlp_sweep's own task function (mlp_sweep.cli.main) by `records_runs`.
MARKER = "__mlp_sweep_task__"


def records_runs(task_function: TaskFunction) -> TaskFunction:
    """Mark a task as mlp_sweep's: it records its own failures and honours folder locks, so
    the launchers lock its folders and may train a group of its jobs as one stack."""
    setattr(task_function, MARKER, True)
    return task_function


def is_mlp_sweep_task(task_function: TaskFunction) -> bool:
    """mlp_sweep's own task (marked by records_runs); another app's task (Hydra's launcher
    tests, a user's script) gets Hydra's plain behaviour."""
    return getattr(task_function, MARKER, False) is True


def task_config(config: DictConfig) -> DictConfig:
    """The job's config without Hydra's node, as run_job hands it to the task (typed)."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def job_dir(config: DictConfig) -> Path:
    """The folder run_job will give this job: hydra.sweep.dir / hydra.sweep.subdir."""
    sweep = config.hydra.sweep
    return Path(os.path.abspath(os.path.join(str(sweep.dir), str(sweep.subdir))))


# Interpolations a sweep's folder can use without HydraConfig being this job's.
_SELF_CONTAINED = re.compile(r"\$\{(now:[^}]*|hydra\.job\.num|hydra\.job\.id)\}")


def reads_hydra_config(config: DictConfig) -> bool:
    """Whether job_dir() may resolve through the ${hydra:...} resolver, or through another
    key that might: then HydraConfig must hold this job's config first, not the last job's."""
    sweep = config.hydra.sweep
    raw = f"{sweep._get_node('dir')._value()} {sweep._get_node('subdir')._value()}"
    return "${" in _SELF_CONTAINED.sub("", raw)


def job_info(hydra: DictConfig, epochs: int, multirun: bool) -> JobInfo:
    """Where a job sits in its sweep, from its Hydra node (HydraConfig.get(), or a composed
    config's `hydra`): its number, overrides, sweep folder and, for a trial of mlp_sweep's
    search with a pruner, the link through which its epochs reach the study. The same for a
    job run alone and for a member of a stack."""
    from mlp_sweep.search.trial import trial_link

    trial = trial_link(hydra, epochs) if multirun else None
    return JobInfo(
        num=OmegaConf.select(hydra, "job.num", default=None),  # unset in a single run
        overrides=list(hydra.overrides.task),
        sweep_dir=Path(str(hydra.sweep.dir)) if multirun else None,
        prune=trial.should_prune if trial is not None else None,
    )
