"""A sweep folder is data, never code: a crafted multirun.yaml is refused or read safely.

One real tiny sweep is made once; each case copies it and edits its multirun.yaml as someone
handing over a folder could. For each, `--resume` exits 2 with one line (no traceback), starts
nothing (the folder's files unchanged), and writes nothing outside the folder (a decoy HOME
and the folders around the sweep hashed before and after); `mlp_sweep.load` and the summary
read the folder without a traceback. The resume is called in this process (run_main); a real
process only where the entry point itself is what is tested.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from mlp_sweep.cli.resume import resume_argv
from mlp_sweep.labels import MULTIRUN_FILE, SweepFileError, command, read_multirun
from mlp_sweep.results.collect import load
from mlp_sweep.results.publish import main as summary_main
from tests.helpers import cli_env, run_command, run_python, sweep_in

TINY = ["data=synthetic", "data.n_train=200", "trainer.epochs=1", "hydra/launcher=basic"]
DECOY = "@DECOY@"  # stands for the decoy HOME in a case's overrides


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished sweep of one tiny run, never changed: each case edits a copy."""
    return sweep_in(tmp_path_factory, "hostile", *TINY)


def _added(*overrides: str, replace: str | None = None) -> Callable[[dict[str, Any]], str]:
    """An edit of the saved task overrides: these appended (in place of `replace`)."""

    def edit(saved: dict[str, Any]) -> str:
        task = saved["hydra"]["overrides"]["task"]
        task[:] = [o for o in task if o != replace] + list(overrides)
        return yaml.safe_dump(saved)

    return edit


def _text(change: Callable[[str], str]) -> Callable[[dict[str, Any]], str]:
    return lambda saved: change(yaml.safe_dump(saved))


def _torn(text: str) -> str:
    return text[: text.index("  overrides:") + 6]  # a kill mid-write: ends inside a key


def _alias_bomb(text: str) -> str:
    """Nine levels of nine aliases: 9**9 strings once expanded, 1 KB as written."""
    lines = ["lol0: &lol0 [" + ", ".join(["lol"] * 9) + "]"]
    for n in range(1, 10):
        lines.append(f"lol{n}: &lol{n} [" + ", ".join([f"*lol{n - 1}"] * 9) + "]")
    return text + "\n".join(lines) + "\n"


def _huge(text: str) -> str:
    return text + "padding: '" + "x" * (2 << 20) + "'\n"


# case -> (the edit, what the one line must name)
CASES: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "slurm setup": (
        _added("hydra/launcher=slurm", f'hydra.launcher.setup=["touch {DECOY}/pwned"]'),
        "hydra.launcher.setup is not among the settings --resume replays",
    ),
    "job name": (_added("hydra.job.name=../../escape"), "hydra.job.name is a file name"),
    "subdir escape": (_added("hydra.sweep.subdir=../../escape"), "hydra.sweep.subdir names"),
    "absolute output_subdir": (
        _added(f"hydra.output_subdir={DECOY}/hydra"),
        "hydra.output_subdir names a folder outside the sweep folder",
    ),
    "newline": (
        _added("hydra.launcher.partition=debug\n#SBATCH --wrap=id"),
        "holds a line break",
    ),
    "@package": (_added("optim@model=adam"), "optim@model moves a config to another @package"),
    "oc.env": (_added("data.root=${oc.env:HOME}"), "data.root calls ${oc.env:...}"),
    "torn": (_text(_torn), "multirun.yaml: not readable YAML (line"),
    "alias bomb": (_text(_alias_bomb), "multirun.yaml: holds a YAML alias"),
    "huge": (_text(_huge), "multirun.yaml: larger than 1 MB"),
}
UNREADABLE = {"torn", "alias bomb", "huge"}  # the summary warns once and takes the defaults


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every folder, file (its sha256) and link (its target) under root, but skip's."""
    found = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d != skip]
        for name in dirs:
            found[str((here / name).relative_to(root))] = "folder"
        for name in files:
            path = here / name
            found[str(path.relative_to(root))] = (
                f"-> {os.readlink(path)}"
                if path.is_symlink()
                else hashlib.sha256(path.read_bytes()).hexdigest()
            )
    return found


def crafted(made: Path, tmp_path: Path, case: str) -> tuple[Path, Path]:
    """The case's folder two levels below tmp_path (so that ../../ stays inside tmp_path, where
    it is seen), and a decoy HOME beside it holding a file a shell reads."""
    home = tmp_path / "home"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text("# the user's own\n")
    sweep = tmp_path / "a" / "b" / "sweep"
    shutil.copytree(made, sweep)
    saved = yaml.safe_load((sweep / MULTIRUN_FILE).read_text())
    text = CASES[case][0](saved).replace(DECOY, str(home))
    (sweep / MULTIRUN_FILE).write_text(text)
    (sweep / "optuna.journal").touch()  # a search's folder: the summary reads multirun.yaml
    return sweep, home


