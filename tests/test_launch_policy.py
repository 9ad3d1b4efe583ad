"""The launchers' decisions without Hydra: which jobs the fused launcher stacks
(mlp_sweep.launch.fuse_groups) and what a SLURM job asks for (mlp_sweep.launch.slurm_resources).
The sweeps themselves are tests/test_fused.py's and tests/test_slurm.py's."""

from __future__ import annotations

import pytest

from mlp_sweep.config import Config, OptimConfig, Optimizer
from mlp_sweep.launch.fuse_groups import FuseGroups
from mlp_sweep.launch.slurm_resources import slurm_resources


def sweep(n: int, optim: Optimizer = Optimizer.sgd) -> tuple[list, dict[int, Config]]:
    """n jobs that can share a stack (learning rates differ), seeds 2, 1, 0, 2, ..."""
    jobs = [(i, [f"optim.lr={0.01 * (i + 1)}"]) for i in range(n)]
    configs = {
        i: Config(optim=OptimConfig(name=optim, lr=0.01 * (i + 1)), seed=(2 - i) % 3)
        for i in range(n)
    }
    return jobs, configs


def sizes(units: list[list]) -> list[int]:
    return [len(u) for u in units]


@pytest.mark.parametrize(
    ("n", "workers", "max_group", "expected"),
    [
        (10, 1, 16, [10]),  # one worker: one stack
        (10, 2, 16, [5, 5]),  # a stack per worker
        (10, 1, 4, [4, 4, 2]),  # no stack past max_group
        (3, 4, 16, [3]),  # fewer than min_group per worker: as many stacks as it allows
    ],
    ids=["one-worker", "two-workers", "max-group", "few-jobs"],
)
def test_always_cuts_a_group_into_even_stacks(
    n: int, workers: int, max_group: int, expected: list[int]
) -> None:
    jobs, configs = sweep(n)
    units = FuseGroups("always", max_group=max_group).units(jobs, configs, workers, 1)
    assert sizes(units) == expected
    assert sorted(i for u in units for i, _ in u) == list(range(n))  # every job, once
    assert [configs[i].seed for i, _ in units[0]] == sorted(configs[i].seed for i, _ in units[0])


def test_never_and_unstackable_jobs_run_alone() -> None:
    jobs, configs = sweep(4)
    assert sizes(FuseGroups("never").units(jobs, configs, 1, 1)) == [1, 1, 1, 1]
    jobs, configs = sweep(4, Optimizer.adam)  # only SGD stacks
    assert sizes(FuseGroups("always").units(jobs, configs, 1, 1)) == [1, 1, 1, 1]
    jobs, configs = sweep(4)
    del configs[0]  # a config that could not be read: the job runs alone and says why
    assert sorted(sizes(FuseGroups("always").units(jobs, configs, 1, 1))) == [1, 3]


@pytest.mark.parametrize("fuse", ["always", "auto"])
def test_a_group_below_min_group_runs_alone_without_timing(fuse: str) -> None:
    jobs, configs = sweep(3)
    groups = FuseGroups(fuse, min_group=4)
    assert sizes(groups.units(jobs, configs, 1, 1)) == [1, 1, 1]
    assert groups.measured == []  # nothing to time: fuse=auto would not stack it anyway


def test_describe_says_what_was_stacked() -> None:
    groups = FuseGroups("always")
    assert groups.describe([[(0, [])], [(1, [])]]) == " (none fused)"
    assert groups.describe([[(0, []), (1, [])], [(2, []), (3, []), (4, [])]]) == (
        " (5 fused in 2 stacks)"
    )


def test_an_unknown_fuse_is_one_line_naming_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"^hydra.launcher.fuse=sometimes: choose one of auto, always, never$"
    ):
        FuseGroups("sometimes")


@pytest.mark.parametrize(
    ("params", "threads", "device", "cpus", "gpus"),
    [
        ({"cpus_per_task": None, "gpus_per_node": None}, None, "cpu", 1, 0),
        ({"cpus_per_task": None, "gpus_per_node": None}, 4, "cuda:1", 4, 1),
        ({"cpus_per_task": 8, "gpus_per_node": 2}, 4, "cpu", 8, 2),  # given: kept
    ],
    ids=["nulls-cpu", "nulls-cuda", "given"],
)
def test_slurm_resources_follow_threads_and_device_where_null(
    params: dict, threads: int | None, device: str, cpus: int, gpus: int
) -> None:
    filled = slurm_resources({**params, "mem_gb": 4}, threads, device)
    assert (filled["cpus_per_task"], filled["gpus_per_node"], filled["mem_gb"]) == (cpus, gpus, 4)
