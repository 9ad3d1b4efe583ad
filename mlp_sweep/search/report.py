"""The search's lines on the console: a trial's values as it is told, and the best trial (or
the Pareto front) at the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

    from mlp_sweep.search.outcome import Outcome


def pruner_off_line(pruner: str, objectives: int) -> str:
    """A pruner asked for where Optuna cannot prune: a study of several objectives."""
    return (
        f"hydra.sweeper.pruner={pruner} is off: Optuna prunes single-objective "
        f"studies only, and this one has {objectives} objectives"
    )


def outcome_line(number: int, outcome: Outcome, objectives: list[str], seeds: int) -> str:
    """What trial `number` came to, as it is told to the study (or left open)."""
    if outcome.pruned_at is not None:
        return f"trial {number}: pruned at epoch {outcome.pruned_at}"
    if outcome.open:
        return (
            f"trial {number} did not finish (its worker died, or it was stopped at "
            "its time limit); it stays open and --resume continues it"
        )
    if outcome.failed is not None:
        job_number, why = outcome.failed
        which = f" (seed job {job_number})" if seeds > 1 else ""
        return f"trial {number} failed: the job{which} {why}"
    return f"trial {number}: {describe(outcome.means, outcome.rows, objectives)}"


def resuming_line(numbers: list[int]) -> str:
    """The trials a killed sweep left running, run again first."""
    return f"resuming trials {numbers}, left running by a killed sweep"


def lost_line(number: int, got: list[str]) -> str:
    """A trial a killed sweep left with some of its values or none (study.left_running)."""
    values = f"only {', '.join(got)} of its values" if got else "no values"
    return (
        f"trial {number} was asked for but got {values} before the sweep was "
        "killed; marked failed, a new trial takes its place"
    )


def describe(means: list[float], rows: list[list[float]], objectives: list[str]) -> str:
    """`value 0.9812`, with seeds `value 0.9812 (mean of 3 seeds, sd 0.0011)`; several
    objectives by name."""
    parts = []
    for i, mean in enumerate(means):
        text = number(mean)
        if len(rows) > 1:
            sd = (sum((row[i] - mean) ** 2 for row in rows) / (len(rows) - 1)) ** 0.5
            text += f" (mean of {len(rows)} seeds, sd {sd:.2g})"
        parts.append(f"{objectives[i]} {text}" if len(means) > 1 else f"value {text}")
    return ", ".join(parts)


def number(value: float) -> str:
    """0.9704, 0.0001234, 79510 (a count such as n_params, whole)."""
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


def params_text(trial: FrozenTrial) -> str:
    """The trial's params as overrides, floats to 4 significant digits."""
    return " ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in trial.params.items()
    )


def best_lines(study: Study, objectives: Sequence[str]) -> list[str]:
    """The best trial, or with several objectives the Pareto-optimal ones: a headline, then
    one line per trial."""
    if len(study.directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.number)
        if not front:
            return ["no trial completed"]
        lines = [f"Pareto front: {len(front)} trial{'s' if len(front) > 1 else ''}"]
        for trial in front:
            values = ", ".join(
                f"{name} {number(value)}"
                for name, value in zip(objectives, trial.values, strict=True)
            )
            lines.append(f"  trial {trial.number}: {values} ({params_text(trial)})")
        return lines
    try:
        best = study.best_trial
    except ValueError:
        return ["no trial completed"]
    return [f"best trial {best.number}: value {best.value:.4g} ({params_text(best)})"]
