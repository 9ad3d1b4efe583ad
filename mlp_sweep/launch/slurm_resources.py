"""What each SLURM job of a sweep asks for where hydra/launcher=slurm leaves it null: the cores
its run's torch threads use, and a GPU when the run trains on CUDA."""

from __future__ import annotations

from typing import Any


def slurm_resources(params: dict[str, Any], threads: int | None, device: str) -> dict[str, Any]:
    """The launcher's parameters with cpus_per_task and gpus_per_node filled in where null.

    threads: the largest trainer.threads any job of the array asks for (None: all auto, which
    is one core a job: the most runs per core); device: the sweep's `device`.

    A job on CUDA asks for one whole GPU (--gpus-per-node=1), unless `gres` or `gpus_per_task`
    says what it asks for instead: `gres=shard:1` shares a GPU between jobs on a cluster whose
    GPUs are cut into shards (SLURM's shard GRES; its shards per GPU decide how many jobs
    share one), and a GPU asked twice would be two.
    """
    filled = dict(params)
    if filled.get("cpus_per_task") is None:  # one array: the largest any job asks for
        filled["cpus_per_task"] = threads or 1
    if filled.get("gpus_per_node") is None:
        asked_otherwise = filled.get("gres") or filled.get("gpus_per_task")
        cuda = device.strip().lower().startswith("cuda")
        filled["gpus_per_node"] = 1 if cuda and not asked_otherwise else 0
    return filled
