"""Limits checked before any job starts: how many jobs a sweep may have, and whether its runs
fit in memory side by side. Each refusal is one line with the numbers and the way on.

A sweep's size is counted from its overrides (hydra_compat.grid_size), before its jobs are
listed: past MAX_JOBS the check of every job alone would take minutes and gigabytes. Memory is
each job's estimate (mlp_sweep.training.memory) times the runs the launcher keeps at once on
one machine, against the machine's memory (or a SLURM job's mem_gb).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from mlp_sweep import hydra_compat
from mlp_sweep.config import Config
from mlp_sweep.errors import MlpSweepError
from mlp_sweep.launch import gpu_slots
from mlp_sweep.training import gpus, memory, threads
from mlp_sweep.training.memory import RunMemory, size_text

# The most jobs a sweep may have unless the environment says otherwise: its check takes ~1 ms
# and ~1 kB a job here, so 100,000 jobs are ~2 minutes and ~100 MB before the first run starts.
MAX_JOBS = 100_000
MAX_JOBS_ENV = "MLP_SWEEP_MAX_JOBS"


class LimitError(MlpSweepError):
    """A sweep past a limit: too many jobs, or runs that cannot fit in memory."""


def max_jobs() -> int:
    text = os.environ.get(MAX_JOBS_ENV, "").strip()
    if not text:
        return MAX_JOBS
    if not text.isdigit() or int(text) < 1:
        raise LimitError(
            f"{MAX_JOBS_ENV}={text}: must be a whole number >= 1 (the most jobs a sweep may "
            f"have; unset: {MAX_JOBS})"
        )
    return int(text)


def check_grid(overrides: list[Override]) -> int:
    """The number of jobs these grid overrides make, counted without making them; LimitError
    past max_jobs()."""
    jobs, limit = hydra_compat.grid_size(overrides), max_jobs()
    if jobs <= limit:
        return jobs
    sizes = {o.get_key_element(): hydra_compat.sweep_size(o) for o in overrides}
    swept = ", ".join(f"{key}: {n} values" for key, n in sizes.items() if n > 1)
    raise LimitError(
        f"the sweep makes {jobs} jobs ({swept}), more than the limit of {limit}; split it "
        f"into sweeps of at most {limit} jobs, or raise the limit: {MAX_JOBS_ENV}={jobs}"
    )


# hydra.launcher._target_ endings: mlp_sweep's launchers whose workers share this machine,
# and the SLURM launchers (ours and Hydra's submitit), whose jobs each get mem_gb elsewhere.
POOLS = ("mlp_sweep_launchers.parallel_launcher.ParallelLauncher",)
FUSED = "mlp_sweep_launchers.fused_launcher.FusedLauncher"
SLURM = (".SlurmLauncher", ".SubmititSlurmLauncher")


@dataclass(frozen=True)
class Launcher:
    """What the memory check needs of hydra.launcher."""

    pool: bool = False  # workers side by side on this machine (parallel, fused)
    n_jobs: int | None = None  # the workers asked for (None: as the cores allow)
    group: int = 1  # the most runs one worker holds at once (a fused stack's max_group)
    slurm: bool = False  # each job on a cluster node, not here
    slurm_gb: float | None = None  # a SLURM job's mem_gb: the memory each job gets
    gpus: object = gpu_slots.AUTO  # hydra.launcher.gpus of a pool (checked by parse_gpus)
    jobs_per_gpu: object = 1  # hydra.launcher.jobs_per_gpu of a pool

    @classmethod
    def of(cls, launcher: DictConfig | None) -> Launcher:
        """From the composed hydra.launcher; None: a single run (one job, here)."""
        if launcher is None:
            return cls()
        target = str(launcher.get("_target_", ""))
        if target.endswith(SLURM):
            gb = launcher.get("mem_gb")
            known = isinstance(gb, int | float) and not isinstance(gb, bool) and gb > 0
            return cls(slurm=True, slurm_gb=float(gb) if known else None)
        fused = target.endswith(FUSED)
        if not fused and not target.endswith(POOLS):
            return cls()  # Hydra's basic launcher, or another's: one job at a time here
        n_jobs, group = launcher.get("n_jobs"), 1
        if fused and launcher.get("fuse") != "never":  # as FuseGroups reads max_group
            most = launcher.get("max_group")
            group = max(2, most) if isinstance(most, int) else 16
        placing = launcher.get("gpus", gpu_slots.AUTO), launcher.get("jobs_per_gpu", 1)
        gpu_slots.parse_gpus(placing[0]), gpu_slots.parse_per_gpu(placing[1])  # one line if wrong
        return cls(
            pool=True,
            n_jobs=n_jobs if isinstance(n_jobs, int) and n_jobs >= 1 else None,
            group=group,
            gpus=placing[0],
            jobs_per_gpu=placing[1],
        )


class MemoryCheck:
    """Each job's memory estimate, added as the jobs are checked; check() then refuses a sweep
    whose runs at once cannot fit."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.runs: dict[str, Counter[RunMemory]] = {}  # by where they run: "host", "cuda:N"
        self.named: dict[RunMemory, str] = {}  # a job with each estimate, to name it
        self.jobs = 0
        self.threads: int | None = None  # the largest explicit trainer.threads
        self.devices: dict[str, None] = {}  # every job's `device`, in order

    def add(self, cfg: Config, overrides: list[str]) -> None:
        run = memory.run_memory(cfg)
        device = str(cfg.device).strip().lower()
        self.devices[device] = None
        self.runs.setdefault(device if device.startswith("cuda") else "host", Counter())[run] += 1
        if run not in self.named:
            shown = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
            self.named[run] = " ".join(shown) or "the default config"
        self.jobs += 1
        asked = threads.parse(cfg.trainer.threads)
        if asked and (self.threads is None or asked > self.threads):
            self.threads = asked

    def check(self) -> None:
        slots = None
        if self.launcher.pool:  # a GPU that is not there, a job naming cuda:1: one line
            slots = gpu_slots.plan(
                self.launcher.gpus,
                self.launcher.jobs_per_gpu,
                self.devices,
                threads.cores(),
                self.threads,
            )
        placed: Counter[RunMemory] = Counter()
        for where, runs in self.runs.items():
            if slots is not None and where != "host":
                placed.update(runs)  # every GPU job may land on any slot's GPU
            else:
                self._check(where, runs)
        if placed:
            assert slots is not None
            self._check_slots(placed, slots)

    def _check_slots(self, runs: Counter[RunMemory], slots: gpu_slots.Slots) -> None:
        """Refuse jobs_per_gpu workers (each holding a stack of up to `group` runs) that
        cannot fit in one GPU's memory, the smallest of the slots' GPUs."""
        by_entry = {gpu.entry: gpu for gpu in gpus.visible()}
        sized = [by_entry[d] for d in dict.fromkeys(slots.devices) if d in by_entry]
        sized = [gpu for gpu in sized if gpu.memory is not None]
        if not sized:
            return  # nvidia-smi did not say: the runs find out
        gpu = min(sized, key=lambda g: g.memory or 0)
        available = gpu.memory or 0
        jobs = sum(runs.values())

        def need(workers: int) -> int:
            at_once = min(jobs, workers * self.launcher.group)
            return memory.peak(runs, at_once, workers) + workers * gpu_slots.CONTEXT_BYTES

        per_gpu = slots.per_gpu
        if need(per_gpu) <= available:
            return
        fits = [k for k in range(per_gpu - 1, 0, -1) if need(k) <= available]
        biggest = max(runs, key=lambda run: run.total)
        way = f"choose jobs_per_gpu={fits[0]} or fewer" if fits else "give it a smaller model"
        stacks = f", stacks of up to {self.launcher.group}" if self.launcher.group > 1 else ""
        asked = self.launcher.jobs_per_gpu
        shown = f"{asked} ({per_gpu})" if asked == gpu_slots.AUTO else str(asked)
        raise LimitError(
            f"{gpu_slots.PER_GPU_KEY}={shown}: {per_gpu} workers on one GPU{stacks} need "
            f"{size_text(need(per_gpu))} ({size_text(biggest.total)} a run at most: "
            f"{biggest.parts()}; {size_text(gpu_slots.CONTEXT_BYTES)} a worker for CUDA), "
            f"more than GPU {gpu.label()}'s {size_text(available)}; {way}"
        )

    def _check(self, where: str, runs: Counter[RunMemory]) -> None:
        launcher = self.launcher
        if launcher.slurm:  # each job on a node of its own, with mem_gb where it says
            if where == "host" and launcher.slurm_gb is not None:
                self._fit_one(runs, int(launcher.slurm_gb * 2**30), "slurm")
            return
        available = memory.host_memory() if where == "host" else _gpu_memory(where)
        if available is None:
            return  # CUDA not initialised in this process: its memory is not asked here
        self._fit_one(runs, available, where)
        workers = 1
        if launcher.pool:
            workers, _ = threads.split(self.jobs, launcher.n_jobs, self.threads)

        def need(k: int, group: int) -> int:
            return memory.peak(runs, min(self.jobs, k * group), k)

        needed = need(workers, launcher.group)
        if needed <= available:
            return
        fits = [k for k in range(workers - 1, 0, -1) if need(k, launcher.group) <= available]
        if fits:
            way = f"hydra.launcher.n_jobs={fits[0]}"
        else:  # one worker's stack is too much: smaller stacks, or none
            groups = [g for g in range(launcher.group - 1, 1, -1) if need(1, g) <= available]
            way = "hydra.launcher.n_jobs=1 " + (
                f"hydra.launcher.max_group={groups[0]}" if groups else "hydra.launcher.fuse=never"
            )
        at_once = min(self.jobs, workers * launcher.group)
        biggest = max(runs, key=lambda run: run.total)
        raise LimitError(
            f"{at_once} runs at once ({self._workers_text(workers)}) need "
            f"{size_text(needed)} of memory, {size_text(biggest.total)} a run at most "
            f"({biggest.parts()}), more than {_where_text(where)} {size_text(available)}; "
            f"run fewer at once: {way}, or give it a smaller model"
        )

    def _workers_text(self, workers: int) -> str:
        launcher = self.launcher
        asked = f"hydra.launcher.n_jobs={launcher.n_jobs or 'null'}"
        stacks = f", stacks of up to {launcher.group}" if launcher.group > 1 else ""
        return f"{workers} worker{'s' if workers > 1 else ''} for {asked}{stacks}"

    def _fit_one(self, runs: Counter[RunMemory], available: int, where: str) -> None:
        """Refuse a sweep whose largest run cannot fit even alone."""
        biggest = max(runs, key=lambda run: run.total)
        alone = memory.peak(runs, 1, 1)
        if alone <= available:
            return
        if where == "slurm":
            way = f"a larger hydra.launcher.mem_gb={math.ceil(alone / 2**30) + 1}"
        else:
            way = _smaller(biggest)
        raise LimitError(
            f"a run of {self.named[biggest]} needs {size_text(alone)} of memory "
            f"({biggest.parts()}), more than {_where_text(where)} {size_text(available)}; "
            f"{way}"
        )


def _gpu_memory(device: str) -> int | None:
    """A CUDA device's memory: torch's where this process initialised CUDA already, else
    nvidia-smi's (mlp_sweep.training.gpus), without initialising it."""
    known = memory.gpu_memory(device)
    if known is not None:
        return known
    seen = gpus.visible()
    _, _, index = device.partition(":")
    number = int(index) if index.isdigit() else 0
    return seen[number].memory if number < len(seen) else None


def _where_text(where: str) -> str:
    if where == "host":
        return "this machine's"
    if where == "slurm":
        return "a SLURM job's hydra.launcher.mem_gb:"
    return f"{where}'s"


def _smaller(run: RunMemory) -> str:
    """The way on for a run too large alone: shrink what takes the most."""
    model = run.parameters + run.gradients + run.optimizer
    if model >= max(run.activations, run.data):
        return "give it a smaller model (model.hidden)"
    if run.activations >= run.data:
        return "give it a smaller trainer.batch_size or trainer.eval_batch_size"
    return "give it less data (data.limit_train, data.limit_test)"
