"""`python -m mlp_sweep --resume DIR`: the command line that made DIR, replayed into DIR.

A sweep folder may come from someone else, so only what cannot run code is replayed: the
schema's own keys, this project's config groups and presets, and the settings of the
launchers and sweepers it ships. An override that could name code (a `_target_`, a Hydra
callback, a logging handler, another plugin) is refused with one line that says how to pass
it explicitly, on your own command line, if you trust it.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from mlp_sweep.cli.checks import in_schema
from mlp_sweep.errors import ConfigError
from mlp_sweep.labels import MULTIRUN_FILE, command, hydra_value
from mlp_sweep.paths import CONF_DIR

# Hydra options that are not overrides; the saved ones must not be replayed.
NOT_REPLAYED = ("hydra.sweep.dir=", "hydra.mode=")
# Launchers and sweepers a resume may switch to: Hydra's built-in ones and this project's.
PLUGINS = {
    "hydra/launcher": {"basic", "parallel", "slurm", "fused"},
    "hydra/sweeper": {"basic", "grid", "mlp_sweep_optuna"},
}
# Hydra settings that only place, name or tune the jobs; none can name code.
HYDRA_KEYS = re.compile(
    r"hydra\.(run\.dir|sweep\.subdir|job\.(name|chdir)|verbose|output_subdir"
    r"|launcher\.(?!_target_)\w+(\.\w+)*|sweeper\.(?!_target_|params\.)\w+(\.\w+)*)$"
)


def _group_options(group: str) -> set[str]:
    folder = CONF_DIR / group
    found = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    return found | PLUGINS.get(group, set())


def unsafe(text: str, parser: OverridesParser) -> bool:
    """True when replaying this override could run code that is not this project's."""
    if "_target_" in text:
        return True
    try:
        override = parser.parse_override(text)
    except HydraException:
        return True  # nothing we cannot read is replayed
    key = override.key_or_group
    if key.startswith("hydra.sweeper.params."):  # a search space: itself an override
        return unsafe(f"{key.removeprefix('hydra.sweeper.params.')}=x", parser)
    if key.startswith("hydra"):
        if "/" in key:
            values = (
                [str(v) for v in override.sweep_string_iterator()]
                if override.is_sweep_override()
                else [override.get_value_element_as_str()]
            )
            return key not in PLUGINS or not set(values) <= PLUGINS[key]
        return not HYDRA_KEYS.match(key)
    if (CONF_DIR / key).is_dir():  # a config group: only its own options
        if override.is_sweep_override():
            return False  # glob()/choice() over the group's own options
        value = override.value()
        options = value if isinstance(value, list) else [value]
        return not {str(v) for v in options} <= _group_options(key)
    return not in_schema(key)


def resume_argv(argv: list[str]) -> list[str]:
    """`--resume DIR [overrides...]` -> the command line that made DIR, pointed at DIR."""
    if "--resume" not in argv:
        return argv
    at = argv.index("--resume")
    if at + 1 >= len(argv):
        raise ConfigError("--resume", "", "give the sweep folder to resume")
    folder, extra = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    saved = folder / MULTIRUN_FILE
    if not saved.is_file():
        raise ConfigError("--resume", folder, f"not a sweep folder (no {saved})")
    overrides = OmegaConf.load(saved).hydra.overrides
    parser = OverridesParser.create()
    replayed = []
    for text in [str(o) for o in [*overrides.hydra, *overrides.task]]:
        if text.startswith(NOT_REPLAYED) or text in extra:
            continue
        if unsafe(text, parser):
            raise ConfigError(
                "--resume",
                folder,
                f"{saved} asks for {text}, which can run code, so it is not replayed; "
                f"if you trust it, give it yourself: {command('--resume', str(folder), text)}",
            )
        replayed.append(text)
    extra = [a for a in extra if a not in ("-m", "--multirun")]
    return ["-m", *replayed, f"hydra.sweep.dir={hydra_value(str(folder))}", *extra]
