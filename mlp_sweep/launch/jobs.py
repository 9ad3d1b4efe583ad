"""One Hydra job, as a worker process or a SLURM job runs it.

This is what Hydra's BasicLauncher does for each job (compose the job's config, number it,
hand it to hydra.core.utils.run_job), plus one thing: for mlp_sweep's own task the job's
folder is locked *before* run_job, which writes .hydra/ and the log there. A folder another
process is training is then not touched at all; the job comes back as skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from mlp_sweep.launch.task import is_mlp_sweep_task, job_dir, reads_hydra_config
from mlp_sweep.run.claim import claim
from mlp_sweep.status import Status

log = logging.getLogger(__name__)


def threads_asked(config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> int | None:
    """The largest explicit trainer.threads among a batch's jobs (the sweep's config and each
    job's override), or None when all are auto. A value that is not a count is left for the
    job itself to report."""
    from mlp_sweep.errors import ConfigError
    from mlp_sweep.training import threads

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


def devices_asked(config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Every `device` a batch's jobs name: the sweep's config's and each job's override."""
    asked = [str(OmegaConf.select(config, "device", default="cpu"))]
    asked += [
        o.split("=", 1)[1]
        for job in job_overrides
        for o in job
        if o.lstrip("+").startswith("device=")
    ]
    return list(dict.fromkeys(asked))


# Set on the JobReturn of a job whose worker process died: how it ended is not known.
_WORKER_DIED = "mlp_sweep_worker_died"


def mark_worker_died(ret: JobReturn) -> None:
    setattr(ret, _WORKER_DIED, True)


def worker_died(ret: JobReturn) -> bool:
    """Whether this job's worker died while running it (the parallel and fused launchers
    return it COMPLETED with no value, so a grid goes on; a search keeps its trial open)."""
    return getattr(ret, _WORKER_DIED, False) is True


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
    (mlp_sweep.launch.stacked_group) before each job goes through run_job, which finds it finished.
    """

    hydra_context: HydraContext
    task_function: TaskFunction
    config: DictConfig
    singleton_state: dict[Any, Any]

    def __call__(self, jobs: Sequence[tuple[int, Sequence[str]]]) -> list[JobReturn]:
        configs = [self.compose(index, overrides) for index, overrides in jobs]
        if len(jobs) < 2 or not is_mlp_sweep_task(self.task_function):
            return self._run_each(configs, jobs)
        from mlp_sweep.launch.stacked_group import entry, train_group
        from mlp_sweep.run.runner import reporting

        ended = train_group([entry(config) for config in configs])
        with reporting(ended):  # each job's task reports how its run ended in the stack
            return self._run_each(configs, jobs)

    def _run_each(
        self, configs: Sequence[DictConfig], jobs: Sequence[tuple[int, Sequence[str]]]
    ) -> list[JobReturn]:
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
    with contextlib.ExitStack() as held:
        # Finished: the task skips it (its lock file is not rewritten); else locked here.
        found = claim(job_dir(config), None, held)
        if found is not None and found.status == Status.RUNNING_ELSEWHERE:
            return skipped(overrides, config, f"mlp_sweep: {found.error}")
        return run()
