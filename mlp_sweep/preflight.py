"""Check every job of a command before Hydra starts any of them.

Hydra composes a sweep's jobs one at a time as it launches them, and its own checks stop at
types and choices. Here each job is composed up front with Hydra's Compose API and put through
the same checks a run does (ranges, device, data files), so `-m optim.lr=0.1,-1` fails before
the first run trains rather than after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from mlp_sweep.config import Config, Dataset, validate
from mlp_sweep.data import prepare_raw
from mlp_sweep.device import resolve_device
from mlp_sweep.errors import MlpSweepError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# Flags after which Hydra prints something instead of running: nothing to check.
INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve")


def to_config(cfg: DictConfig) -> Config:
    """A composed DictConfig (without Hydra's node) as the typed schema."""
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, Config), type(typed)
    return typed


def job_overrides(config_name: str, overrides: list[str], multirun: bool) -> Iterator[list[str]]:
    """The override list of every job the command will launch, as Hydra's basic sweeper
    expands them (the config's hydra.sweeper.params grid, then the command line's)."""
    if not multirun:
        yield overrides
        return
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    base = compose(config_name, [o for o in fixed if o is not None], return_hydra_config=True)
    if base.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        yield [o for o in fixed if o is not None]  # other sweepers choose values as they go
        return
    params = base.hydra.sweeper.get("params") or {}
    grid = [f"{key}={value}" for key, value in params.items()] + overrides
    for batch in BasicSweeper.split_arguments(parser.parse_overrides(grid), None):
        yield from batch


def check_job(cfg: Config, data_checked: set[tuple[str, str]]) -> None:
    validate(cfg)
    resolve_device(cfg.device)
    if cfg.data.name is Dataset.mnist:
        key = (cfg.data.name.name, str(cfg.data.root))
        if key not in data_checked:
            prepare_raw(cfg.data)
            data_checked.add(key)


def preflight(argv: list[str]) -> int:
    """Compose and check every job the command line asks for. Returns the number of jobs.

    Raises MlpSweepError or Hydra's/OmegaConf's own composition error for the first bad job.
    """
    args, _ = get_args_parser().parse_known_args(argv)
    if any(getattr(args, flag, None) for flag in INFO_FLAGS) or args.config_dir or args.config_path:
        return 0
    config_name = args.config_name or "config"
    data_checked: set[tuple[str, str]] = set()
    count = 0
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="mlp_sweep"):
        for overrides in job_overrides(config_name, list(args.overrides), bool(args.multirun)):
            check_job(to_config(compose(config_name, overrides)), data_checked)
            count += 1
    return count


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
