"""An Optuna study driven through Hydra's launcher with ask/tell: job number == trial number.

Each batch asks up to n_jobs trials, launches them as jobs numbered by their trials (so trial 3
runs in <sweep.dir>/3) and tells Optuna what each returned. A failed job becomes a FAIL trial.
Run the same sweep dir again and the study resumes: trials a killed sweep left RUNNING run again
with their own numbers and params, in their own folders, before new trials are asked. So one
sweep process per study: a second one would take the first one's running trials for orphans.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.search.study import PrunerName

from .config import PruningConf, SamplerConf, SamplerName

if TYPE_CHECKING:  # optuna is imported when a sweep starts, never when Hydra scans plugins
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, Trial

log = logging.getLogger(__name__)
# Shown on a quiet sweep console too (mlp_sweep.results.console_filter.ConsoleFilter); other INFO
# lines are not.
ON_CONSOLE = {"console": True}

MISSING_OPTUNA = 'hydra/sweeper=mlp_sweep_optuna needs optuna: pip install ".[search]"'


class SweepError(CompactHydraException):
    """A mistake the user can fix: Hydra prints its one line, no traceback."""


class MissingOptuna(SweepError, ImportError):
    pass


# key -> its fixed override ("key=value", given to every trial) or the distribution to sample.
Space = dict[str, "str | BaseDistribution"]


def plain(node: Any) -> Any:
    """A DictConfig -> dicts, lists and strings (Enum members by name); anything else as is."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"optim": {"lr": "interval(0,1)"}} -> {"optim.lr": "interval(0,1)"}."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def parse_space(overrides: Sequence[Override]) -> Space:
    """Hydra overrides -> the search space; a later override of a key replaces an earlier one."""
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
        raise SweepError(f"a trial left running has no value for {missing}: was the space changed?")
    return [d if isinstance(d, str) else f"{key}={params[key]}" for key, d in space.items()]


def grid_points(space: Space, limit: int) -> list[dict[str, Any]] | None:
    """The first `limit` combinations when every param is discrete, in Hydra's sweep order."""
    from optuna.distributions import CategoricalDistribution

    dists = sampled(space)
    choices = [d.choices for d in dists.values() if isinstance(d, CategoricalDistribution)]
    if len(choices) < len(dists):
        return None
    points = itertools.islice(itertools.product(*choices), limit)
    return [dict(zip(dists, point, strict=True)) for point in points]


def consecutive(numbers: Sequence[int], size: int) -> Iterator[list[int]]:
    """Trial numbers -> runs of consecutive numbers at most `size` long, one launch each."""
    run: list[int] = []
    for number in sorted(numbers):
        if run and (number != run[-1] + 1 or len(run) == size):
            yield run
            run = []
        run.append(number)
    if run:
        yield run


