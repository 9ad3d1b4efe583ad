"""What people read of runs and sweeps: short names, counts, and the commands we print.

`-m model.act=relu,selu data=synthetic` names its runs `model.act=relu` and `model.act=selu`:
data=synthetic is the same for every run and would only make legends and console lines longer.

Every command mlp_sweep prints for a user to paste (resume, retry, re-run) comes from
`command`, quoted as a POSIX shell reads it back: a folder named `int sweep's dir` pastes whole.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Any

import yaml

from mlp_sweep.errors import MlpSweepError

MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it into the sweep folder before any job
# logger=mlflow's files in a sweep folder: the parent run's id, and the sweep's own store.
MLFLOW_PARENT_FILE = "mlflow.json"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"  # holds copies of the runs' records: no run folders
MLFLOW_FILES = (MLFLOW_PARENT_FILE, f"{MLFLOW_PARENT_FILE}.lock", MLFLOW_DB, MLFLOW_ARTIFACTS)
# A YAML file Hydra writes into a sweep folder (multirun.yaml: a few KB, a search's space adds
# little) holds ~500 YAML events nested ~6 deep. Each bound is far above that and well below
# what takes a second to read: libyaml's parse slows with the square of the nesting (100,000
# levels: 30 s, then a crash), and a 1 MB file of 340,000 empty lists took 4 s to load here.
YAML_MAX_BYTES = 1 << 20
YAML_MAX_EVENTS = 50_000
YAML_MAX_DEPTH = 32
SUMMARY_FILE = "summary.csv"  # a row per run (mlp_sweep.results.summary)


def command(*args: str, module: str = "mlp_sweep") -> str:
    """`python -m <module> args...`, each argument quoted for the shell where it needs it."""
    return shlex.join(["python", "-m", module, *args])


def resume_command(sweep_dir: Path | str) -> str:
    return command("--resume", str(sweep_dir))


def hydra_value(value: str) -> str:
    """A value as Hydra's override grammar reads it back (quoted where it has spaces, quotes
    or other characters the grammar gives a meaning); the shell's quoting goes around it."""
    if re.fullmatch(r"[\w/.\-:~]+", value):
        return value
    return "'" + value.replace("'", "\\'") + "'"


def counted(n: int, noun: str) -> str:
    """1 run, 2 runs."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def short(override: str) -> str:
    """optim.lr=0.03028525153605885 -> optim.lr=0.03029: a search's floats, readable."""
    key, sep, value = override.partition("=")
    if sep and "." in value and len(value) > 8:
        try:
            return f"{key}={float(value):.4g}"
        except ValueError:
            pass
    return override


def label(overrides: list[str], swept: set[str] | None) -> str:
    """The overrides whose keys are swept (all of them when that is unknown or leaves none)."""
    kept = [o for o in overrides if swept is None or key_of(o) in swept]
    return " ".join(short(o) for o in kept or overrides)


def swept_in_command(overrides: list[str], sweeper_params: dict[str, Any] | None) -> set[str]:
    """Keys given several values: on the command line (a,b / range() / glob) or as the
    sweeper's params."""
    # Hydra: only where a command line is read, not by the summary.
    from mlp_sweep import hydra_compat
    from mlp_sweep.config import flatten  # the one flattener: {"optim": {"lr": x}} -> optim.lr

    parsed = hydra_compat.overrides_parser().parse_overrides(overrides)
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    return keys | set(flatten(dict(sweeper_params or {})))


def swept_in_folder(sweep_dir: Path) -> set[str] | None:
    """The swept keys of the sweep that made sweep_dir, from its multirun.yaml; None if unknown.
    Every job of a sweep asks (its pictures' title, its loggers' label): the file is read and
    parsed (~2 ms) once per process and version of it."""
    path = sweep_dir / MULTIRUN_FILE
    try:
        seen = path.stat()
    except OSError:
        return None
    swept = _swept_in_file(path, seen.st_mtime_ns, seen.st_size)
    return None if swept is None else set(swept)


@functools.lru_cache(maxsize=8)
def _swept_in_file(path: Path, mtime_ns: int, size: int) -> frozenset[str] | None:
    try:
        hydra = read_multirun(path.parent)["hydra"]
        params = (hydra.get("sweeper") or {}).get("params")
        return frozenset(swept_in_command(list(hydra["overrides"]["task"]), params)) or None
    except Exception:  # a label is cosmetic: never a reason to fail
        return None


class SweepFileError(MlpSweepError):
    """A YAML file of a sweep folder that is not the plain data Hydra writes: one line naming
    the file."""


def read_multirun(sweep_dir: Path) -> dict[str, Any]:
    """A sweep folder's multirun.yaml as plain data (read_plain_yaml). Raises SweepFileError."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    data = read_plain_yaml(path)
    if not isinstance(data, dict):
        raise SweepFileError(f"{path}: not a mapping of Hydra's settings")
    return data


def read_plain_yaml(path: Path) -> Any:
    """A YAML file Hydra wrote into a sweep folder, as plain data, where a folder from elsewhere
    may hold anything: read by YAML's safe loader, no `${...}` resolved (the saved overrides
    are the strings Hydra wrote), no alias (Hydra writes none; a few nested ones expand to
    gigabytes), within the YAML_MAX_ bounds. Raises SweepFileError."""
    text = _bounded_text(path)
    try:
        depth = 0
        for count, event in enumerate(yaml.parse(text, Loader=_LOADER)):  # nothing expanded
            if count > YAML_MAX_EVENTS:
                raise SweepFileError(
                    f"{path}: more than {YAML_MAX_EVENTS} YAML values, where Hydra writes a "
                    "few hundred; not read"
                )
            if isinstance(event, yaml.AliasEvent):
                raise SweepFileError(
                    f"{path}: holds a YAML alias, which Hydra never writes; not read"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > YAML_MAX_DEPTH:
                    raise SweepFileError(
                        f"{path}: nested deeper than {YAML_MAX_DEPTH} levels, where Hydra "
                        "writes a few; not read"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        data = yaml.load(text, Loader=_LOADER)
    except SweepFileError:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SweepFileError(f"{path}: not readable YAML ({where}{err.problem})") from None
    except Exception as err:  # the constructors' own (a number past int's digits, a date)
        raise SweepFileError(f"{path}: not readable YAML ({type(err).__name__})") from None
    return data


def _bounded_text(path: Path) -> str:
    """The file's text, refused past YAML_MAX_BYTES; a FIFO or device is never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise SweepFileError(f"{path}: cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SweepFileError(f"{path}: not a regular file")
        data = file.read(YAML_MAX_BYTES + 1)
    if len(data) > YAML_MAX_BYTES:
        raise SweepFileError(
            f"{path}: larger than {YAML_MAX_BYTES >> 20} MB, where Hydra writes a few KB; not read"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SweepFileError(f"{path}: not UTF-8 text") from None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
