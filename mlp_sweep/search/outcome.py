"""What a trial's jobs (one per seed) came to: the values to tell the study, the epoch its
pruner stopped it at, a failure, or a run left unfinished that --resume continues.

A job's run record is read in one place, `trial_record`; everything else here judges what it
returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_sweep.run.reader import Record, read_run
from mlp_sweep.search.objectives import DEFAULT_OBJECTIVE, record_values
from mlp_sweep.status import Status

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn

# A run stopped with one of these did not finish by itself: its trial stays open to resume.
# (mlp_sweep.run.reader settles a record left `running`: `incomplete` when its process died,
# `running elsewhere` while one still holds it.)
UNFINISHED = (Status.INCOMPLETE, Status.RUNNING_ELSEWHERE, Status.INTERRUPTED, Status.TIMEOUT)


def trial_record(sweep_dir: Path, number: int) -> Record:
    """Job `number`'s run record (mlp_sweep.run.reader's), readable or not."""
    return read_run(sweep_dir / str(number))


def returned_value(job: JobReturn) -> tuple[float | None, str]:
    """The job's value to tell Optuna, or None and why the trial failed."""
    try:
        value = job.return_value  # re-raises what the task raised
    except Exception as err:
        return None, f"raised {type(err).__name__}: {err}"
    if value is None or isinstance(value, str | bytes | bool):
        return None, f"returned {value!r}, not a number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"returned {value!r}, not a number"
    return (number, "") if math.isfinite(number) else (None, f"returned {number}")


def job_values(
    job: JobReturn, record: Record, objectives: Sequence[str]
) -> tuple[list[float] | None, str]:
    """The job's value of each objective, or None and why there is none. A job that did not
    finish has none (its return says why); the default objective is its return, any other is
    read from its run's record."""
    value, why = returned_value(job)
    if value is None:
        return None, why
    if list(objectives) == [DEFAULT_OBJECTIVE]:
        return [value], ""
    values = record_values(record.fields, objectives)
    if values is None:
        return None, f"left no finite {', '.join(objectives)} in its record"
    return values, ""


def pruned_at(record: Record) -> int | None:
    """The epoch the pruner stopped the run at, if it did."""
    return record.epochs_done if record.status is Status.PRUNED else None


@dataclass(frozen=True)
class Outcome:
    """A trial's verdict, the first that applies: pruned, open (not finished, so not told),
    failed, else its values."""

    pruned_at: int | None = None  # the earliest epoch a seed's run was pruned at
    open: bool = False
    failed: tuple[int, str] | None = None  # the first job without a value, and why
    rows: list[list[float]] = field(default_factory=list)  # each job's values

    @property
    def means(self) -> list[float]:
        """Each objective's mean over the trial's jobs (its seeds)."""
        return [sum(column) / len(column) for column in zip(*self.rows, strict=True)]


def _unfinished(record: Record) -> bool:
    """A record of ours that says its run stopped before its end (no record: another app's
    task, judged by its return)."""
    return record.readable and record.status in UNFINISHED


def judge(
    sweep_dir: Path,
    jobs: Mapping[int, JobReturn],
    objectives: Sequence[str],
    worker_died: Callable[[JobReturn], bool],
) -> Outcome:
    """What the trial's jobs (by job number) came to. A job without a value is resumable
    rather than failed when its worker died (the launcher could not say how it ended) or its
    run's record says it stopped unfinished (running when its worker died, interrupted,
    timeout); a run that failed by itself would fail again. A job with no record of ours
    (another app's task) is judged by its return."""
    records = {j: trial_record(sweep_dir, j) for j in sorted(jobs)}
    epochs = [e for record in records.values() if (e := pruned_at(record)) is not None]
    outcomes = {j: job_values(jobs[j], record, objectives) for j, record in records.items()}
    missing = {j: why for j, (values, why) in outcomes.items() if values is None}
    if epochs:
        return Outcome(pruned_at=min(epochs))
    if any(worker_died(jobs[j]) or _unfinished(records[j]) for j in missing):
        return Outcome(open=True)
    if missing:
        return Outcome(failed=next(iter(missing.items())))
    return Outcome(rows=[values for values, _ in outcomes.values() if values is not None])
