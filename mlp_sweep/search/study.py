"""Where a search keeps its Optuna study, the pruners and samplers it may use, and how the
sweeper opens it and asks it for trials.

Storage: by default a journal file, `<sweep dir>/optuna.journal` (Optuna's JournalStorage on a
JournalFileBackend). Every trial reports its epochs to the study from its own process (a pool
worker, a SLURM job), so the study has many writers at once. Optuna's journal takes a file lock
for each append, which works across processes and on the shared filesystems SLURM uses, and
cannot hit SQLite's "database is locked" (Optuna's FAQ) under concurrent writers. A sweep
folder whose study is an SQLite file, `<sweep dir>/optuna.db`, is resumed from that file; a
`hydra.sweeper.storage` URL is used as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_sweep.search.space import Grid, SearchError, Space, sampled, trial_overrides, unsampled

if TYPE_CHECKING:  # optuna is imported when a search runs, never to list the configs
    from optuna import Study
    from optuna.pruners import BasePruner
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

JOURNAL_FILE = "optuna.journal"
SQLITE_FILE = "optuna.db"  # where a search kept its study before the journal
STUDY_FILES = (JOURNAL_FILE, SQLITE_FILE)  # a sweep folder with one of these holds a search


class PrunerName(StrEnum):
    none = "none"
    median = "median"  # MedianPruner: below the median of earlier trials at the same epoch
    asha = "asha"  # SuccessiveHalvingPruner (asynchronous successive halving)
    hyperband = "hyperband"  # HyperbandPruner: several ASHA brackets


class SamplerName(Enum):
    tpe = "tpe"
    random = "random"
    grid = "grid"
    nsga2 = "nsga2"  # Optuna's NSGAIISampler: a genetic search, for several objectives


@dataclass(frozen=True)
class PrunerSpec:
    """A pruner by name and knobs, as plain values a trial's process rebuilds it from."""

    name: PrunerName = PrunerName.none
    min_epochs: int = 1  # no trial is pruned before it has trained this many epochs
    reduction_factor: int = 3  # asha, hyperband: 1 in this many goes on at each rung
    warmup_trials: int = 5  # median: trials that finish before any is pruned
    max_epochs: int = 10  # hyperband: the longest a trial trains (trainer.epochs)

    def build(self) -> BasePruner:
        import optuna

        if self.name is PrunerName.median:
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.warmup_trials, n_warmup_steps=self.min_epochs
            )
        if self.name is PrunerName.asha:
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.min_epochs, reduction_factor=self.reduction_factor
            )
        if self.name is PrunerName.hyperband:
            return optuna.pruners.HyperbandPruner(
                min_resource=self.min_epochs,
                max_resource=max(self.max_epochs, self.min_epochs),
                reduction_factor=self.reduction_factor,
            )
        return optuna.pruners.NopPruner()


def storage_spec(sweep_dir: Path, storage: str | None) -> str:
    """The study's storage as one string: a URL as given, else the sweep's journal file (or
    its SQLite file, for a search begun before the journal)."""
    if storage:
        return storage
    sweep_dir = Path(sweep_dir).resolve()
    if (sweep_dir / SQLITE_FILE).exists() and not (sweep_dir / JOURNAL_FILE).exists():
        return f"sqlite:///{sweep_dir / SQLITE_FILE}"
    return str(sweep_dir / JOURNAL_FILE)


def open_storage(spec: str) -> str | BaseStorage:
    """What optuna.create_study / load_study take for `spec` (see storage_spec)."""
    if "://" in spec:
        return spec
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(spec))


def load_study(sweep_dir: Path | str, study_name: str = "mlp_sweep") -> Study:
    """A finished or running search's study, read from its sweep folder (for notebooks and
    optuna's own tools): `load_study("outputs/.../search").trials_dataframe()`."""
    import optuna

    storage = open_storage(storage_spec(Path(sweep_dir), None))
    return optuna.load_study(study_name=study_name, storage=storage)


def open_study(
    storage: str,
    name: str,
    directions: Sequence[str],
    pruner: PrunerSpec,
    sampler: SamplerName,
    seed: int | None,
) -> Study:
    """The sweeper's study, created or loaded to resume, with its pruner and sampler."""
    import optuna
    from optuna.study import StudyDirection

    # Optuna's lines go through Hydra's logging (its console format and log file).
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(storage),
        directions=[StudyDirection[way.upper()] for way in directions],
        load_if_exists=True,
        pruner=pruner.build(),
    )
    created = [d.name.lower() for d in study.directions]
    if created != list(directions):
        raise SearchError(
            f"study '{name}' in {storage} was created to {','.join(created)}; "
            f"hydra.sweeper.direction={','.join(directions)}"
        )
    # Offset by the trials already there: a resumed sweep must not redraw the first run's
    # random points, and a fresh one with the same seed still repeats exactly.
    seed = None if seed is None else seed + len(study.get_trials(deepcopy=False))
    if sampler == SamplerName.tpe:  # one objective or several (MOTPE)
        study.sampler = optuna.samplers.TPESampler(seed=seed)
    elif sampler == SamplerName.nsga2:
        study.sampler = optuna.samplers.NSGAIISampler(seed=seed)
    else:  # random; a grid enqueues its points, so the sampler never draws
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    return study


def ask(study: Study, space: Space, grid: Grid | None) -> tuple[int, list[str]]:
    """A new trial of the space, the grid's next point or the sampler's draw: its number and
    its job's overrides."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if grid is not None and not waiting:
        # The first grid point no trial has taken (a trial failed before it got its values
        # took none): each point once, in order.
        taken = [t.params for t in study.get_trials(deepcopy=False) if t.params]
        study.enqueue_trial(next(point for point in grid if point not in taken))
    trial = study.ask(sampled(space))
    return trial.number, trial_overrides(space, trial.params)


def counted(study: Study, space: Space) -> int:
    """Finished trials (complete, failed, pruned) that got all their values: one that failed
    before that did no work."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False, states=finished)
    drawn = sampled(space)
    return sum(1 for t in trials if all(k in t.params for k in drawn))


def left_running(
    study: Study, space: Space, sweep_dir: Path, seeds: int
) -> tuple[list[FrozenTrial], list[tuple[int, list[str]]]]:
    """The trials a killed sweep left RUNNING, to run again with their own numbers and params;
    and those it was killed asking for, before they had all their values (Optuna stores each
    as it is drawn), with the values they got. One of those without a folder for its first
    job (nobody worked on it) is told FAIL: a rerun would need the values it never got."""
    from optuna.trial import TrialState

    left: list[FrozenTrial] = []
    lost: list[tuple[int, list[str]]] = []  # each trial's number and the values it got
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        got = unsampled(space, trial.params)
        if got is None or (sweep_dir / str(trial.number * seeds)).exists():
            left.append(trial)
        else:
            study.tell(trial.number, state=TrialState.FAIL)
            lost.append((trial.number, got))
    return left, lost
