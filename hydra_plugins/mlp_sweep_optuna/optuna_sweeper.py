"""An Optuna study driven through Hydra's launcher with ask/tell: job number == trial number.

Each batch asks up to n_jobs trials, launches them as jobs numbered by their trials (so trial 3
runs in <sweep.dir>/3) and tells Optuna what each returned. A failed job becomes a FAIL trial.
Run the same sweep dir again and the study resumes: trials a killed sweep left RUNNING run again
with their own numbers and params, in their own folders, before new trials are asked. So one
sweep process per study: a second one would take the first one's running trials for orphans.
The space, the study, a trial's outcome and the console's lines are mlp_sweep.search's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.config import flatten
from mlp_sweep.labels import MULTIRUN_FILE
from mlp_sweep.results.console_filter import ON_CONSOLE
from mlp_sweep.run.record import write_bytes_atomic
from mlp_sweep.search import report
from mlp_sweep.search.objectives import ObjectiveError, checked
from mlp_sweep.search.outcome import judge
from mlp_sweep.search.space import (
    SearchError,
    SeedJobs,
    consecutive,
    first_seed,
    parse_space,
    planned_grid,
    trial_overrides,
)
from mlp_sweep.search.study import (
    PrunerName,
    PrunerSpec,
    SamplerName,
    ask,
    counted,
    left_running,
    open_study,
    storage_spec,
)
from mlp_sweep.training.threads import cores

from .config import PruningConf, SamplerConf

if TYPE_CHECKING:  # optuna is imported when a sweep starts, never when Hydra scans plugins
    from optuna import Study

    from mlp_sweep.search.space import Grid, Jobs, Space

log = logging.getLogger(__name__)

MISSING_OPTUNA = 'hydra/sweeper=mlp_sweep_optuna needs optuna: pip install ".[search]"'


class SweepError(CompactHydraException):
    """A mistake the user can fix: Hydra prints its one line, no traceback."""


class MissingOptuna(SweepError, ImportError):
    pass


def plain(node: Any) -> Any:
    """A DictConfig -> dicts, lists and strings (Enum members by name); anything else as is."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: Any = "maximize",
        study_name: str = "mlp_sweep",
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int | None = None,
        sampler: Any = None,
        params: Mapping[str, Any] | None = None,
        pruner: PrunerName | str = PrunerName.none,
        pruning: Any = None,
        objective: Any = None,
        seeds: int = 1,
    ) -> None:
        # Checked in setup(), where a mistake is Hydra's one line rather than an instantiation
        # error; enum members by value (Hydra's plugin scan re-runs config.py).
        self.direction: Any = plain(direction)
        self.objective: Any = plain(objective)
        self.objectives: list[str] = []
        self.directions: list[str] = []
        self.seeds = seeds
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = max(1, cores() if n_jobs is None else n_jobs)
        merged = OmegaConf.merge(OmegaConf.structured(SamplerConf), plain(sampler or {}))
        self.sampler: SamplerConf = OmegaConf.to_object(merged)  # type: ignore[assignment]
        # Each key's override text: "optim.lr" -> "interval(0,1)", nested or dotted alike.
        self.params = {key: str(value) for key, value in flatten(plain(params or {})).items()}
        self.pruner = PrunerName(getattr(pruner, "value", pruner))
        merged = OmegaConf.merge(OmegaConf.structured(PruningConf), plain(pruning or {}))
        self.pruning: PruningConf = OmegaConf.to_object(merged)  # type: ignore[assignment]
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        # Trials whose runs did not finish here, left RUNNING: they count towards n_trials
        # (--resume finishes them), beside the finished ones (search.study.counted).
        self.open: set[int] = set()
        self.jobs = SeedJobs(seeds)  # each trial's jobs, by seed

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        try:  # fail here, before any job, with the line that says what to install
            import optuna  # noqa: F401
        except ImportError:
            raise MissingOptuna(MISSING_OPTUNA) from None
        try:
            self.objectives, self.directions = checked(self.objective, self.direction)
        except ObjectiveError as err:
            raise SweepError(str(err)) from None
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise SweepError(f"hydra.sweeper.seeds={self.seeds}: a whole number, 1 or more")
        if len(self.objectives) > 1 and self.pruner is not PrunerName.none:
            line = report.pruner_off_line(self.pruner.value, len(self.objectives))
            log.warning(line, extra=ON_CONSOLE)
            self.pruner = PrunerName.none
        from mlp_sweep.launch.compose import CachedLoader

        if not isinstance(hydra_context.config_loader, CachedLoader):  # trials differ in values
            loader = CachedLoader(hydra_context.config_loader)
            hydra_context = dataclasses.replace(hydra_context, config_loader=loader)
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        """Run trials until the study holds n_trials finished ones; return the job batches."""
        try:
            return self._sweep(arguments)
        except SearchError as err:
            raise SweepError(str(err)) from None

    def _sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.hydra_context is not None
        # As the basic sweeper does: the sweep's config beside its jobs, for re-runs and tools.
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # Atomically: a link planted at the name is replaced, never written through.
        write_bytes_atomic(sweep_dir / MULTIRUN_FILE, OmegaConf.to_yaml(self.config).encode())

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.params.items()]
        space = parse_space(parser.parse_overrides(params + list(arguments)))
        config_seed = OmegaConf.select(self.config, "seed", default=0)
        # seeds > 1: the seed leaves the space, each job gets its own
        self.jobs = SeedJobs(self.seeds, first_seed(space, self.seeds, config_seed))
        storage = storage_spec(sweep_dir, self.storage)
        # The pruner each trial rebuilds from its own config (mlp_sweep.search.trial).
        epochs = int(OmegaConf.select(self.config, "trainer.epochs", default=10) or 10)
        pruner = PrunerSpec(self.pruner, **dataclasses.asdict(self.pruning), max_epochs=epochs)
        study = open_study(
            storage, self.study_name, self.directions, pruner, self.sampler.name, self.sampler.seed
        )
        grid = planned_grid(space, self.n_trials, self.sampler.name == SamplerName.grid)
        target = self.n_trials if grid is None else len(grid)

        returns: list[Sequence[JobReturn]] = []
        # A killed sweep left these RUNNING: the same numbers and params, so the same folders.
        left, lost = left_running(study, space, sweep_dir, self.seeds)
        for number, got in lost:
            log.warning(report.lost_line(number, got), extra=ON_CONSOLE)
        if left:
            log.info(report.resuming_line([t.number for t in left]), extra=ON_CONSOLE)
        resumed = {t.number: trial_overrides(space, t.params) for t in left}
        if getattr(type(self.launcher), "streams_jobs", False):
            returns.append(self._stream(study, space, grid, target, resumed))
        else:
            if resumed:
                returns += self._run(study, resumed)
            while (done := counted(study, space) + len(self.open)) < target:
                count = max(1, min(self.n_jobs // self.seeds, target - done))
                returns += self._run(study, dict(ask(study, space, grid) for _ in range(count)))

        lines = report.best_lines(study, self.objectives)
        log.info(f"{lines[0]}; study '{study.study_name}' in {storage}", extra=ON_CONSOLE)
        for line in lines[1:]:
            log.info(line, extra=ON_CONSOLE)
        return returns

    def _returned(self, study: Study, job_number: int, job: JobReturn) -> bool:
        """One job's return; once all of its trial's seeds are back, the trial is told.
        Returns whether it was."""
        told = self.jobs.returned(job_number, job)
        if told is not None:
            self._tell(study, *told)
        return told is not None

    def _stream(
        self, study: Study, space: Space, grid: Grid | None, target: int, resumed: Jobs
    ) -> list[JobReturn]:
        """No batches: each worker that ends a trial (or whose trial is pruned) gets the next
        at once, asked of the study only then, so it learns from every trial told so far."""
        assert self.launcher is not None
        queue: list[tuple[int, list[str]]] = []  # jobs of trials asked, not yet launched
        running: set[int] = set()  # trials with a job not yet returned

        def enqueue(number: int, overrides: list[str]) -> None:
            jobs = self.jobs.of({number: overrides})
            self._check(study, [number], list(jobs.values()))
            queue.extend(jobs.items())
            running.add(number)

        for number, overrides in resumed.items():
            enqueue(number, overrides)

        def more() -> tuple[int, list[str]] | None:
            if not queue:
                if counted(study, space) + len(self.open) + len(running) >= target:
                    return None
                enqueue(*ask(study, space, grid))
            return queue.pop(0)

        def done(job_number: int, job: JobReturn) -> None:
            if self._returned(study, job_number, job):
                running.discard(job_number // self.seeds)

        expected = max(1, target - counted(study, space) - len(self.open)) * self.seeds
        return list(self.launcher.stream(more, done, expected=expected))  # type: ignore[attr-defined]

    def _check(self, study: Study, numbers: list[int], batch: list[list[str]]) -> None:
        """A config that cannot compose fails the sweep here, before its job runs: its trials
        are told FAIL (not RUNNING: a rerun must not try them again)."""
        from optuna.trial import TrialState

        try:
            self.validate_batch_is_legal(batch)
        except Exception:
            for number in numbers:
                study.tell(number, state=TrialState.FAIL)
            raise

    def _tell(self, study: Study, number: int, jobs: Mapping[int, JobReturn]) -> None:
        """What the trial's jobs (one per seed) came to, told to the study: the mean of their
        values, PRUNED, FAIL, or nothing for a trial left unfinished (--resume continues it)."""
        from optuna.trial import TrialState

        from mlp_sweep.launch.jobs import worker_died

        assert self.config is not None
        outcome = judge(Path(str(self.config.hydra.sweep.dir)), jobs, self.objectives, worker_died)
        line = report.outcome_line(number, outcome, self.objectives, self.seeds)
        if outcome.pruned_at is not None:
            log.info(line, extra=ON_CONSOLE)
            study.tell(number, state=TrialState.PRUNED)
        elif outcome.open:
            self.open.add(number)  # not told: --resume continues it in its folders
            log.warning(line)
        elif outcome.failed is not None:
            log.warning(line)
            study.tell(number, state=TrialState.FAIL)
        else:
            log.info(line)
            study.tell(number, outcome.means if len(outcome.means) > 1 else outcome.means[0])

    def _run(self, study: Study, trials: Jobs) -> list[Sequence[JobReturn]]:
        """Launch trials' jobs in batches of up to n_jobs, numbered by their trials, and tell
        Optuna about each trial once all of its jobs returned (a launcher that cannot stream:
        basic, fused, SLURM)."""
        assert self.launcher is not None
        jobs = self.jobs.of(trials)
        batches: list[Sequence[JobReturn]] = []
        for numbers in consecutive(list(jobs), self.n_jobs):
            batch = [jobs[n] for n in numbers]
            self._check(study, sorted({n // self.seeds for n in numbers}), batch)
            results = self.launcher.launch(batch, initial_job_idx=numbers[0])
            for number, job in zip(numbers, results, strict=True):
                self._returned(study, number, job)
            batches.append(results)
        return batches
