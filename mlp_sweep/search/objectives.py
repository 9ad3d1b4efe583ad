"""What a search optimizes: one or more numeric fields of each run's record, each with a
direction, and which trials no other trial beats on all of them (the Pareto front).

No torch and no Optuna here: the summary marks a search's Pareto trials from the run folders
alone, with the same rule the sweeper prints on its console.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlp_sweep.errors import MlpSweepError

# The record's numeric fields a search may optimize (metrics.json, the summary's columns).
OBJECTIVES = (
    "best_test_acc",  # the default: what the task returns
    "test_acc",  # the last epoch's
    "test_loss",
    "train_loss",
    "train_seconds",
    "n_params",  # the model's trainable parameters: a search over hidden sizes
    "best_epoch",
    "epochs_done",
)
DIRECTIONS = ("maximize", "minimize")
DEFAULT_OBJECTIVE = "best_test_acc"


class ObjectiveError(MlpSweepError):
    """hydra.sweeper.objective / direction that cannot be a study's objectives."""


def as_list(value: Any) -> list[str]:
    """A key given as one value or a list (`maximize`, `[maximize,minimize]`) -> its strings."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        value = [value]
    return [str(getattr(item, "value", item)) for item in value]


def checked(objectives: Any, directions: Any) -> tuple[list[str], list[str]]:
    """The objectives and their directions, checked: known names, one direction each."""
    names = as_list(objectives) or [DEFAULT_OBJECTIVE]
    ways = as_list(directions)
    for name in names:
        if name not in OBJECTIVES:
            raise ObjectiveError(
                f"hydra.sweeper.objective={name}: not a numeric field of a run's record; "
                f"choose from {', '.join(OBJECTIVES)}"
            )
    for way in ways:
        if way not in DIRECTIONS:
            raise ObjectiveError(
                f"hydra.sweeper.direction={way}: choose from {', '.join(DIRECTIONS)}"
            )
    if len(ways) != len(names):
        raise ObjectiveError(
            f"hydra.sweeper.objective=[{','.join(names)}] needs one direction each, "
            f"hydra.sweeper.direction=[{','.join(ways)}] has {len(ways)}"
        )
    return names, ways


def record_values(record: Mapping[str, Any], objectives: Sequence[str]) -> list[float] | None:
    """The record's value of each objective, or None if one is missing or not finite."""
    values = []
    for name in objectives:
        value = record.get(name)
        if value is None or isinstance(value, bool | str):
            return None
        number = float(value)
        if not math.isfinite(number):
            return None
        values.append(number)
    return values


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """a is no worse than b on every objective and better on one."""
    better = False
    for x, y, way in zip(a, b, directions, strict=True):
        if way == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it."""
    return [not any(dominates(other, point, directions) for other in points) for point in points]
