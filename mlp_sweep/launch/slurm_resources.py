"""What each SLURM job of a sweep asks for where hydra/launcher=slurm leaves it null: the cores
its run's torch threads use, and a GPU when the run trains on CUDA."""

from __future__ import annotations

from typing import Any


def slurm_resources(params: dict[str, Any], threads: int | None, device: str) -> dict[str, Any]:
    """The launcher's parameters with cpus_per_task and gpus_per_node filled in where null.

    threads: the largest trainer.threads any job of the array asks for (None: all auto, which
    is one core a job: the most runs per core); device: the sweep's `device`.
    """
    filled = dict(params)
    if filled.get("cpus_per_task") is None:  # one array: the largest any job asks for
        filled["cpus_per_task"] = threads or 1
    if filled.get("gpus_per_node") is None:
        filled["gpus_per_node"] = 1 if device.startswith("cuda") else 0
    return filled
