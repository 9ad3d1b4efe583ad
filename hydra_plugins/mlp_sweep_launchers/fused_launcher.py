"""hydra/launcher=fused: a sweep's jobs that can share a stacked model train as one.

The parallel launcher with one change: jobs whose configs differ only in what fusing allows
(activation, init, learning rate, momentum, weight decay, logits activation; see
mlp_sweep.fused.fuse_key) go to a worker together, where they train as one stacked model
(mlp_sweep.launch.fused). Every job still goes through Hydra's run_job, so its folder, log,
callbacks and return value are what any launcher gives. Other apps' tasks, and jobs that
cannot be grouped, run exactly as under hydra/launcher=parallel.
"""

from __future__ import annotations

import logging

from .parallel_launcher import ParallelLauncher

log = logging.getLogger(__name__)


class FusedLauncher(ParallelLauncher):
    def __init__(self, n_jobs: int | None = None, min_group: int = 2, max_group: int = 16) -> None:
        super().__init__(n_jobs=n_jobs)
        self.min_group, self.max_group = max(2, min_group), max(2, max_group)

    def units(self, jobs: list[tuple[int, list[str]]]) -> list[list[tuple[int, list[str]]]]:
        from mlp_sweep.fused import fuse_key
        from mlp_sweep.launch.jobs import task_config
        from mlp_sweep.preflight import to_config

        assert self.config is not None and self.hydra_context is not None
        groups: dict[object, list[tuple[int, list[str]]]] = {}
        alone = []
        loader = self.hydra_context.config_loader
        for job in jobs:
            config = loader.load_sweep_config(self.config, job[1])
            try:
                key = fuse_key(to_config(task_config(config)))
            except Exception:  # the job itself will say what is wrong, in its record
                key = None
            if key is None:
                alone.append([job])
            else:
                groups.setdefault(key, []).append(job)
        units = []
        for members in groups.values():
            if len(members) < self.min_group:
                units += [[job] for job in members]
                continue
            # Even chunks of at most max_group, so no group is left with one or two.
            n_chunks = -(-len(members) // self.max_group)
            size = -(-len(members) // n_chunks)
            units += [members[i : i + size] for i in range(0, len(members), size)]
        return units + alone

    def describe(self, units: list[list[tuple[int, list[str]]]]) -> str:
        fused = [len(u) for u in units if len(u) > 1]
        if not fused:
            return " (none could be fused)"
        return f" ({sum(fused)} fused in {len(fused)} stack{'s' if len(fused) > 1 else ''})"
