"""The command line as typed: Hydra's flags checked up front, and any mistake as one line.

@hydra.main raises a bare ValueError (a traceback) for some mistakes in its own flags, and lets
`+key=value` add keys that nothing reads. Both are caught here, before anything runs, with one
line naming what was typed and what would work.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from enum import Enum
from pathlib import Path
from typing import TypeGuard

from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from mlp_sweep.config import Config, LoggerConfig
from mlp_sweep.errors import MlpSweepError, first_line
from mlp_sweep.paths import CONF_DIR

MODES = {
    "--run": "run",
    "-m/--multirun": "multirun",
    "--cfg": "cfg",
    "--info": "info",
    "--shell-completion": "shell_completion",
}
COMPLETION = ("install", "uninstall", "query")


class CommandError(MlpSweepError):
    """A command line Hydra would refuse, said in one line."""


def primary_configs() -> list[str]:
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def check_flags(args: argparse.Namespace) -> None:
    """Hydra's flags that cannot go together or lack what they need. Raises CommandError."""
    given = [flag for flag, attr in MODES.items() if getattr(args, attr) not in (None, False)]
    if len(given) > 1:
        raise CommandError(
            f"{' and '.join(given)}: only one of --run, -m/--multirun, --cfg, --info and "
            "--shell-completion at a time"
        )
    if args.resolve and args.cfg is None and not args.help:
        raise CommandError("--resolve: only with --cfg (e.g. --cfg job --resolve) or --help")
    if args.shell_completion:
        asked = [o.split("=", 1)[0] for o in args.overrides if o.split("=", 1)[0] in COMPLETION]
        if len(asked) != 1:
            raise CommandError(
                "--shell-completion: give one of install=SHELL, uninstall=SHELL or query=SHELL "
                "(e.g. mlp-sweep --shell-completion install=bash; it completes the console "
                "script mlp-sweep, not python -m)"
            )
    rerun = args.experimental_rerun
    if rerun is not None and not Path(rerun).is_file():
        raise CommandError(
            f"--experimental-rerun={rerun}: no such file; give the .hydra/config.pickle of a "
            "run made with +hydra.callbacks.save_job_info._target_="
            "hydra.experimental.callbacks.PickleJobInfoCallback"
        )
    if args.config_dir and not Path(args.config_dir).is_dir():
        raise CommandError(f"-cd/--config-dir={args.config_dir}: no such folder")
    _check_primary(args.config_name or "config", args.config_dir, args.config_path)
    _check_extras(args.overrides)


# Options whose plugin comes with an extra: (override, module it needs, the line to say).
EXTRAS = [
    (
        "hydra/launcher=slurm",
        "hydra_plugins.hydra_submitit_launcher",
        'hydra/launcher=slurm needs the cluster extra: pip install ".[cluster]"',
    ),
    (
        "hparams_search=optuna",
        "optuna",
        'hparams_search=optuna needs the search extra: pip install ".[search]"',
    ),
]


def _check_extras(overrides: list[str]) -> None:
    import importlib.util

    for option, module, line in EXTRAS:
        if option in overrides and importlib.util.find_spec(module) is None:
            raise CommandError(line)


def _check_primary(name: str, config_dir: str | None, config_path: str | None) -> None:
    """The primary config must exist where Hydra will look: conf/, or -cd DIR beside it, or an
    absolute -cp DIR instead of it (a relative -cp is Hydra's to resolve)."""
    if config_path and not Path(config_path).is_absolute():
        return
    folders = [Path(config_path)] if config_path else [CONF_DIR]
    if config_dir:
        folders.insert(0, Path(config_dir))
    found = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
    if name not in found:
        where = " or ".join(str(f) for f in folders)
        flag = (
            "-cn/--config-name" if name != "config" or config_path is None else "-cp/--config-path"
        )
        raise CommandError(
            f"{flag}={name if flag.startswith('-cn') else config_path}: no primary config "
            f"'{name}' in {where}; choose one of: {', '.join(found) or '(none there)'}"
        )


@functools.cache
def _schema() -> DictConfig:
    """The schema as a config, built once (~10 ms a time). Shared: callers must not modify it.
    Every logger's section is filled with its defaults, so that logger.<name>.<key> is a key
    of the schema although each logger is off (null) by default."""
    hints = typing.get_type_hints(LoggerConfig)
    loggers = LoggerConfig()
    for f in dataclasses.fields(LoggerConfig):
        kinds = [t for t in typing.get_args(hints[f.name]) if isinstance(t, type)]
        section = next((t for t in kinds if dataclasses.is_dataclass(t)), None)
        if section is not None:
            setattr(loggers, f.name, section())
    return OmegaConf.structured(Config(logger=loggers))


_ABSENT = object()


def schema_node(key: str) -> object:
    """The schema's node at a dotted key (a section or a field's value), or _ABSENT."""
    node: object = _schema()
    for part in key.split(".") if key else []:
        if not isinstance(node, DictConfig) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def in_schema(key: str) -> bool:
    return schema_node(key) is not _ABSENT


