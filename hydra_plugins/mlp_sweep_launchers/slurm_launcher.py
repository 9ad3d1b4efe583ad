"""hydra/launcher=slurm: Hydra's submitit SLURM launcher with mlp_sweep's promises kept.

Hydra only instantiates launchers its plugin scanner found, and the scanner imports this
module on every start, so it must import without the optional extra: without
hydra-submitit-launcher, SlurmLauncher is a stub that says which extra to install.
conf/hydra/launcher/slurm.yaml names it.

What it adds to Hydra's launcher:
- cpus_per_task and gpus_per_node follow trainer.threads and device when left null;
- in the SLURM job, the run folder is locked before Hydra writes into it (one writer);
- a job that SLURM ends without a result (scancel, time limit, node failure) becomes one line
  naming its SLURM log, and the sweep still gets its summary (the row says what the record
  says: interrupted, incomplete...) instead of Hydra's traceback;
- Ctrl-C or SIGTERM on the submitting command cancels the sweep's SLURM jobs (scancel), and
  SIGTERM reaches each run as an interrupt (submitit itself ignores SIGTERM).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

try:  # modules, not classes: the scanner would list an imported class as ours
    from hydra_plugins.hydra_submitit_launcher import config as submitit_config
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:
    submitit_launcher = None

log = logging.getLogger(__name__)
# Shown on a quiet sweep console too (mlp_sweep.results.console_filter.ConsoleFilter); other INFO
# lines are not.
ON_CONSOLE = {"console": True}
EXTRA = 'hydra/launcher=slurm needs the cluster extra: pip install ".[cluster]"'

if submitit_launcher is None:

    class SlurmLauncher(Launcher):
        def __init__(self, **params: Any) -> None:
            raise ImportError(EXTRA)

        def setup(self, **kwargs: Any) -> None:
            raise ImportError(EXTRA)

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            raise ImportError(EXTRA)

else:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):  # type: ignore[no-redef]
        def __call__(
            self,
            sweep_overrides: list[str],
            job_dir_key: str,
            job_num: int,
            job_id: str,
            singleton_state: dict[type, Singleton],
        ) -> JobReturn:
            """One job, inside its SLURM allocation."""
            import submitit

            from mlp_sweep.launch.jobs import run_locked

            assert self.hydra_context and self.config and self.task_function
            Singleton.set_state(singleton_state)
            setup_globals()
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, sweep_overrides
            )
            with open_dict(config.hydra.job):
                config.hydra.job.id = submitit.JobEnvironment().job_id
                config.hydra.job.num = job_num
            return run_locked(self.hydra_context, self.task_function, config, sweep_overrides)

        def _resources(self, job_overrides: Sequence[Sequence[str]]) -> dict[str, Any]:
            """The launcher's parameters with the nulls that follow the sweep filled in."""
            from mlp_sweep.launch.jobs import threads_asked
            from mlp_sweep.launch.slurm_resources import slurm_resources

            assert self.config is not None
            threads = threads_asked(self.config, job_overrides)
            device = str(OmegaConf.select(self.config, "device", default="cpu"))
            return slurm_resources(dict(self.params), threads, device)

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            import submitit

            from mlp_sweep.launch.task import is_mlp_sweep_task

            assert self.config is not None and self.task_function is not None
            params = self._resources(job_overrides)
            init_keys = {"submitit_folder", "max_num_timeout"}
            executor = submitit.AutoExecutor(
                cluster="slurm",
                folder=params["submitit_folder"],
                slurm_max_num_timeout=params["max_num_timeout"],
            )
            base = set(OmegaConf.structured(submitit_config.BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    key if key in base else f"slurm_{key}": value
                    for key, value in params.items()
                    if key not in init_keys
                }
            )
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
            args = [
                (list(o), "hydra.sweep.dir", n, f"job_id_for_{n}", Singleton.get_state())
                for n, o in zip(numbers, job_overrides, strict=True)
            ]
            jobs = executor.map_array(self, *zip(*args, strict=True))
            log.info(
                f"Submitted {len(jobs)} jobs to SLURM ({params['cpus_per_task']} cpus, "
                f"{params['gpus_per_node']} gpus, {params['mem_gb']} GB each); logs: "
                f"{_log_of(jobs[0]).parent.parent}/<job id>/",
                extra=ON_CONSOLE,
            )
            for n, overrides, job in zip(numbers, job_overrides, jobs, strict=True):
                log.info(f"\t#{n} : {' '.join(filter_overrides(overrides))}  [{_log_of(job)}]")
            ours = is_mlp_sweep_task(self.task_function)
            try:
                return [self._result(n, job, ours) for n, job in zip(numbers, jobs, strict=True)]
            except KeyboardInterrupt:
                _cancel(jobs)
                raise

        def _result(self, number: int, job: Any, ours: bool) -> JobReturn:
            """The job's JobReturn; for our task a job without one is a line, not a crash."""
            import submitit

            try:
                result: JobReturn = job.results()[0]
                return result
            except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError):
                if not ours:
                    raise
            log.error(
                f"job #{number}: SLURM job {job.job_id} ended without a result "
                f"({job.state}); its log: {_log_of(job)}"
            )
            ret = JobReturn(overrides=[], cfg=self.config, status=JobStatus.COMPLETED)
            ret.return_value = None
            return ret


def _cancel(jobs: list[Any], wait_s: float = 60.0) -> None:
    """scancel the sweep's unfinished jobs and wait (bounded) until SLURM has ended them: each
    run gets SIGTERM and records itself `interrupted`, and none is left in the queue when the
    command exits."""
    import subprocess
    import time

    for job in jobs:
        if not job.done():
            job.cancel(check=False)
    ids = sorted({job.job_id.split("_")[0] for job in jobs})
    log.warning(f"cancelled the sweep's SLURM jobs ({', '.join(ids)})")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True
        )
        if queue.returncode == 0 and not queue.stdout.strip():
            return
        time.sleep(1.0)
    log.warning("SLURM had not ended every job after %.0f s; see squeue", wait_s)


def _log_of(job: Any) -> Path:
    return Path(job.paths.stdout)
