"""The sweeper's schema, registered as `hydra/sweeper=mlp_sweep_optuna`.

No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before
it is in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

# Named beside the study that builds them. Each trial reports its objective after every epoch;
# the pruner may stop it there.
from mlp_sweep.search.study import PrunerName, SamplerName


class Direction(Enum):
    maximize = "maximize"
    minimize = "minimize"


@dataclass
class PruningConf:
    # No trial is pruned before it has trained this many epochs (ASHA's and Hyperband's
    # min_resource, the median pruner's warm-up steps).
    min_epochs: int = 1
    # asha, hyperband: at each rung (epochs min_epochs * factor^k) 1 trial in this many goes on.
    reduction_factor: int = 3
    # median: trials that must finish before the median can prune any.
    warmup_trials: int = 5


@dataclass
class SamplerConf:
    # tpe: Optuna's default, learns from finished trials (one objective or several); random:
    # uniform draws; nsga2: NSGA-II, a genetic search for several objectives; grid: every
    # combination of the discrete params in command-line order, as the basic sweeper runs them.
    # Whatever the name, a space that is all discrete and no bigger than n_trials runs as a grid:
    # any further trial could only repeat one.
    name: SamplerName = SamplerName.tpe
    # A fixed seed so the same command samples the same trials; null draws a fresh one.
    seed: int | None = 0


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mlp_sweep_optuna.optuna_sweeper.OptunaSweeper"
    # One per objective: maximize or minimize, or a list ([maximize,minimize]) for several.
    direction: Any = Direction.maximize
    # The run record's fields the study optimizes (metrics.json: best_test_acc, test_acc,
    # test_loss, train_loss, train_seconds, n_params, ...): one, or a list for a
    # multi-objective study whose Pareto-optimal trials the summary marks (`pareto`).
    objective: Any = field(default_factory=lambda: ["best_test_acc"])
    # Each trial trains its params on this many seeds (the config's seed, +1, +2, ...), one
    # run each; the study is told their mean, and the pruner compares means.
    seeds: int = 1
    # The study's name inside the storage; one storage can hold several studies.
    study_name: str = "mlp_sweep"
    # An Optuna storage URL; null: the journal file <hydra.sweep.dir>/optuna.journal, so each
    # sweep folder holds its own study and running the same sweep dir again resumes it (a
    # folder whose study is the SQLite file <hydra.sweep.dir>/optuna.db is resumed from it).
    storage: str | None = None
    # Stop once the study holds this many finished (complete, failed or pruned) trials.
    n_trials: int = 20
    # Trials asked at once and handed to the launcher as one batch (a parallel launcher runs them
    # side by side); null: the CPU cores this process may use.
    n_jobs: int | None = None
    sampler: SamplerConf = field(default_factory=SamplerConf)
    # Stops hopeless trials early (status `pruned`: a result, never re-run by --resume).
    pruner: PrunerName = PrunerName.none
    pruning: PruningConf = field(default_factory=PruningConf)
    # key -> search space in Hydra's override grammar: `a,b,c`, `choice(a,b)`, `range(1,4)`,
    # `interval(0.1,1)`, `tag(log, interval(1e-4,1))`, `int(interval(8,64))`. Dotted keys may be
    # written nested (`optim: {lr: ...}`), which lets the command line override one:
    # "hydra.sweeper.params.optim.lr='tag(log, interval(0.01, 0.1))'".
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="mlp_sweep_optuna",
    node=OptunaSweeperConf,
    provider="mlp_sweep_optuna",
)
