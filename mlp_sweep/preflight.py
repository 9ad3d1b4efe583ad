"""Check every job of a command before Hydra starts any of them.

Hydra composes a sweep's jobs one at a time as it launches them, and its own checks stop at
types and choices. Here each job is composed up front with Hydra's Compose API and put through
the same checks a run does (ranges, device, data files), so `-m optim.lr=0.1,-1` fails before
the first run trains rather than after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from mlp_sweep.config import Config, DataConfig, Dataset, validate
from mlp_sweep.data import ensure_cached
from mlp_sweep.device import resolve_device
from mlp_sweep.errors import MlpSweepError
from mlp_sweep.runner import prior_record

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# Flags after which Hydra prints something instead of running: nothing to check.
INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve")


def to_config(cfg: DictConfig) -> Config:
    """A composed DictConfig (without Hydra's node) as the typed schema."""
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, Config), type(typed)
    return typed


@dataclass
class Job:
    overrides: list[str]
    # The folder Hydra will give the job, where it can be known before launch (the default
    # subdir, the job number); None where a custom subdir makes it unknowable here.
    run_dir: Path | None


def plan(config_name: str, overrides: list[str], multirun: bool) -> list[Job]:
    """Every job the command will launch, as Hydra's basic sweeper expands them (the config's
    hydra.sweeper.params grid, then the command line's)."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.input_line]
    base = compose(config_name, fixed if multirun else overrides, return_hydra_config=True)
    if not multirun:
        return [Job(overrides, Path(base.hydra.run.dir))]
    if base.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return [Job(fixed, None)]  # other sweepers choose their values as they go
    params = base.hydra.sweeper.get("params") or {}
    grid = [f"{key}={value}" for key, value in params.items()] + overrides
    sweep_dir = Path(base.hydra.sweep.dir)
    raw = OmegaConf.to_container(base.hydra.sweep, resolve=False)
    by_number = isinstance(raw, dict) and raw.get("subdir") == "${hydra.job.num}"
    jobs = [
        job
        for batch in BasicSweeper.split_arguments(parser.parse_overrides(grid), None)
        for job in batch
    ]
    return [Job(job, sweep_dir / str(num) if by_number else None) for num, job in enumerate(jobs)]


def check_data(cfg: DataConfig, checked: set[tuple[str, str]]) -> None:
    """Data ready before any job starts: MNIST files present and intact, another dataset
    downloaded here once rather than by every job at the same time."""
    key = (cfg.name.name, str(cfg.root))
    if cfg.name is not Dataset.synthetic and key not in checked:
        ensure_cached(cfg)
        checked.add(key)


def check_job(cfg: Config, run_dir: Path | None, checked: set[tuple[str, str]]) -> str | None:
    """Every check a run would fail on, before any run starts. Returns the status of an
    earlier run of this config in run_dir (None if there is none)."""
    validate(cfg)
    resolve_device(cfg.device)
    check_data(cfg.data, checked)
    if run_dir is None or not run_dir.exists():
        return None
    prior = prior_record(run_dir, cfg)  # raises ConfigMismatch
    return prior.get("status") if prior else None


def preflight(argv: list[str]) -> list[str | None]:
    """Compose and check every job the command line asks for, before any trains.

    Returns, per job, the status of an earlier run in its folder (None: a fresh job). Raises
    MlpSweepError, or Hydra's/OmegaConf's own composition error, for the first bad job.
    """
    args, _ = get_args_parser().parse_known_args(argv)
    if any(getattr(args, flag, None) for flag in INFO_FLAGS) or args.config_dir or args.config_path:
        return []
    config_name = args.config_name or "config"
    checked: set[tuple[str, str]] = set()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="mlp_sweep"):
        return [
            check_job(to_config(compose(config_name, job.overrides)), job.run_dir, checked)
            for job in plan(config_name, list(args.overrides), bool(args.multirun))
        ]


def _schema_keys(full_key: str) -> list[str]:
    """The keys allowed beside `full_key` in the schema, for 'no such key' messages."""
    node = OmegaConf.structured(Config)
    for part in full_key.split(".")[:-1]:
        if not isinstance(node, DictConfig) or part not in node:
            return []
        node = node[part]
    return [str(k) for k in node] if isinstance(node, DictConfig) else []


def error_line(err: BaseException) -> str:
    """One line naming the key, the value and what is allowed, for any error preflight raises."""
    if isinstance(err, MlpSweepError):
        return str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, value = err.missing_cfg_file.rpartition("/")
        options = ", ".join(err.options or [])
        return f"{group}={value}: no such choice; choose one of: {options}"
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        message = getattr(cause, "msg", None) or str(cause)
        first = message.strip().splitlines()[0] if message.strip() else type(cause).__name__
        if isinstance(cause, ConfigKeyError | ConfigAttributeError) and key:
            allowed = _schema_keys(key)
            if allowed:
                return f"{key}: no such key; keys here: {', '.join(allowed)}"
        return f"{key}: {first}" if key else first
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
