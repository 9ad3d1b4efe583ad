"""Which of a sweep's jobs train as one stacked model (hydra/launcher=fused).

Jobs whose configs differ only in what a stack allows (mlp_sweep.training.stacked.fuse_key)
form a group; a group of at least min_group jobs is cut into even chunks of at most max_group,
at least as many chunks as there are workers where the group allows, so a stack gets the
workers and threads the jobs alone would have had. fuse=always stacks every such chunk,
fuse=never none, fuse=auto a group only where a stack, timed here before the sweep starts,
trains faster per run than the runs alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlp_sweep.config import Config

Job = tuple[int, list[str]]  # a job's number and overrides, as the launcher numbers them
FUSE = ("auto", "always", "never")
# fuse=auto fuses a chunk only if its measured step is this much faster per run than alone:
# below it, timing noise on a busy machine could make the sweep slower than the default.
MARGIN = 1.1


@dataclass
class FuseGroups:
    """The launcher's settings, and what fuse=auto measured since the last describe()."""

    fuse: str = "auto"
    min_group: int = 2
    max_group: int = 16
    measured: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fuse not in FUSE:
            raise ValueError(f"hydra.launcher.fuse={self.fuse}: choose one of {', '.join(FUSE)}")
        self.min_group, self.max_group = max(2, self.min_group), max(2, self.max_group)

    def units(
        self, jobs: list[Job], configs: dict[int, Config], workers: int, per_job: int
    ) -> list[list[Job]]:
        """What each worker payload holds: a stack's jobs, or one job. `configs`: each job's
        config by number, missing where it could not be read (that job runs alone and says
        what is wrong in its record); `workers` and `per_job`: the pool the jobs alone get."""
        from mlp_sweep.training.stacked import fuse_key

        groups: dict[object, list[Job]] = {}
        alone = []
        for job in jobs:
            cfg = configs.get(job[0])
            try:
                key = None if cfg is None else fuse_key(cfg)
            except Exception:  # the job itself will say what is wrong, in its record
                key = None
            if key is None or self.fuse == "never":
                alone.append([job])
            else:
                groups.setdefault(key, []).append(job)
        units = []
        for members in groups.values():
            if len(members) < self.min_group:
                units += [[job] for job in members]
                continue
            members.sort(key=lambda job: configs[job[0]].seed)  # one seed a stack where possible
            n_chunks = max(
                -(-len(members) // self.max_group), min(workers, len(members) // self.min_group)
            )
            size = -(-len(members) // n_chunks)
            chunks = [members[i : i + size] for i in range(0, len(members), size)]
            if self.fuse == "auto" and not self.pays([configs[i] for i, _ in chunks[0]], per_job):
                units += [[job] for job in members]
                continue
            units += chunks
        return units + alone

    def pays(self, cfgs: list[Config], threads: int) -> bool:
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

    def describe(self, units: list[list[Job]]) -> str:
        """The launch line's note on stacks and timings: " (6 fused in 2 stacks; measured ...)"."""
        measured = "; measured " + "; ".join(self.measured) if self.measured else ""
        self.measured = []
        fused = [len(u) for u in units if len(u) > 1]
        if not fused:
            return f" (none fused{measured})"
        stacks = f"{len(fused)} stack{'s' if len(fused) > 1 else ''}"
        return f" ({sum(fused)} fused in {stacks}{measured})"
