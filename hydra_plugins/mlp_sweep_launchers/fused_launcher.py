"""hydra/launcher=fused: a sweep's jobs that can share a stacked model train as one.

The parallel launcher with one change: jobs whose configs differ only in what fusing allows
(activation, init, learning rate, momentum, weight decay, logits activation; see
mlp_sweep.training.stacked.fuse_key) go to a worker together, where they train as one stacked model
(mlp_sweep.launch.stacked_group). Every job still goes through Hydra's run_job, so its folder, log,
callbacks and return value are what any launcher gives. Other apps' tasks, and jobs that
cannot be grouped, run exactly as under hydra/launcher=parallel.
"""

from __future__ import annotations

import logging

from .parallel_launcher import ParallelLauncher

log = logging.getLogger(__name__)


# fuse=auto fuses a chunk only if its measured step is this much faster per run than alone:
# below it, timing noise on a busy machine could make the sweep slower than the default.
MARGIN = 1.1


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
    ) -> None:
        super().__init__(n_jobs=n_jobs, retries=retries)
        if fuse not in ("auto", "always", "never"):
            raise ValueError(f"hydra.launcher.fuse={fuse}: choose one of auto, always, never")
        self.fuse = fuse
        self.min_group, self.max_group = max(2, min_group), max(2, max_group)
        self.measured: list[str] = []

    def units(self, jobs: list[tuple[int, list[str]]]) -> list[list[tuple[int, list[str]]]]:
        from mlp_sweep.config import to_config
        from mlp_sweep.launch.jobs import threads_asked
        from mlp_sweep.launch.task import task_config
        from mlp_sweep.training import threads
        from mlp_sweep.training.stacked import fuse_key

        assert self.config is not None and self.hydra_context is not None
        groups: dict[object, list[tuple[int, list[str]]]] = {}
        configs = {}
        alone = []
        loader = self.hydra_context.config_loader
        for job in jobs:
            config = loader.load_sweep_config(self.config, job[1])
            try:
                configs[job[0]] = cfg = to_config(task_config(config))
                key = fuse_key(cfg)
            except Exception:  # the job itself will say what is wrong, in its record
                key = None
            if key is None or self.fuse == "never":
                alone.append([job])
            else:
                groups.setdefault(key, []).append(job)
        # Run alone, the jobs would go `workers` at a time with `per_job` threads each; a stack
        # gets the same, so there are at least `workers` chunks where the jobs allow.
        wanted = threads_asked(self.config, [o for _, o in jobs])
        workers, per_job = threads.split(len(jobs), self.n_jobs, wanted)
        units = []
        for members in groups.values():
            members.sort(key=lambda job: configs[job[0]].seed)  # one seed a stack where possible
            n_chunks = max(
                -(-len(members) // self.max_group), min(workers, len(members) // self.min_group)
            )
            if n_chunks == 0:
                units += [[job] for job in members]
                continue
            size = -(-len(members) // n_chunks)
            chunks = [members[i : i + size] for i in range(0, len(members), size)]
            if self.fuse == "auto" and not self._pays([configs[i] for i, _ in chunks[0]], per_job):
                units += [[job] for job in members]
                continue
            units += chunks
        return units + alone

    def _pays(self, cfgs: list, threads: int) -> bool:
        """Whether a stack of these runs trains faster per run than each alone, measured here."""
        from mlp_sweep.training.stacked_sgd import step_seconds

        alone, fused = step_seconds(cfgs, threads)
        pays = alone >= MARGIN * fused
        self.measured.append(
            f"{len(cfgs)} runs at {threads} thread{'s' if threads > 1 else ''}: "
            f"{1000 * alone:.2f} ms a step alone, {1000 * fused:.2f} ms fused "
            f"({alone / fused:.2f}x): {'fused' if pays else 'run alone'}"
        )
        return pays

    def describe(self, units: list[list[tuple[int, list[str]]]]) -> str:
        measured = "; measured " + "; ".join(self.measured) if self.measured else ""
        self.measured = []
        fused = [len(u) for u in units if len(u) > 1]
        if not fused:
            return f" (none fused{measured})"
        stacks = f"{len(fused)} stack{'s' if len(fused) > 1 else ''}"
        return f" ({sum(fused)} fused in {stacks}{measured})"
