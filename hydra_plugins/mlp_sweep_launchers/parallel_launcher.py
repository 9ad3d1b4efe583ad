"""hydra/launcher=parallel: a sweep's jobs in worker processes, every core busy (the default).

Thin by design: the pool is mlp_sweep.launch.pool, the job is mlp_sweep.launch.jobs.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)
# Shown on a quiet sweep console too (mlp_sweep.results.console_filter.ConsoleFilter); other INFO
# lines are not.
ON_CONSOLE = {"console": True}


class ParallelLauncher(Launcher):
    def __init__(
        self, n_jobs: int | None = None, retries: int = 0, gpus: Any = "auto", jobs_per_gpu: Any = 1
    ) -> None:
        from mlp_sweep.launch import gpu_slots

        if not isinstance(retries, int) or retries < 0:
            from mlp_sweep.errors import ConfigError

            raise ConfigError("hydra.launcher.retries", retries, "must be an integer >= 0")
        gpu_slots.parse_gpus(gpus), gpu_slots.parse_per_gpu(jobs_per_gpu)  # one line if wrong
        self.n_jobs, self.retries = n_jobs, retries
        self.gpus, self.jobs_per_gpu = gpus, jobs_per_gpu
        self._pool: Any = None  # mlp_sweep.launch.pool.Pool, kept across launches
        self._pool_shape: tuple[Any, ...] | None = None
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self._units: list[list[tuple[int, list[str]]]] = []
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    # Whether an Optuna search may hand it one trial at a time (stream) instead of batches.
    streams_jobs = True

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        numbered = [(i, list(o)) for i, o in enumerate(job_overrides, start=initial_job_idx)]
        ours = self._prepare()
        units = self.units(numbered) if ours else [[job] for job in numbered]
        what = f"{len(job_overrides)} jobs{self.describe(units)}"
        pool = self._pool_for(len(units), job_overrides, what)
        for idx, overrides in numbered:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        self._units = units
        answers = pool.run([(unit,) for unit in units])
        done: dict[int, JobReturn] = {}
        for unit, (kind, value) in zip(units, answers, strict=True):
            done.update(self._returns(unit, kind, value, ours))
        return [done[idx] for idx, _ in numbered]

    def stream(
        self,
        more: Callable[[], tuple[int, list[str]] | None],
        done: Callable[[int, JobReturn], None],
        expected: int,
    ) -> list[JobReturn]:
        """Jobs one at a time, each as soon as a worker is free: more() gives the next job
        (its number and overrides) or None, done(number, return) is told each job's end before
        more() is asked again. `expected`, the jobs the caller plans, sizes the pool."""
        ours = self._prepare()
        pool = self._pool_for(expected, [], "trials one at a time as workers free up,")
        self._units = []
        returns: list[JobReturn] = []

        def next_payload() -> tuple[Any, ...] | None:
            job = more()
            if job is None:
                return None
            log.info(f"\t#{job[0]} : {' '.join(filter_overrides(job[1]))}")
            self._units.append([job])
            return ([job],)

        def answered(index: int, kind: str, value: Any) -> None:
            for idx, ret in self._returns(self._units[index], kind, value, ours).items():
                returns.append(ret)
                done(idx, ret)

        pool.run([], more=next_payload, on_answer=answered)
        return returns

    def _prepare(self) -> bool:
        """Hydra's logging and the sweep's folder, as Hydra's launchers set them up; whether
        the task is mlp_sweep's own."""
        from mlp_sweep.launch.task import is_mlp_sweep_task

        assert self.config and self.hydra_context and self.task_function
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        return is_mlp_sweep_task(self.task_function)

    def _pool_for(self, jobs: int, job_overrides: Sequence[Sequence[str]], what: str) -> Any:
        """The pool for `jobs` payloads: the one kept from an earlier launch if its shape fits."""
        from mlp_sweep.launch import gpu_slots
        from mlp_sweep.launch.jobs import HydraJobs, threads_asked
        from mlp_sweep.launch.pool import Pool
        from mlp_sweep.launch.task import is_mlp_sweep_task
        from mlp_sweep.launch.warm_pool import PRELOAD
        from mlp_sweep.training import threads

        assert self.config and self.hydra_context and self.task_function
        wanted = threads_asked(self.config, job_overrides)
        slots = self.slots(job_overrides)
        workers, per_job = gpu_slots.split(jobs, self.n_jobs, wanted, slots)
        where = f" on {slots.describe()}" if slots is not None else ""
        log.info(
            f"Launching {what} on {workers} worker processes{where}, {per_job} torch "
            f"thread{'s' if per_job > 1 else ''} each",
            extra=ON_CONSOLE if self._pool is None else None,  # a search's later batches: quiet
        )
        shape = (workers, per_job, slots)
        if self._pool is None or self._pool_shape != shape:
            if self._pool is not None:
                self._pool.close()
            jobs_run = HydraJobs(
                self.hydra_context, self.task_function, self.config, Singleton.get_state()
            )
            env = {threads.ENV: str(per_job)}
            preload = PRELOAD if is_mlp_sweep_task(self.task_function) else None
            envs = slots.envs() if slots is not None else None
            self._pool = Pool(jobs_run, workers, env, self.retries, self._retry, preload, envs)
            self._pool_shape = shape
            atexit.register(self._pool.close)
        return self._pool

    def slots(self, job_overrides: Sequence[Sequence[str]]) -> Any:
        """The workers' GPU slots (mlp_sweep.launch.gpu_slots.Slots), or None: not placed."""
        from mlp_sweep.launch import gpu_slots
        from mlp_sweep.launch.jobs import devices_asked, threads_asked
        from mlp_sweep.training import threads

        assert self.config is not None
        devices = devices_asked(self.config, job_overrides)
        wanted = threads_asked(self.config, job_overrides)
        return gpu_slots.plan(self.gpus, self.jobs_per_gpu, devices, threads.cores(), wanted)

    def _returns(
        self, unit: list[tuple[int, list[str]]], kind: str, value: Any, ours: bool
    ) -> dict[int, JobReturn]:
        """The JobReturn of each job of a payload, from the pool's answer for it."""
        from mlp_sweep.launch.jobs import mark_worker_died

        assert self.config is not None
        if kind == "ok":
            return dict(zip((idx for idx, _ in unit), value, strict=True))
        done: dict[int, JobReturn] = {}
        for idx, overrides in unit:
            ret = JobReturn(overrides=overrides, cfg=self.config, status=JobStatus.FAILED)
            ret.return_value = value if isinstance(value, BaseException) else RuntimeError(value)
            if ours:  # the run's own record says what happened; the summary lists it
                log.error(f"job #{idx} ({' '.join(overrides)}): {value}")
                ret.status, ret.return_value = JobStatus.COMPLETED, None
                if kind == "lost":  # a search keeps its trial open for --resume
                    mark_worker_died(ret)
            done[idx] = ret
        return done

    def _retry(self, index: int, lost: Any, retry: int) -> None:
        for idx, overrides in self._units[index]:
            log.warning(
                f"job #{idx} ({' '.join(overrides)}): {lost}; running it again "
                f"(retry {retry} of hydra.launcher.retries={self.retries})"
            )

    def units(self, jobs: list[tuple[int, list[str]]]) -> list[list[tuple[int, list[str]]]]:
        """What each worker payload holds: here one job; hydra/launcher=fused groups them."""
        return [[job] for job in jobs]

    def describe(self, units: list[list[tuple[int, list[str]]]]) -> str:
        return ""
