"""Where a search keeps its Optuna study, and the pruners it may use.

Storage: by default a journal file, `<sweep dir>/optuna.journal` (Optuna's JournalStorage on a
JournalFileBackend). Every trial reports its epochs to the study from its own process (a pool
worker, a SLURM job), so the study has many writers at once. Optuna's journal takes a file lock
for each append, which works across processes and on the shared filesystems SLURM uses, and
cannot hit SQLite's "database is locked" (Optuna's FAQ) under concurrent writers. A study begun
before pruning existed, `<sweep dir>/optuna.db`, is kept where it is and resumed from there; a
`hydra.sweeper.storage` URL is used as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # optuna is imported when a search runs, never to list the configs
    from optuna import Study
    from optuna.pruners import BasePruner
    from optuna.storages import BaseStorage

JOURNAL_FILE = "optuna.journal"
SQLITE_FILE = "optuna.db"  # where a search kept its study before the journal


class PrunerName(StrEnum):
    none = "none"
    median = "median"  # MedianPruner: below the median of earlier trials at the same epoch
    asha = "asha"  # SuccessiveHalvingPruner (asynchronous successive halving)
    hyperband = "hyperband"  # HyperbandPruner: several ASHA brackets


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