def objective(job: JobReturn) -> tuple[float | None, str]:
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
        if n_jobs is None:
            from mlp_sweep.training.threads import cores

            n_jobs = cores()
        self.n_jobs = max(1, n_jobs)
        merged = OmegaConf.merge(OmegaConf.structured(SamplerConf), plain(sampler or {}))
        self.sampler: SamplerConf = OmegaConf.to_object(merged)  # type: ignore[assignment]
        self.params = flatten(plain(params or {}))
        self.pruner = PrunerName(getattr(pruner, "value", pruner))
        merged = OmegaConf.merge(OmegaConf.structured(PruningConf), plain(pruning or {}))
        self.pruning: PruningConf = OmegaConf.to_object(merged)  # type: ignore[assignment]
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.open: set[int] = set()  # trials whose runs did not finish here: left RUNNING
        self.returned: dict[int, dict[int, JobReturn]] = {}  # trial -> its seeds' jobs so far

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        try:  # fail here, before any job, with the line that says what to install
            import optuna  # noqa: F401
        except ImportError:
            raise MissingOptuna(MISSING_OPTUNA) from None
        from mlp_sweep.search.objectives import ObjectiveError, checked

        try:
            self.objectives, self.directions = checked(self.objective, self.direction)
        except ObjectiveError as err:
            raise SweepError(str(err)) from None
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise SweepError(f"hydra.sweeper.seeds={self.seeds}: a whole number, 1 or more")
        if len(self.objectives) > 1 and self.pruner is not PrunerName.none:
            log.warning(
                f"hydra.sweeper.pruner={self.pruner.value} is off: Optuna prunes single-objective "
                f"studies only, and this one has {len(self.objectives)} objectives",
                extra=ON_CONSOLE,
            )
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
        from optuna.trial import TrialState

        assert self.config is not None and self.hydra_context is not None
        # As the basic sweeper does: the sweep's config beside its jobs, for re-runs and tools.
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.params.items()]
        space = parse_space(parser.parse_overrides(params + list(arguments)))
        self.first_seed = self._first_seed(space)  # seeds > 1: seed leaves the space
        from mlp_sweep.search.study import storage_spec

        storage = storage_spec(sweep_dir, self.storage)
        study = self._study(storage)

        grid = grid_points(space, self.n_trials + 1)  # None when a param is continuous
        if self.sampler.name == SamplerName.grid:
            if grid is None:
                swept = list(sampled(space))
                raise SweepError(f"hydra.sweeper.sampler.name=grid needs discrete sweeps: {swept}")
            grid = grid[: self.n_trials]
        elif grid is not None and len(grid) > self.n_trials:
            grid = None  # too many points: let the sampler choose
        # else the whole grid fits in n_trials, where sampling could only repeat points: run it.
        target = self.n_trials if grid is None else len(grid)

        returns: list[Sequence[JobReturn]] = []
        # A killed sweep left these RUNNING: the same numbers and params, so the same folders.
        left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        left = [t for t in left if not self._never_given(study, t, space, sweep_dir)]
        if left:
            log.info(
                f"resuming trials {[t.number for t in left]}, left running by a killed sweep",
                extra=ON_CONSOLE,
            )
        resumed = {t.number: trial_overrides(space, t.params) for t in left}
        if getattr(type(self.launcher), "streams_jobs", False):
            returns.append(self._stream(study, space, grid, target, resumed))
        else:
            if resumed:
                returns += self._run(study, resumed)
            while (done := self._counted(study, space)) < target:
                count = max(1, min(self.n_jobs // self.seeds, target - done))
                asked = [self._ask(study, space, grid) for _ in range(count)]
                jobs = {t.number: trial_overrides(space, t.params) for t in asked}
                returns += self._run(study, jobs)

        lines = best_lines(study, self.objectives)
        log.info(f"{lines[0]}; study '{study.study_name}' in {storage}", extra=ON_CONSOLE)
        for line in lines[1:]:
            log.info(line, extra=ON_CONSOLE)
        return returns

    def _first_seed(self, space: Space) -> int:
        """The seed of each trial's first run when trials train on several seeds (the next
        ones follow it): a fixed seed=N from the command line, else the config's. The seed
        then leaves the space: each job gets its own."""
        assert self.config is not None
        if self.seeds == 1:
            return int(OmegaConf.select(self.config, "seed", default=0) or 0)
        given = space.pop("seed", None)
        if given is not None and not isinstance(given, str):
            raise SweepError(
                f"hydra.sweeper.seeds={self.seeds} gives each trial its own seeds: take seed "
                "out of the search space (seed=N sets the first one)"
            )
        try:
            text = given.partition("=")[2] if given else OmegaConf.select(self.config, "seed")
            return int(text or 0)
        except (TypeError, ValueError):
            raise SweepError(f"{given}: seed must be a whole number") from None

    def _jobs(self, number: int, overrides: list[str]) -> dict[int, list[str]]:
        """Trial `number`'s jobs by job number: the trial's own number, or with seeds=S jobs
        number*S ... number*S+S-1, one seed each (so job // S is the trial)."""
        if self.seeds == 1:
            return {number: overrides}
        return {
            number * self.seeds + k: [*overrides, f"seed={self.first_seed + k}"]
            for k in range(self.seeds)
        }

    def _returned(self, study: Study, job_number: int, job: JobReturn) -> bool:
        """One job's return; once all of its trial's seeds are back, the trial is told.
        Returns whether it was."""
        number = job_number // self.seeds
        jobs = self.returned.setdefault(number, {})
        jobs[job_number] = job
        if len(jobs) < self.seeds:
            return False
        self._tell(study, number, self.returned.pop(number))
        return True

    def _counted(self, study: Study, space: Space) -> int:
        """Trials that count towards n_trials: finished ones that got all their values (one
        failed before that did no work), and those left open (--resume finishes them)."""
        from optuna.trial import TrialState

        finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        trials = study.get_trials(deepcopy=False, states=finished)
        drawn = sampled(space)
        return sum(1 for t in trials if all(k in t.params for k in drawn)) + len(self.open)

    def _stream(
        self,
        study: Study,
        space: Space,
        grid: list[dict[str, Any]] | None,
        target: int,
        resumed: dict[int, list[str]],
    ) -> list[JobReturn]:
        """No batches: each worker that ends a trial (or whose trial is pruned) gets the next
        at once, asked of the study only then, so it learns from every trial told so far."""
        assert self.launcher is not None
        queue: list[tuple[int, list[str]]] = []  # jobs of trials asked, not yet launched
        running: set[int] = set()  # trials with a job not yet returned

        def enqueue(number: int, overrides: list[str]) -> None:
            jobs = self._jobs(number, overrides)
            self._check(study, [number], list(jobs.values()))
            queue.extend(jobs.items())
            running.add(number)

        for number, overrides in resumed.items():
            enqueue(number, overrides)

        def more() -> tuple[int, list[str]] | None:
            if not queue:
                if self._counted(study, space) + len(running) >= target:
                    return None
                trial = self._ask(study, space, grid)
                enqueue(trial.number, trial_overrides(space, trial.params))
            return queue.pop(0)

        def done(job_number: int, job: JobReturn) -> None:
            if self._returned(study, job_number, job):
                running.discard(job_number // self.seeds)

        expected = max(1, target - self._counted(study, space)) * self.seeds
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

        pruned_at = [e for j in jobs if (e := self._pruned_at(j)) is not None]
        outcomes = {j: self._values(j, job) for j, job in sorted(jobs.items())}
        missing = {j: why for j, (values, why) in outcomes.items() if values is None}
        if pruned_at:
            log.info(f"trial {number}: pruned at epoch {min(pruned_at)}", extra=ON_CONSOLE)
            study.tell(number, state=TrialState.PRUNED)
        elif any(self._unfinished(j, jobs[j]) for j in missing):
            self.open.add(number)  # not told: --resume continues it in its folders
            log.warning(
                f"trial {number} did not finish (its worker died, or it was stopped at "
                "its time limit); it stays open and --resume continues it"
            )
        elif missing:
            job_number, why = next(iter(missing.items()))
            which = f" (seed job {job_number})" if self.seeds > 1 else ""
            log.warning(f"trial {number} failed: the job{which} {why}")
            study.tell(number, state=TrialState.FAIL)
        else:
            rows = [values for values, _ in outcomes.values() if values is not None]
            means = [sum(column) / len(column) for column in zip(*rows, strict=True)]
            log.info(f"trial {number}: {describe(means, rows, self.objectives)}")
            study.tell(number, means if len(means) > 1 else means[0])

    def _values(self, job_number: int, job: JobReturn) -> tuple[list[float] | None, str]:
        """The job's value of each objective, or None and why there is none. A job that did
        not finish has none (its return says why); the default objective is its return, any
        other is read from its run's record."""
        from mlp_sweep.search.objectives import DEFAULT_OBJECTIVE, record_values

        value, why = objective(job)
        if value is None:
            return None, why
        if self.objectives == [DEFAULT_OBJECTIVE]:
            return [value], ""
        values = record_values(self._record(job_number), self.objectives)
        if values is None:
            return None, f"left no finite {', '.join(self.objectives)} in its record"
        return values, ""

    def _record(self, number: int) -> dict[str, Any]:
        """The trial's run record (metrics.json), or {} where there is none of ours."""
        from mlp_sweep.run.record import read_metrics

        assert self.config is not None
        try:
            record = read_metrics(Path(str(self.config.hydra.sweep.dir)) / str(number))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _pruned_at(self, number: int) -> int | None:
        """The epoch the pruner stopped the trial's run at, if it did."""
        from mlp_sweep.status import Status

        record = self._record(number)
        if record.get("status") != Status.PRUNED:
            return None
        return int(record.get("epochs_done") or 0)

    def _unfinished(self, number: int, job: JobReturn) -> bool:
        """Whether a trial without a value is resumable rather than failed: its worker died
        (the launcher could not say how the job ended), or its run's record says it stopped
        unfinished (running when its worker died, interrupted, timeout). A run that failed
        by itself would fail again: that trial is failed."""
        from mlp_sweep.launch.jobs import worker_died
        from mlp_sweep.status import Status

        if worker_died(job):
            return True
        # No record of ours (another app's task): judged by its return.
        status = self._record(number).get("status")
        return status in (Status.RUNNING, Status.INTERRUPTED, Status.TIMEOUT)

    def _never_given(self, study: Study, trial: FrozenTrial, space: Space, sweep_dir: Path) -> bool:
        """A trial the sweep asked for but was killed before it had sampled all its values
        (Optuna stores each value as it is drawn: a kill can fall between two): it has no
        folder, so nobody ever worked on it. Told FAIL (a rerun would need the values it never
        got), and the search asks a new trial in its place."""
        from optuna.trial import TrialState

        got = [key for key in sampled(space) if key in trial.params]
        if len(got) == len(sampled(space)) or (sweep_dir / str(trial.number * self.seeds)).exists():
            return False
        study.tell(trial.number, state=TrialState.FAIL)
        values = f"only {', '.join(got)} of its values" if got else "no values"
        log.warning(
            f"trial {trial.number} was asked for but got {values} before the sweep was "
            "killed; marked failed, a new trial takes its place",
            extra=ON_CONSOLE,
        )
        return True

    def _study(self, storage: str) -> Study:
        import optuna
        from optuna.study import StudyDirection

        from mlp_sweep.search.study import PrunerSpec, open_storage

        # Optuna's lines go through Hydra's logging (its console format and log file).
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        assert self.config is not None
        knobs = self.pruning
        pruner = PrunerSpec(  # the one each trial rebuilds from its own config (search.trial)
            self.pruner,
            knobs.min_epochs,
            knobs.reduction_factor,
            knobs.warmup_trials,
            int(OmegaConf.select(self.config, "trainer.epochs", default=10) or 10),
        )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(storage),
            directions=[StudyDirection[way.upper()] for way in self.directions],
            load_if_exists=True,
            pruner=pruner.build(),
        )
        created = [d.name.lower() for d in study.directions]
        if created != self.directions:
            raise SweepError(
                f"study '{self.study_name}' in {storage} was created to {','.join(created)}; "
                f"hydra.sweeper.direction={','.join(self.directions)}"
            )
        # Offset by the trials already there: a resumed sweep must not redraw the first run's
        # random points, and a fresh one with the same seed still repeats exactly.
        seed = self.sampler.seed
        seed = None if seed is None else seed + len(study.get_trials(deepcopy=False))
        if self.sampler.name == SamplerName.tpe:  # one objective or several (MOTPE)
            study.sampler = optuna.samplers.TPESampler(seed=seed)
        elif self.sampler.name == SamplerName.nsga2:
            study.sampler = optuna.samplers.NSGAIISampler(seed=seed)
        else:  # random; a grid enqueues its points, so the sampler never draws
            study.sampler = optuna.samplers.RandomSampler(seed=seed)
        return study

    def _ask(self, study: Study, space: Space, grid: list[dict[str, Any]] | None) -> Trial:
        from optuna.trial import TrialState

        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if grid is not None and not waiting:
            # The first grid point no trial has taken (a trial failed before it got its values
            # took none): each point once, in order.
            taken = [t.params for t in study.get_trials(deepcopy=False) if t.params]
            study.enqueue_trial(next(point for point in grid if point not in taken))
        return study.ask(sampled(space))

    def _run(self, study: Study, trials: dict[int, list[str]]) -> list[Sequence[JobReturn]]:
        """Launch trials' jobs in batches of up to n_jobs, numbered by their trials, and tell
        Optuna about each trial once all of its jobs returned (a launcher that cannot stream:
        basic, fused, SLURM)."""
        assert self.launcher is not None
        jobs: dict[int, list[str]] = {}
        for number, overrides in trials.items():
            jobs.update(self._jobs(number, overrides))
        batches: list[Sequence[JobReturn]] = []
        for numbers in consecutive(list(jobs), self.n_jobs):
            batch = [jobs[n] for n in numbers]
            self._check(study, sorted({n // self.seeds for n in numbers}), batch)
            results = self.launcher.launch(batch, initial_job_idx=numbers[0])
            for number, job in zip(numbers, results, strict=True):
                self._returned(study, number, job)
            batches.append(results)
        return batches


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


def _params(trial: FrozenTrial) -> str:
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
            lines.append(f"  trial {trial.number}: {values} ({_params(trial)})")
        return lines
    try:
        best = study.best_trial
    except ValueError:
        return ["no trial completed"]
    return [f"best trial {best.number}: value {best.value:.4g} ({_params(best)})"]
