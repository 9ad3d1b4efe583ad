"""A trial's side of a search: each epoch's objective goes to the study as it trains, and the
study's pruner says whether the trial goes on.

The sweeper gives nothing to the job but its config: the job's own Hydra config holds the
sweeper's settings (storage, study name, pruner, objective) and its job number, which is the
trial's number (hydra_plugins/mlp_sweep_optuna). So a trial reports from wherever it trains:
in the command's process, in a pool worker, in a SLURM job on another node.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_sweep.search.study import PrunerName, PrunerSpec, open_storage, storage_spec

if TYPE_CHECKING:
    from optuna.trial import Trial

    from mlp_sweep.training.loop import History

log = logging.getLogger(__name__)

SWEEPER = "hydra_plugins.mlp_sweep_optuna.optuna_sweeper.OptunaSweeper"
# A trial's system attrs with seeds: each seed's values by epoch, and where the trial was pruned.
SEED_VALUES = "mlp_sweep:seed_values:"
PRUNED_AT = "mlp_sweep:pruned_at"


def epoch_value(objective: str, history: History) -> float | None:
    """The objective as it stands after the history's last epoch: best_test_acc the best so
    far, test_acc / test_loss / train_loss that epoch's, train_seconds the time so far."""
    epochs = history.epochs
    if not epochs:
        return None
    last = epochs[-1]
    if objective == "best_test_acc":
        best = history.best
        value = best.test_acc if best is not None else math.nan
    elif objective == "train_seconds":
        value = sum(e.seconds for e in epochs)
    elif objective in ("test_acc", "test_loss", "train_loss"):
        value = getattr(last, objective)
    else:
        return None  # not known per epoch: this trial is judged on its end only
    return value if math.isfinite(value) else None


@dataclass
class TrialLink:
    """The study's trial `number`, opened in this process when the first epoch reports."""

    storage: str
    study_name: str
    number: int
    objective: str
    pruner: PrunerSpec
    seeds: int = 1  # the trial's runs, one per seed; this one is run `seed_index` of them
    seed_index: int = 0
    _trial: Trial | None = field(default=None, repr=False)
    _broken: bool = field(default=False, repr=False)

    def should_prune(self, history: History) -> bool:
        """Report the history's last epoch; True if the pruner stops the trial there. A study
        that cannot be reached costs a warning and no pruning, never the run."""
        from mlp_sweep.training.loop import History  # torch: the trial's process has it

        if not history.epochs or self._broken:
            return False
        try:
            if self.seeds > 1:
                return self._seeds_say_prune(history)
            trial = self._open()
            reported = trial._cached_frozen_trial.intermediate_values
            # Every epoch the study has not heard of: a trial killed between its record and its
            # report, resumed from its checkpoint, tells the epochs it kept first.
            for i, epoch in enumerate(history.epochs, start=1):
                if epoch.epoch in reported:
                    continue
                value = epoch_value(self.objective, History(history.epochs[:i]))
                if value is not None:
                    trial.report(value, epoch.epoch)
            if epoch_value(self.objective, history) is None:
                return False
            return bool(trial.should_prune())
        except Exception as err:  # the study unreachable, a storage error: train on
            self._broken = True
            log.warning("trial %d: cannot report to its study (%s); not pruned", self.number, err)
            return False

    def _seeds_say_prune(self, history: History) -> bool:
        """One of the trial's seeds: its values go to the trial's system attrs; an epoch every
        seed has reached is reported as their mean and judged by the pruner, once, by whichever
        seed completes it, and the verdict is kept where every seed reads it."""
        from mlp_sweep.training.loop import History

        trial = self._open()
        storage, trial_id = trial.storage, trial._trial_id
        mine = [
            epoch_value(self.objective, History(history.epochs[:i]))
            for i in range(1, len(history.epochs) + 1)
        ]
        storage.set_trial_system_attr(trial_id, f"{SEED_VALUES}{self.seed_index}", mine)
        frozen = storage.get_trial(trial_id)
        if frozen.system_attrs.get(PRUNED_AT) is not None:
            return True  # another seed's report had the trial pruned
        lists: list[list[float | None]] = []
        for k in range(self.seeds):
            values = frozen.system_attrs.get(f"{SEED_VALUES}{k}")
            if values is None:
                return False  # a seed that has not started: no mean yet
            lists.append(values)
        common = min(len(values) for values in lists)
        told = False
        for step in range(1, common + 1):
            column = [v for values in lists if (v := values[step - 1]) is not None]
            if step in frozen.intermediate_values or len(column) < self.seeds:
                continue
            storage.set_trial_intermediate_value(trial_id, step, sum(column) / len(column))
            told = True
        if not told:
            return False
        study = trial.study
        if study.pruner.prune(study, storage.get_trial(trial_id)):
            storage.set_trial_system_attr(trial_id, PRUNED_AT, common)
            return True
        return False

    def _open(self) -> Trial:
        if self._trial is None:
            import optuna

            study = optuna.load_study(
                study_name=self.study_name,
                storage=open_storage(self.storage),
                pruner=self.pruner.build(),
            )
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, self.number
            )
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial


def trial_link(hydra: Any, epochs: int) -> TrialLink | None:
    """The link for a job of mlp_sweep's Optuna sweeper with a pruner (its HydraConfig), else
    None: a grid's job, a run, a search without pruning."""
    sweeper = hydra.get("sweeper") if hasattr(hydra, "get") else None
    if sweeper is None or sweeper.get("_target_") != SWEEPER:
        return None
    name = PrunerName(str(getattr(sweeper.get("pruner"), "value", sweeper.get("pruner"))))
    number = hydra.get("job", {}).get("num")
    if name is PrunerName.none or number is None:
        return None
    knobs = sweeper.get("pruning") or {}
    spec = PrunerSpec(
        name=name,
        min_epochs=int(knobs.get("min_epochs", 1)),
        reduction_factor=int(knobs.get("reduction_factor", 3)),
        warmup_trials=int(knobs.get("warmup_trials", 5)),
        max_epochs=epochs,
    )
    objectives = sweeper.get("objective") or ["best_test_acc"]
    objectives = [objectives] if isinstance(objectives, str) else list(objectives)
    if len(objectives) > 1:
        return None  # Optuna prunes single-objective studies only (the sweeper says so)
    seeds = max(1, int(sweeper.get("seeds") or 1))
    return TrialLink(
        storage=storage_spec(Path(str(hydra.sweep.dir)), sweeper.get("storage")),
        study_name=str(sweeper.get("study_name")),
        number=int(number) // seeds,
        objective=str(objectives[0]),
        pruner=spec,
        seeds=seeds,
        seed_index=int(number) % seeds,
    )
