"""A search's space: Hydra's sweep overrides as Optuna distributions, the grid a discrete space
makes, and the overrides of each trial's jobs (one job per seed).

Optuna is imported inside the functions that need it: Hydra imports the sweeper plugin, and so
this module, at every start-up, with or without the `search` extra.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlp_sweep.errors import MlpSweepError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from hydra.core.utils import JobReturn
    from optuna.distributions import BaseDistribution


class SearchError(MlpSweepError):
    """A search that cannot run as given (its space, seeds or study): one line to act on."""


# key -> its fixed override ("key=value", given to every trial) or the distribution to sample.
Space = dict[str, "str | BaseDistribution"]
# The points of a discrete space to run in order: each a key -> value for every sampled key.
Grid = list[dict[str, Any]]
# Trial (or job) number -> the overrides of its job.
Jobs = dict[int, list[str]]


def parse_space(overrides: Sequence[Override]) -> Space:
    """Hydra overrides -> the search space; a later override of a key replaces an earlier one."""
    from hydra.core.override_parser.types import IntervalSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: Space = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_discrete_sweep():  # a,b,c  choice(...)  range(...)  glob(...)
            space[key] = CategoricalDistribution(list(override.sweep_string_iterator()))
        elif override.is_interval_sweep():
            interval = override.value()
            assert isinstance(interval, IntervalSweep)
            log_scale = "log" in interval.tags
            if isinstance(interval.start, int) and isinstance(interval.end, int):  # int(...)
                space[key] = IntDistribution(interval.start, interval.end, log=log_scale)
            else:
                assert interval.start is not None and interval.end is not None
                space[key] = FloatDistribution(interval.start, interval.end, log=log_scale)
        elif override.is_delete() and override.value() is None:
            space[key] = key
        else:
            space[key] = f"{key}={override.get_value_element_as_str()}"
    return space


def sampled(space: Space) -> dict[str, BaseDistribution]:
    """The keys a trial draws values for, and their distributions (the rest are fixed)."""
    return {key: d for key, d in space.items() if not isinstance(d, str)}


def trial_overrides(space: Space, params: Mapping[str, Any]) -> list[str]:
    """The job's overrides: the fixed ones and the trial's sampled values, in the space's order."""
    missing = [key for key in sampled(space) if key not in params]
    if missing:
        raise SearchError(
            f"a trial left running has no value for {missing}: was the space changed?"
        )
    return [d if isinstance(d, str) else f"{key}={params[key]}" for key, d in space.items()]


def grid_points(space: Space, limit: int) -> Grid | None:
    """The first `limit` combinations when every param is discrete, in Hydra's sweep order."""
    from optuna.distributions import CategoricalDistribution

    dists = sampled(space)
    choices = [d.choices for d in dists.values() if isinstance(d, CategoricalDistribution)]
    if len(choices) < len(dists):
        return None
    points = itertools.islice(itertools.product(*choices), limit)
    return [dict(zip(dists, point, strict=True)) for point in points]


def planned_grid(space: Space, n_trials: int, grid_sampler: bool) -> Grid | None:
    """The points to run in order, or None where the sampler chooses: the grid sampler's first
    n_trials points, or any sampler's whole grid when it fits in n_trials (sampling could only
    repeat its points)."""
    grid = grid_points(space, n_trials + 1)  # None when a param is continuous
    if grid_sampler:
        if grid is None:
            swept = list(sampled(space))
            raise SearchError(f"hydra.sweeper.sampler.name=grid needs discrete sweeps: {swept}")
        return grid[:n_trials]
    return None if grid is None or len(grid) > n_trials else grid


def first_seed(space: Space, seeds: int, config_seed: Any) -> int:
    """The seed of each trial's first run when trials train on several seeds (the next ones
    follow it): a fixed seed=N from the command line, else the config's. The seed then leaves
    the space: each job gets its own."""
    if seeds == 1:
        return int(config_seed or 0)
    given = space.pop("seed", None)
    if given is not None and not isinstance(given, str):
        raise SearchError(
            f"hydra.sweeper.seeds={seeds} gives each trial its own seeds: take seed "
            "out of the search space (seed=N sets the first one)"
        )
    try:
        return int((given.partition("=")[2] if given else config_seed) or 0)
    except (TypeError, ValueError):
        raise SearchError(f"{given}: seed must be a whole number") from None


@dataclass
class SeedJobs:
    """A search's jobs, `seeds` to a trial: trial t's are jobs t*S ... t*S+S-1, seeds `first`,
    first+1, ... (so job // S is the trial), and their returns, held until the trial's last."""

    seeds: int
    first: int = 0
    back: dict[int, dict[int, JobReturn]] = field(
        default_factory=dict
    )  # trial -> its jobs' returns

    def of(self, trials: Jobs) -> Jobs:
        """The trials' jobs by job number: each trial's own number when seeds=1."""
        if self.seeds == 1:
            return dict(trials)
        return {
            number * self.seeds + k: [*overrides, f"seed={self.first + k}"]
            for number, overrides in trials.items()
            for k in range(self.seeds)
        }

    def returned(self, job_number: int, job: JobReturn) -> tuple[int, dict[int, JobReturn]] | None:
        """A job is back: its trial and the trial's returns once all of them are."""
        number = job_number // self.seeds
        jobs = self.back.setdefault(number, {})
        jobs[job_number] = job
        return None if len(jobs) < self.seeds else (number, self.back.pop(number))


def consecutive(numbers: Sequence[int], size: int) -> Iterator[list[int]]:
    """Job numbers -> runs of consecutive numbers at most `size` long, one launch each (a
    launcher numbers a batch's jobs from its first)."""
    run: list[int] = []
    for number in sorted(numbers):
        if run and (number != run[-1] + 1 or len(run) == size):
            yield run
            run = []
        run.append(number)
    if run:
        yield run


def unsampled(space: Space, params: Mapping[str, Any]) -> list[str] | None:
    """The values a trial got when it lacks some (a sweep killed between two of its draws:
    Optuna stores each value as it is drawn), else None."""
    got = [key for key in sampled(space) if key in params]
    return None if len(got) == len(sampled(space)) else got
