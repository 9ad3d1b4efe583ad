"""`python -m mlp_sweep --resume DIR`: the command line that made DIR, replayed into DIR.

A sweep folder may come from someone else, so it is data: its multirun.yaml is read as plain
YAML (mlp_sweep.labels.read_multirun) and only an allowlist of its saved overrides is replayed
(mlp_sweep.cli.replay). Any other override is refused with one line naming it and why, and
saying how to give it on your own command line if you trust the folder; nothing starts.
What you give on the resume's command line is yours and passed on as it is.
"""

from __future__ import annotations

from pathlib import Path

from hydra.errors import HydraException

from mlp_sweep.cli.replay import CONTROL, DROPPED, refusal
from mlp_sweep.errors import ConfigError
from mlp_sweep.hydra_compat import overrides_parser
from mlp_sweep.labels import (
    MULTIRUN_FILE,
    SweepFileError,
    command,
    hydra_value,
    key_of,
    read_multirun,
)


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
    yours = _keys(extra)
    replayed = []
    for text in saved_overrides(folder):
        if text in extra or key_of(text) in DROPPED:
            continue
        why = refusal(text, folder)
        if why is None:
            replayed.append(text)
        elif key_of(text) not in yours:  # given again by the user, whose value decides
            raise ConfigError("--resume", folder, _refused(saved, text, why, folder))
    extra = [a for a in extra if a not in ("-m", "--multirun")]
    return ["-m", *replayed, f"hydra.sweep.dir={hydra_value(str(folder))}", *extra]


def saved_overrides(folder: Path) -> list[str]:
    """The overrides of the command that made the sweep in folder: Hydra's, then the task's,
    as the strings Hydra saved (a `${...}` in them is Hydra's to read, as it was then)."""
    path = folder / MULTIRUN_FILE
    try:
        lists = read_multirun(folder)["hydra"]["overrides"]
        found = [*lists["hydra"], *lists["task"]]
    except (KeyError, TypeError):
        raise SweepFileError(f"{path}: no hydra.overrides.hydra and .task lists") from None
    if not all(isinstance(text, str) for text in found):
        raise SweepFileError(f"{path}: hydra.overrides holds a value that is no override string")
    return found


def _keys(extra: list[str]) -> set[str]:
    """The keys the user's own overrides set (flags and what Hydra cannot parse left out)."""
    keys = set()
    for text in extra:
        if text.startswith("-") or "=" not in text:
            continue
        try:
            keys.add(overrides_parser().parse_override(text).key_or_group)
        except HydraException:
            pass
    return keys


def _refused(saved: Path, text: str, why: str, folder: Path) -> str:
    """The one line: the override, why it is not replayed, and how to give it yourself."""
    if CONTROL.search(text):  # shown escaped, and no line to paste: a shell cannot take it so
        shown = text.encode("unicode_escape").decode("ascii")
        return (
            f"{saved} asks for {shown}: {why}, so it is not replayed; if you trust the folder, "
            f"give the setting yourself after {command('--resume', str(folder))}"
        )
    return (
        f"{saved} asks for {text}: {key_of(text)} {why}, so it is not replayed; if you trust "
        f"the folder, give it yourself: {command('--resume', str(folder), text)}"
    )
