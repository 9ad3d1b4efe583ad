"""Check every job of a command before Hydra starts any of them.

Hydra composes a sweep's jobs one at a time as it launches them, and its own checks stop at
types and choices. Here each job is composed up front with Hydra's Compose API and put through
the same checks a run does (ranges, device, data files), so `-m optim.lr=0.1,-1` fails before
the first run trains rather than after it. The sweep's size and its runs' memory are checked
too (mlp_sweep.cli.limits); a Ctrl-C or SIGTERM, held while the command starts, stops the
checks at the next job.
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import hydra_compat
from mlp_sweep.cli.checks import check_keys, in_schema, schema_node
from mlp_sweep.cli.limits import Launcher, MemoryCheck, check_grid
from mlp_sweep.config import Config, DataConfig, Dataset, to_config, validate
from mlp_sweep.errors import ConfigError, MlpSweepError
from mlp_sweep.labels import MLFLOW_FILES, MULTIRUN_FILE
from mlp_sweep.paths import CONF_DIR
from mlp_sweep.run.interrupt import holding_a_signal, release_signals
from mlp_sweep.run.prior import prior_record
from mlp_sweep.run.record import HYDRA_DIR
from mlp_sweep.search.study import STUDY_FILES
from mlp_sweep.training.device import check_device
from mlp_sweep.training.files import cache_missing, prepare_raw

# Flags after which Hydra prints something instead of running: nothing to check.
INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve")


@dataclass
class Job:
    overrides: list[str]
    # The folder Hydra will give the job, where it can be known before launch (the default
    # subdir, the job number); None where a custom subdir makes it unknowable here.
    run_dir: Path | None


def search(args: argparse.Namespace) -> tuple[Path, list[str]] | None:
    """Where Hydra will find the configs (the folder to compose from, plus a search path
    override), or None where only Hydra can tell (a -cp relative to the app's package)."""
    if any(o.lstrip("+").startswith("hydra.searchpath") for o in args.overrides):
        return None
    name = args.config_name or "config"
    if args.config_path:
        path = Path(args.config_path)
        return (path, []) if path.is_absolute() else None
    if args.config_dir:  # -cd DIR: searched before conf/, as Hydra does
        extra = Path(args.config_dir).resolve()
        if (extra / f"{name}.yaml").exists():
            return extra, [f"hydra.searchpath=[file://{CONF_DIR}]"]
        return CONF_DIR, [f"hydra.searchpath=[file://{extra}]"]
    return CONF_DIR, []


def plan(config_name: str, overrides: list[str], multirun: bool) -> tuple[list[Job], Launcher]:
    """Every job the command will launch, as Hydra's basic sweeper expands them (the config's
    hydra.sweeper.params grid, then the command line's), and what its launcher runs at once.
    A grid past the limit (mlp_sweep.cli.limits) is refused before its jobs are listed."""
    parser = hydra_compat.overrides_parser()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.input_line]
    base = compose(config_name, fixed if multirun else overrides, return_hydra_config=True)
    KNOWN.mode, KNOWN.composed = base.hydra.mode, True  # what Hydra's get_mode would read
    if not multirun:
        return [Job(overrides, Path(base.hydra.run.dir))], Launcher.of(None)
    check_no_links(Path(base.hydra.sweep.dir), SWEEP_FILES)
    check_launcher(base.hydra.launcher)
    launcher = Launcher.of(base.hydra.launcher)
    if base.hydra.sweeper.get("_target_") not in hydra_compat.GRID_SWEEPERS:
        return [Job(fixed, None)], launcher  # other sweepers choose their values as they go
    sweeper = OmegaConf.to_container(base.hydra.sweeper, resolve=False)
    params = (sweeper.get("params") if isinstance(sweeper, dict) else None) or {}
    grid = [f"{key}={value}" for key, value in params.items()] + overrides
    sweep_dir = Path(base.hydra.sweep.dir)
    raw = OmegaConf.to_container(base.hydra.sweep, resolve=False)
    by_number = isinstance(raw, dict) and raw.get("subdir") == "${hydra.job.num}"
    parsed_grid = parser.parse_overrides(grid)
    check_grid(parsed_grid)
    jobs = hydra_compat.expand_grid(parsed_grid)
    numbered = [Job(job, sweep_dir / str(n) if by_number else None) for n, job in enumerate(jobs)]
    return numbered, launcher


