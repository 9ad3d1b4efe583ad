"""What people read of runs and sweeps: short names, counts, and the commands we print.

`-m model.act=relu,selu data=synthetic` names its runs `model.act=relu` and `model.act=selu`:
data=synthetic is the same for every run and would only make legends and console lines longer.

Every command mlp_sweep prints for a user to paste (resume, retry, re-run) comes from
`command`, quoted as a POSIX shell reads it back: a folder named `int sweep's dir` pastes whole.
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it into the sweep folder before any job
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
        saved = yaml.load(path.read_text(), Loader=_LOADER)
        hydra = saved["hydra"]
        params = (hydra.get("sweeper") or {}).get("params")
        return frozenset(swept_in_command(list(hydra["overrides"]["task"]), params)) or None
    except Exception:  # a label is cosmetic: never a reason to fail
        return None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
