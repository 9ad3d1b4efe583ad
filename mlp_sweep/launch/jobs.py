"""One Hydra job, as a worker process or a SLURM job runs it.

This is what Hydra's BasicLauncher does for each job (compose the job's config, number it,
hand it to hydra.core.utils.run_job), plus one thing: for mlp_sweep's own task the job's
folder is locked *before* run_job, which writes .hydra/ and the log there. A folder another
process is training is then not touched at all; the job comes back as skipped.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mlp_sweep import lock
from mlp_sweep.record import FINISHED, now_iso, read_metrics

log = logging.getLogger(__name__)


def is_mlp_sweep_task(task_function: TaskFunction) -> bool:
    """mlp_sweep's own task records its failures and honours folder locks; another app's
    task (Hydra's launcher tests, a user's script) gets Hydra's plain behaviour."""
    return getattr(task_function, "__module__", "") == "mlp_sweep.cli"


def threads_asked(config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> int | None:
    """The largest explicit trainer.threads among a batch's jobs (the sweep's config and each
    job's override), or None when all are auto. A value that is not a count is left for the
    job itself to report."""
    from mlp_sweep import threads
    from mlp_sweep.errors import ConfigError

    asked = [OmegaConf.select(config, "trainer.threads", default=threads.AUTO)]
    asked += [
        o.split("=", 1)[1]
        for job in job_overrides
        for o in job
        if o.lstrip("+").startswith("trainer.threads=")
    ]
    counts = []
    for value in asked:
        try:
            counts.append(threads.parse(value))
        except ConfigError:
            counts.append(None)
    return max((c for c in counts if c), default=None)


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


def skipped(overrides: Sequence[str], config: DictConfig, why: str) -> JobReturn:
    """A job that did not run here; COMPLETED so the sweep goes on, None as its value."""
    ret = JobReturn(overrides=list(overrides), cfg=config, working_dir=os.getcwd())
    ret.status, ret.return_value = JobStatus.COMPLETED, None
    # Printed, not logged: the job's logging is not set up (and must not write to its folder).
    print(why, file=sys.stderr, flush=True)
    return ret


@dataclass
class HydraJobs:
    """Everything a worker needs to run any job of one sweep; shipped once per worker.

    Called with a group of jobs, it runs them in order. Groups of one are what the parallel
    launcher sends; hydra/launcher=fused sends larger ones, whose runs train as one stack
    (mlp_sweep.launch.fused) before each job goes through run_job, which finds it finished.
    """

    hydra_context: HydraContext
    task_function: TaskFunction
    config: DictConfig
    singleton_state: dict[Any, Any]

    def __call__(self, jobs: Sequence[tuple[int, Sequence[str]]]) -> list[JobReturn]:
        configs = [self.compose(index, overrides) for index, overrides in jobs]
        if len(jobs) > 1 and is_mlp_sweep_task(self.task_function):
            from mlp_sweep.launch.fused import entry, train_group

            train_group([entry(config) for config in configs])
        return [
            run_locked(self.hydra_context, self.task_function, config, overrides)
            for config, (_, overrides) in zip(configs, jobs, strict=True)
        ]

    def compose(self, index: int, overrides: Sequence[str]) -> DictConfig:
        """The job's config, numbered, as Hydra's launchers make it."""
        if not getattr(self, "_ready", False):  # once per worker process
            Singleton.set_state(self.singleton_state)
            setup_globals()
            self._ready = True
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = index
            config.hydra.job.num = index
        return config


def _finished(folder: Path) -> bool:
    try:
        return read_metrics(folder).get("status") in FINISHED
    except (OSError, ValueError):
        return False


def run_locked(
    hydra_context: HydraContext,
    task_function: TaskFunction,
    config: DictConfig,
    overrides: Sequence[str],
) -> JobReturn:
    """hydra.core.utils.run_job for one sweep job, under its folder's lock for our task."""

    def run() -> JobReturn:
        return run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    if not is_mlp_sweep_task(task_function):
        return run()
    if reads_hydra_config(config):
        HydraConfig.instance().set_config(config)  # a deep copy of hydra's node: not per job
    folder = job_dir(config)
    if _finished(folder):  # final: the task skips it; its lock file is not rewritten
        return run()
    try:
        with lock.holding(folder, since=now_iso()):
            return run()
    except lock.RunLocked as err:
        return skipped(overrides, config, f"mlp_sweep: {err}")
