"""What `--resume DIR` replays of DIR's saved command line: an allowlist.

A sweep folder may come from someone else, so its multirun.yaml is data, and only overrides
that can neither run code nor reach past the folder are replayed:

- the task's own: keys of the schema, and this project's config groups and presets with the
  options shipped in conf/ (each value of a sweep checked);
- `hydra/launcher=` and `hydra/sweeper=` with the plugins this project ships or uses;
- the launchers' and sweepers' settings that only size, place or tune the jobs (LAUNCHER_KEYS,
  SWEEPER_KEYS), each a plain value: no spaces or quotes, which a SLURM script would read as
  further options; a search's space (`hydra.sweeper.params.<key>`) checked as the task's key;
- the folders a job writes to below the sweep folder (FOLDER_KEYS): relative, no `..`;
- an Optuna storage only where it is a file inside the folder;
- never where the runs' data is sent (DESTINATIONS: an MLflow tracking URI, a visdom server):
  a folder could send it anywhere, or name a database file anywhere on this machine. The user
  gives it again on the command line, and that value is used.

Never a value with a control character (a line break would start a new line of a SLURM
script), a `_target_`, an `@package` override, or a `${resolver:...}` (evaluated on this
machine: `${oc.env:...}` reads its environment). Everything else is refused; `refusal` says
why in words that fit the command's one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, Glob, Override
from hydra.errors import HydraException

from mlp_sweep.cli.checks import in_schema
from mlp_sweep.hydra_compat import overrides_parser
from mlp_sweep.paths import CONF_DIR

# Saved options that are not the sweep's settings: the folder is the one being resumed, and
# the mode is the multirun the resume always is.
DROPPED = {"hydra.sweep.dir", "hydra.mode"}
# Launchers and sweepers a resume may switch to: Hydra's built-in ones and this project's.
PLUGINS = {
    "hydra/launcher": {"basic", "parallel", "slurm", "fused"},
    "hydra/sweeper": {"basic", "grid", "mlp_sweep_optuna"},
}
# The settings of hydra_plugins/mlp_sweep_launchers (parallel, fused) and of Hydra's submitit
# SLURM launcher (conf/hydra/launcher/slurm.yaml) that only size and place the jobs. Not
# setup (shell lines in the sbatch script), additional_parameters (any sbatch option),
# submitit_folder (a path), name (the SLURM job name, from hydra.job.name), _target_.
LAUNCHER_KEYS = {
    "n_jobs", "retries", "fuse", "min_group", "max_group",
    "timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes",
    "partition", "qos", "account", "comment", "constraint", "exclude", "gres", "cpus_per_gpu",
    "gpus_per_task", "mem_per_gpu", "mem_per_cpu", "signal_delay_s", "max_num_timeout",
    "array_parallelism", "stderr_to_stdout",
}  # fmt: skip
# hydra_plugins/mlp_sweep_optuna/config.py's and the grid (and Hydra's basic) sweeper's keys;
# storage and params are judged on their own (_storage, _space).
SWEEPER_KEYS = {
    "direction", "objective", "seeds", "study_name", "n_trials", "n_jobs", "sampler.name",
    "sampler.seed", "pruner", "pruning.min_epochs", "pruning.reduction_factor",
    "pruning.warmup_trials", "max_batch_size",
}  # fmt: skip
# Keys that name where the runs' data goes (a server, a database file).
DESTINATIONS = {"logger.mlflow.tracking_uri", "logger.visdom.server", "logger.visdom.port"}
# Hydra's job settings a resume may need to find and write its runs as the sweep did.
JOB_KEYS = {"hydra.job.chdir", "hydra.verbose", "hydra.job.name"}
# Folders below the job's (or the sweep's) folder; hydra.run.dir is a single run's and takes
# no effect in a sweep, but is held to the same rule.
FOLDER_KEYS = {"hydra.sweep.subdir", "hydra.output_subdir", "hydra.run.dir"}
# What a folder key may name through ${...}: the job's own number, id and name.
FOLDER_INTERPOLATIONS = {"hydra.job.num", "hydra.job.id", "hydra.job.name"}

# A setting's plain value: SLURM names, counts, memory (4G), node lists, constraints (a&b|c).
# No space or quote: submitit writes `#SBATCH --<key>=<value>`, and sbatch reads a space there
# as the start of another option.
PLAIN = re.compile(r"[\w.,:+\-@%&|!*\[\]]+")
JOB_NAME = re.compile(r"\w[\w.\-]*")  # a file name (<name>.log) and the SLURM job name
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.\-]*)\s*:")
INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")
SWEEP_DIR = "${hydra.sweep.dir}"


def refusal(text: str, folder: Path) -> str | None:
    """Why `--resume folder` does not replay the saved override `text`; None where it does."""
    if CONTROL.search(text):
        return "holds a line break or another control character"
    if "_target_" in text:
        return "names code to run (_target_)"
    resolver = RESOLVER.search(text)
    if resolver:
        return f"calls ${{{resolver.group(1)}:...}}, which reads this machine, not the folder"
    try:
        override = overrides_parser().parse_override(text)
    except HydraException:
        return "is not an override Hydra's grammar reads"
    if override.package is not None:
        return "moves a config to another @package"
    key = override.key_or_group
    if key in DESTINATIONS:
        return "names where the runs' data is sent, which a folder may not choose"
    if key.startswith("hydra.sweeper.params."):
        return _space(key.removeprefix("hydra.sweeper.params."), text.partition("=")[2], folder)
    if key.startswith("hydra"):
        return _hydra(key, override, folder)
    if (CONF_DIR / key).is_dir():
        return _group(key, override)
    return None if in_schema(key) else "is no key of this project's config"


def _space(key: str, space: str, folder: Path) -> str | None:
    """A search's space for `key`, judged as the task's own override `key=space` (and the
    space a quoted string holds, as the sweeper reads it)."""
    if key.startswith("hydra"):
        return "searches a Hydra setting, not the task's"
    why = refusal(f"{key}={space}", folder)
    if why is None:
        value = overrides_parser().parse_override(f"{key}={space}").value()
        if isinstance(value, str) and value != space:
            why = refusal(f"{key}={value}", folder)
    return why


def _group(group: str, override: Override) -> str | None:
    """A config group of this project: only the options conf/<group>/ ships."""
    value = override.value()
    if isinstance(value, Glob) or value is None:  # glob(): matches only options that exist
        return None
    if isinstance(value, ChoiceSweep):
        value = value.list
    elif override.is_sweep_override():
        return "sweeps a config group over something other than its options"
    options = {str(v) for v in (value if isinstance(value, list) else [value])}
    unknown = sorted(options - _group_options(group))
    if unknown:
        return f"is no option of {group} shipped in {CONF_DIR / group}: {', '.join(unknown)}"
    return None


def _group_options(group: str) -> set[str]:
    folder = CONF_DIR / group
    found = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    return found | PLUGINS.get(group, set())


def _hydra(key: str, override: Override, folder: Path) -> str | None:
    if key in PLUGINS:
        return _group(key, override)
    if "/" in key:
        return "chooses a Hydra config group other than hydra/launcher or hydra/sweeper"
    if override.is_sweep_override():
        return "sweeps a Hydra setting, which takes one value"
    value = override.value()
    if key in FOLDER_KEYS:
        return _folder(value)
    if key == "hydra.job.name":
        ok = isinstance(value, str) and JOB_NAME.fullmatch(value)
        return None if ok else "is a file name and a SLURM job name: letters, digits, . _ -"
    if key == "hydra.sweeper.storage":
        return _storage(value, folder)
    setting = key.removeprefix("hydra.launcher.").removeprefix("hydra.sweeper.")
    known = (
        key in JOB_KEYS
        or (key.startswith("hydra.launcher.") and setting in LAUNCHER_KEYS)
        or (key.startswith("hydra.sweeper.") and setting in SWEEPER_KEYS)
    )
    if not known:
        return "is not among the settings --resume replays (it may run commands or name paths)"
    return None if _plain(value) else "takes a plain value here (no spaces, quotes or ${...})"


def _plain(value: Any, nested: bool = False) -> bool:
    if isinstance(value, list) and not nested:
        return all(_plain(v, nested=True) for v in value)
    if isinstance(value, str):
        return bool(PLAIN.fullmatch(value))
    return value is None or isinstance(value, bool | int | float)


def _folder(value: Any) -> str | None:
    """A folder below the sweep's or the job's: relative, no `..`, only the job's own ${...}."""
    if value is None:
        return None  # hydra.output_subdir=null: no .hydra folder
    if not isinstance(value, str) or not value:
        return "names a folder: a relative path"
    named = {name.strip() for name in INTERPOLATION.findall(value)}
    if not named <= FOLDER_INTERPOLATIONS or "$" in INTERPOLATION.sub("", value):
        return (
            f"names a folder through ${{...}} other than {', '.join(sorted(FOLDER_INTERPOLATIONS))}"
        )
    if value.startswith(("/", "~", "\\")) or ".." in re.split(r"[/\\]", value):
        return "names a folder outside the sweep folder (absolute, or with ..)"
    return None


def _storage(value: Any, folder: Path) -> str | None:
    """An Optuna storage the resume opens: only a file inside the folder (a journal, or
    sqlite:///<file>); a database server or a file elsewhere is not the folder's data."""
    if value is None:
        return None  # the folder's own optuna.journal
    path = value.removeprefix("sqlite:///") if isinstance(value, str) else ""
    path = path.replace(SWEEP_DIR, str(folder))
    if not path or "://" in path or "?" in path or "$" in path:
        return "opens a database or file outside the sweep folder"
    inside = folder.resolve()
    return (
        None if inside in Path(path).resolve().parents else "opens a file outside the sweep folder"
    )