# mlp_sweep's launchers' keys whose values their types cannot check (hydra_plugins'
# configs): refused here in one line, not by the launcher's constructor inside Hydra's run.
LAUNCHER_CHOICES = {"fuse": ("auto", "always", "never")}


def check_launcher(launcher: DictConfig) -> None:
    retries = launcher.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise ConfigError("hydra.launcher.retries", retries, "must be an integer >= 0")
    for key, choices in LAUNCHER_CHOICES.items():
        value = launcher.get(key)
        if value is not None and value not in choices:
            raise ConfigError(f"hydra.launcher.{key}", value, f"choose one of {', '.join(choices)}")


def check_data(cfg: DataConfig, checked: set[tuple[str, str]]) -> None:
    """Data ready before any job starts: MNIST files present and intact, another dataset
    downloaded here once rather than by every job at the same time."""
    key = (cfg.name.name, str(cfg.root))
    if cfg.name is not Dataset.synthetic and key not in checked:
        prepare_raw(cfg)  # present and intact, or one line saying why not
        if cache_missing(cfg):  # decoded once here, not by every worker at once (with torch:
            from mlp_sweep.training.data import ensure_cached  # the first command only)

            ensure_cached(cfg)
        checked.add(key)


# Where Hydra and mlp_sweep write into a sweep's folder with a plain open(), which follows a
# symbolic link: a received folder with a link there would have its target overwritten.
SWEEP_FILES = (
    MULTIRUN_FILE,
    *STUDY_FILES,
    *(f"{name}.lock" for name in STUDY_FILES),
    *MLFLOW_FILES,
)


class PlantedLink(MlpSweepError):
    """A symbolic link where mlp_sweep or Hydra writes into a sweep or run folder."""


def check_no_links(folder: Path, names: tuple[str, ...] = ()) -> None:
    """Refuse a folder that is a symbolic link, or holds one at `names`, at Hydra's .hydra/ or
    its files, or at a log: what Hydra writes there it writes through a link, before any lock
    of ours is taken (a single run, hydra/launcher=basic, the sweep's own files)."""
    hydra_dir = folder / HYDRA_DIR
    candidates = [folder, hydra_dir, *(folder / n for n in names)]
    if folder.is_dir() and not folder.is_symlink():
        candidates += sorted(folder.glob("*.log"))
        if hydra_dir.is_dir() and not hydra_dir.is_symlink():
            candidates += sorted(hydra_dir.iterdir())
    for path in candidates:
        if path.is_symlink():
            raise PlantedLink(
                f"{path} is a symbolic link (to {os.readlink(path)}), where mlp_sweep or Hydra "
                "writes; remove it, or choose another folder (hydra.sweep.dir / hydra.run.dir)"
            )


def check_job(cfg: Config, run_dir: Path | None, checked: set[tuple[str, str]]) -> str | None:
    """Every check a run would fail on, before any run starts. Returns the status of an
    earlier run of this config in run_dir (None if there is none)."""
    validate(cfg)
    check_device(cfg.device)
    check_data(cfg.data, checked)
    if run_dir is None:
        return None
    check_no_links(run_dir)
    if not run_dir.exists():
        return None
    prior = prior_record(run_dir, cfg)  # raises ConfigMismatch
    return prior.status if prior.readable else None


@dataclass
class Known:
    """What the check learnt that Hydra would compose the config again to learn."""

    mode: Any = None  # the config's hydra.mode (None: unset, as nearly always)
    composed: bool = False  # whether the check composed the command's config at all


KNOWN = Known()


