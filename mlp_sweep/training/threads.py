"""How many torch threads a run gets: jobs x threads never more than the cores.

A launcher that runs jobs side by side gives each worker its share in MLP_SWEEP_THREADS;
SLURM gives a job its cpus_per_task in SLURM_CPUS_PER_TASK; a run on its own gets every core
this process may use. `trainer.threads=N` overrides all of these.
"""

from __future__ import annotations

import os

from mlp_sweep.config import THREADS_AUTO as AUTO
from mlp_sweep.config import parse_threads as parse

__all__ = ["AUTO", "ENV", "budget", "cores", "parse", "resolve", "split"]

ENV = "MLP_SWEEP_THREADS"


def cores() -> int:
    """CPUs this process may run on (its affinity mask: taskset, cgroups, SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def budget() -> int:
    """This process's share of the cores when threads are left to auto."""
    for name in (ENV, "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return cores()


def resolve(value: object) -> int:
    return parse(value) or budget()


def split(
    n_jobs: int, max_workers: int | None, threads: int | None, available: int | None = None
) -> tuple[int, int]:
    """(workers, threads per worker) for n_jobs jobs on this machine's cores (or `available`).

    max_workers caps the workers (None: as many as fit); threads is the jobs' explicit
    trainer.threads (None: auto, the cores shared out evenly).
    """
    available = available or cores()
    fit = max(1, available // (threads or 1))
    workers = max(1, min(n_jobs, fit, max_workers or fit))
    return workers, threads or max(1, available // workers)