def _schema_keys(full_key: str) -> list[str]:
    """The keys allowed beside `full_key` in the schema, for 'no such key' messages."""
    parent = schema_node(full_key.rpartition(".")[0])
    return [str(k) for k in parent] if isinstance(parent, DictConfig) else []


def check_keys(cfg: DictConfig) -> None:
    """Refuse keys the schema does not have: `+model.actt=selu` is a typo, not a setting.

    (Hydra's `+` adds a key even to a typed config; nothing would ever read it.)
    """

    def walk(node: object, schema: object, prefix: str) -> None:
        if not isinstance(node, dict) or not isinstance(schema, dict):
            return  # a value, or a mapping the schema leaves open (OPEN)
        for key, value in node.items():
            if key not in schema:
                name = f"{prefix}{key}"
                keys = ", ".join(str(k) for k in schema)
                raise CommandError(f"{name}: no such key; keys here: {keys}")
            walk(value, schema[key], f"{prefix}{key}.")

    plain = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(plain, dict):
        plain.pop("hydra", None)
    walk(plain, _schema_tree(), "")


# A mapping of the schema that takes any key (a dict field: logger.mlflow.tags).
OPEN = "<any key>"


@functools.cache
def _schema_tree() -> object:
    """The schema's sections as plain dicts (OPEN for a dict field), built once. Shared:
    callers must not modify it."""

    def tree(node: object) -> object:
        if not isinstance(node, DictConfig):
            return None
        if OmegaConf.get_type(node) is dict:
            return OPEN
        return {str(key): tree(value) for key, value in node.items_ex(resolve=False)}

    return tree(_schema())


def value_choices(word: str) -> list[str] | None:
    """Shell completion of `key=partial` for a schema key with a fixed set of values (an Enum, a
    bool): `model.act=s` -> model.act=selu, model.act=sigmoid, ... None where Hydra's own
    completion answers (config groups, keys, free values)."""
    key, sep, partial = word.partition("=")
    parent_key, _, name = key.lstrip("+~").rpartition(".")
    parent = schema_node(parent_key)
    if not sep or not isinstance(parent, DictConfig) or name not in parent:
        return None
    kind = OmegaConf.get_type(parent, name)
    if _is_enum(kind):
        values = [member.name for member in kind]
    elif kind is bool:
        values = ["true", "false"]
    else:
        return None
    return [f"{key}={v}" for v in values if v.startswith(partial)]


def _is_enum(kind: object) -> TypeGuard[type[Enum]]:
    return isinstance(kind, type) and issubclass(kind, Enum)


def _section_hint(key: str, value: object) -> str | None:
    """For `model=relu`: the key in that section that takes such a value, if one does."""
    node = schema_node(key)
    if not isinstance(node, DictConfig):
        return None
    keys = [str(k) for k in node]
    fits = []
    for name in keys:
        try:
            OmegaConf.merge(node, {name: value})
            fits.append(name)
        except OmegaConfBaseException:
            continue
    # A key whose type is an Enum that accepts the value is the likely meaning.
    enums = [name for name in fits if _is_enum(OmegaConf.get_type(node, name))]
    guess = (enums or fits)[:1]
    did = f"did you mean {key}.{guess[0]}={value}? " if guess else ""
    return (
        f"{key}={value}: {key} is a section, not a value; {did}(keys in {key}: {', '.join(keys)})"
    )


def error_line(err: BaseException) -> str:
    """One line naming the key, the value and what is allowed, for any error preflight raises."""
    if isinstance(err, MlpSweepError):
        return str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, value = err.missing_cfg_file.rpartition("/")
        options = ", ".join(err.options or [])
        first = first_line(str(err))
        if not group and first.startswith("In '"):  # a defaults list names a missing config
            return first
        if not group:
            return (
                f"-cn/--config-name={value}: no such primary config; choose one of: "
                f"{', '.join(primary_configs())}"
            )
        return f"{group}={value}: no such choice; choose one of: {options}"
    text = str(err).strip()
    if "does not support sweep type" in text:
        return (
            "the basic sweeper takes lists, range() and choice(), not interval() or tag(); "
            "for those use a search: -m hparams_search=optuna"
        )
    if text.startswith("Multiple values for "):  # `+group=x` for a group already in defaults
        group = text.removeprefix("Multiple values for ").split(".", 1)[0]
        return (
            f"+{group}=...: {group} is already in the defaults list; set it without the +, "
            f"e.g. {group}=<choice>"
        )
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        message = getattr(cause, "msg", None) or str(cause)
        first = first_line(message) or type(cause).__name__
        if isinstance(cause, ConfigKeyError | ConfigAttributeError) and key:
            allowed = _schema_keys(key)
            if allowed:
                return f"{key}: no such key; keys here: {', '.join(allowed)}"
        if isinstance(cause, ValidationError) and key and first.startswith("Invalid type assigned"):
            hint = _section_hint(key, first.rsplit("value: ", 1)[-1].strip())
            if hint:
                return hint
        return f"{key}: {first}" if key else first
    return first_line(text) or type(err).__name__