@pytest.fixture
def decoy_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """HOME is set per case; matplotlib's cache goes elsewhere, as it would on first import."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("mpl")))


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_folder_is_refused_and_read_safely(
    case: str,
    made: Path,
    tmp_path: Path,
    run_main: Callable[..., subprocess.CompletedProcess[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    decoy_env: None,
) -> None:
    sweep, home = crafted(made, tmp_path, case)
    monkeypatch.setenv("HOME", str(home))
    outside, inside = tree(tmp_path, skip=sweep), tree(sweep)

    started = time.monotonic()
    result = run_main("--resume", str(sweep))
    took = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlp_sweep: error: ") and CASES[case][1] in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert took < 10, took  # the reading itself: test_a_hostile_file_is_read_in_no_time
    assert tree(sweep) == inside  # nothing started, nothing written

    frame = load(sweep)
    assert frame["status"].tolist() == ["ok"]
    job = tree(sweep / "0")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert summary_main([str(sweep)]) == 0
    warned = [r.getMessage() for r in caplog.records if MULTIRUN_FILE in r.getMessage()]
    assert len(warned) == (case in UNREADABLE), warned
    assert tree(sweep / "0") == job
    assert tree(tmp_path, skip=sweep) == outside


def test_the_refusal_says_how_to_give_the_key_yourself(
    made: Path, tmp_path: Path, run_main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """The line's command pastes into a shell as one argument per override."""
    sweep, home = crafted(made, tmp_path, "slurm setup")
    setup = f'hydra.launcher.setup=["touch {home}/pwned"]'
    line = run_main("--resume", str(sweep)).stderr.strip()
    assert line.endswith(f"give it yourself: {command('--resume', str(sweep), setup)}")
    assert shlex.split(line.rpartition("yourself: ")[2])[-1] == setup


def test_a_refused_key_given_by_the_user_is_theirs(made: Path, tmp_path: Path) -> None:
    """The user's own value of a refused key replaces the folder's, which is dropped."""
    sweep, home = crafted(made, tmp_path, "slurm setup")
    argv = resume_argv(["--resume", str(sweep), "hydra.launcher.setup=[]"])
    assert argv[-1] == "hydra.launcher.setup=[]"
    assert [a for a in argv if "setup" in a] == ["hydra.launcher.setup=[]"]


def test_a_real_resume_of_a_crafted_folder_starts_nothing(made: Path, tmp_path: Path) -> None:
    """The entry point as a user runs it (its early worker start reads the folder too)."""
    sweep, home = crafted(made, tmp_path, "slurm setup")
    outside, inside = tree(tmp_path, skip=sweep), tree(sweep)
    env = {**cli_env(), "HOME": str(home)}
    done = run_command("--resume", str(sweep), cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "hydra.launcher.setup" in done.stderr, done.stderr
    assert not (home / "pwned").exists()
    assert tree(sweep) == inside and tree(tmp_path, skip=sweep) == outside


def test_a_hostile_file_is_read_in_no_time(made: Path, tmp_path: Path) -> None:
    """The alias bomb (which took 6 s at 1 KB and hangs a little bigger) and the huge file
    are refused before anything is expanded, in the resume and in `python -m
    mlp_sweep.summary` (a real process: the documented command)."""
    for case in ("alias bomb", "huge"):
        sweep, home = crafted(made, tmp_path / case.replace(" ", "_"), case)
        started = time.monotonic()
        with pytest.raises(SweepFileError, match=MULTIRUN_FILE):
            resume_argv(["--resume", str(sweep)])
        assert time.monotonic() - started < 0.5
    env = {**cli_env(), "HOME": str(home)}
    done = run_python("-m", "mlp_sweep.summary", str(sweep), cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.count(MULTIRUN_FILE) == 1, done.stderr


def test_saved_overrides_are_the_strings_hydra_wrote(
    made: Path, tmp_path: Path, compose_cfg: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ${...} is resolved by reading: a genuine ${hydra.job.num} is replayed for Hydra to
    read as it did the first time, and ${oc.env:HOME} reads as written. Refused, the latter
    would be Hydra's to resolve, from the resuming machine's environment."""
    sweep, home = crafted(made, tmp_path, "oc.env")
    monkeypatch.setenv("HOME", str(home))
    assert "data.root=${oc.env:HOME}" in read_multirun(sweep)["hydra"]["overrides"]["task"]
    cfg = compose_cfg("data.root=${oc.env:HOME}")
    assert OmegaConf.to_container(cfg.data, resolve=True)["root"] == str(home)

    saved = yaml.safe_load((made / MULTIRUN_FILE).read_text())
    saved["hydra"]["overrides"]["task"].append("seed=${hydra.job.num}")
    (sweep / MULTIRUN_FILE).write_text(yaml.safe_dump(saved))
    assert "seed=${hydra.job.num}" in resume_argv(["--resume", str(sweep)])


def test_sweep_from_python_keeps_a_folder_with_a_comma_whole(tmp_path: Path) -> None:
    """mlp_sweep.sweep quotes its folder for Hydra: "a,b" is one folder, not a sweep of two."""
    from mlp_sweep import sweep

    folder = tmp_path / "a,b"
    frame = sweep([*TINY], sweep_dir=folder, echo=False)
    assert frame["status"].tolist() == ["ok"]
    assert (folder / MULTIRUN_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a,b"]