def preflight(argv: list[str]) -> list[str | None]:
    """Compose and check every job the command line asks for, before any trains.

    Returns, per job, the status of an earlier run in its folder (None: a fresh job). Raises
    MlpSweepError, or Hydra's/OmegaConf's own composition error, for the first bad job, and
    Interrupted where a signal held by the command (run.interrupt.hold_signals) came meanwhile.
    """
    KNOWN.mode, KNOWN.composed = None, False
    args = hydra_compat.parse_args(argv)
    where = search(args)
    if any(getattr(args, flag, None) for flag in INFO_FLAGS) or where is None:
        return []
    conf_dir, extra = where
    config_name = args.config_name or "config"
    checked: set[tuple[str, str]] = set()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3", job_name="mlp_sweep"):
        multirun = bool(args.multirun) or "hydra.mode=MULTIRUN" in args.overrides
        statuses = []
        composer = Composer(config_name)
        jobs, launcher = plan(config_name, [*extra, *args.overrides], multirun)
        sizes = MemoryCheck(launcher)
        for job in jobs:
            if holding_a_signal():  # between jobs, no config half-built: stop here
                release_signals()  # raises the signal's Interrupted
            composed = composer(job.overrides)
            if composer.new_keys:  # leaf values cannot add keys: once per shape is enough
                check_keys(composed)
            cfg = to_config(composed)
            statuses.append(check_job(cfg, job.run_dir, checked))
            sizes.add(cfg, job.overrides)
        sizes.check()
        return statuses


class Composer:
    """A sweep's jobs as Hydra composes them, at a fraction of the cost.

    Hydra's compose (defaults list, config groups, schema, overrides) takes ~100 ms; a sweep's
    jobs mostly differ only in leaf values (seed=range(1000), optim.lr=...). So Hydra composes
    once per distinct structure (the overrides that pick config groups, add or delete keys, or
    set sections), and each job's plain `key=value` overrides are applied to a copy of that, as
    Hydra applies them (OmegaConf.update on the typed config, so types and choices are still
    checked). Jobs with the same structure and the same plain keys share one copy: each sets
    every key the one before it set, so no copy per job is needed (a copy of the config costs
    more than the rest of a job's check). Each distinct override text is parsed once. A job
    whose values do not apply cleanly is composed by Hydra in full, so its error reads exactly
    as Hydra's.

    The config returned is only valid until the next call: read it (to_config), do not keep it.
    """

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        self.parser = hydra_compat.overrides_parser()
        self.structures: dict[tuple[str, ...], DictConfig] = {}
        self.scratch: dict[tuple[tuple[str, ...], tuple[str, ...]], DictConfig] = {}
        self.parsed: dict[str, Override] = {}
        self.plain: dict[str, bool] = {}
        self.composes = 0  # how many times Hydra's full compose ran (tests count them)
        self.new_keys = True  # whether the last config returned may hold keys not seen before

    def _compose(self, overrides: list[str]) -> DictConfig:
        self.composes += 1
        self.new_keys = True
        return compose(self.config_name, overrides)

    def _parse(self, text: str) -> Override:
        if text not in self.parsed:
            self.parsed[text] = self.parser.parse_overrides([text])[0]
        return self.parsed[text]

    def _is_plain(self, o: Override) -> bool:
        text = o.input_line or ""
        if text not in self.plain:
            self.plain[text] = _plain_value(o)
        return self.plain[text]

    def __call__(self, overrides: list[str]) -> DictConfig:
        try:
            parsed = [self._parse(text) for text in overrides]
        except Exception:  # Hydra's own parse error, as Hydra says it
            return self._compose(overrides)
        plain = [self._is_plain(o) for o in parsed]
        values = [o for o, p in zip(parsed, plain, strict=True) if p]
        structural = tuple(o.input_line or "" for o, p in zip(parsed, plain, strict=True) if not p)
        key = (structural, tuple(o.key_or_group for o in values))
        cfg = self.scratch.get(key)
        self.new_keys = cfg is None
        if cfg is None:
            base = self.structures.get(structural)
            if base is None:
                base = self.structures[structural] = self._compose(list(structural))
            cfg = self.scratch[key] = copy.deepcopy(base)
        try:
            for o in values:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        except Exception:  # say it as Hydra says it; the copy is in an unknown state now
            del self.scratch[key]
            return self._compose(overrides)
        return cfg


def _plain_value(o: Override) -> bool:
    """`key=value` on a leaf of the schema: a value, not a structure."""
    if o.is_add() or o.is_delete() or o.is_force_add() or o.package is not None:
        return False
    key = o.key_or_group
    if key.startswith("hydra") or o.is_sweep_override():
        return False
    return in_schema(key) and not isinstance(schema_node(key), DictConfig)
