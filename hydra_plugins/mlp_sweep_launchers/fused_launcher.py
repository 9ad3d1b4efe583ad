"""hydra/launcher=fused: a sweep's jobs that can share a stacked model train as one.

The parallel launcher with one change: jobs whose configs differ only in what fusing allows
(activation, init, learning rate, momentum, weight decay, logits activation; see
mlp_sweep.training.stacked.fuse_key) go to a worker together, where they train as one stacked model
(mlp_sweep.launch.stacked_group). Which jobs stack is mlp_sweep.launch.fuse_groups' decision.
Every job still goes through Hydra's run_job, so its folder, log, callbacks and return value are
what any launcher gives. Other apps' tasks, and jobs that cannot be grouped, run exactly as
under hydra/launcher=parallel.
"""

from __future__ import annotations

from typing import Any

from .parallel_launcher import ParallelLauncher


class FusedLauncher(ParallelLauncher):
    # A search hands it batches, which it stacks; one trial at a time could never be stacked.
    streams_jobs = False

    def __init__(
        self,
        n_jobs: int | None = None,
        fuse: str = "auto",
        min_group: int = 2,
        max_group: int = 16,
        retries: int = 0,
        gpus: Any = "auto",
        jobs_per_gpu: Any = 1,
    ) -> None:
        from mlp_sweep.launch.fuse_groups import FuseGroups

        super().__init__(n_jobs=n_jobs, retries=retries, gpus=gpus, jobs_per_gpu=jobs_per_gpu)
        self.groups = FuseGroups(fuse, min_group, max_group)

    def units(self, jobs: list[tuple[int, list[str]]]) -> list[list[tuple[int, list[str]]]]:
        from mlp_sweep.config import Config, to_config
        from mlp_sweep.launch import gpu_slots
        from mlp_sweep.launch.jobs import threads_asked
        from mlp_sweep.launch.task import task_config

        assert self.config is not None and self.hydra_context is not None
        configs: dict[int, Config] = {}
        loader = self.hydra_context.config_loader
        for idx, overrides in jobs:
            config = loader.load_sweep_config(self.config, overrides)
            try:
                configs[idx] = to_config(task_config(config))
            except Exception:  # the job itself will say what is wrong, in its record
                continue
        # Run alone, the jobs would go `workers` at a time with `per_job` threads each; placed
        # on GPUs, a worker per slot, so each GPU gets its own stacks.
        batch = [o for _, o in jobs]
        wanted = threads_asked(self.config, batch)
        slots = self.slots(batch)
        workers, per_job = gpu_slots.split(len(jobs), self.n_jobs, wanted, slots)
        return self.groups.units(jobs, configs, workers, per_job)

    def describe(self, units: list[list[tuple[int, list[str]]]]) -> str:
        return self.groups.describe(units)
