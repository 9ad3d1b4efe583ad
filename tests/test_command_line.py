"""Hydra's whole command line through the real entry point: what works, and one line for what
does not. Each row is a command as a user types it, its exit code and what it must print.

The sweep forms run as real processes (`python -m mlp_sweep -m ...`), one sweep per form; the
rest call the same entry point in this process (conftest's run_main), which a new process would
only make ~2.5 s slower: what a real process adds to a refusal (its exit code, no traceback) is
tests/test_errors.py::test_real_process_exit_code_and_no_traceback's to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.training.files import DATA_DIR

TINY = ["data=synthetic", "data.n_train=200", "data.n_test=100", "trainer.epochs=1"]
BASIC = ["hydra/launcher=basic"]  # one process: the quickest start for a tiny sweep

# (id, command line, expected stderr line) for commands that must be refused: exit 2, one line.
REFUSED = [
    (
        "multirun-and-cfg",
        ["-m", "model.act=relu,selu", "--cfg", "job"],
        "-m/--multirun and --cfg: only one of --run, -m/--multirun, --cfg, --info and "
        "--shell-completion at a time",
    ),
    ("info-and-cfg", ["--info", "--cfg", "job"], "--cfg and --info: only one of"),
    (
        "completion-without-subcommand",
        ["--shell-completion"],
        "--shell-completion: give one of install=SHELL, uninstall=SHELL or query=SHELL",
    ),
    (
        "missing-rerun-file",
        ["--experimental-rerun", "missing.pickle"],
        "--experimental-rerun=missing.pickle: no such file",
    ),
    (
        "unknown-primary-config",
        ["-cn", "nope"],
        "-cn/--config-name=nope: no primary config 'nope' in",
    ),
    (
        "missing-config-dir",
        ["-cd", "/nonexistent"],
        "-cd/--config-dir=/nonexistent: no such folder",
    ),
    ("resolve-alone", ["--resolve"], "--resolve: only with --cfg"),
    (
        "added-typo-key",
        ["+model.actt=selu", *TINY],
        "model.actt: no such key; keys here: act, init, hidden, output_act, impl",
    ),
    ("typo-key", ["model.actt=selu", *TINY], "model.actt: no such key; keys here: act, init"),
    (
        "group-given-a-value",
        ["model=relu"],
        "model=relu: model is a section, not a value; did you mean model.act=relu?",
    ),
    ("section-given-a-number", ["trainer=5"], "did you mean trainer.epochs=5?"),
    ("unknown-choice", ["optim=nope"], "optim=nope: no such choice; choose one of: adam, sgd"),
    (
        "unknown-launcher",
        ["hydra/launcher=nope"],
        "hydra/launcher=nope: no such choice; choose one of: basic, fused, parallel, slurm",
    ),
    (
        "plus-on-a-selected-group",
        ["+experiment=tutorial"],
        "+experiment=...: experiment is already in the defaults list; set it without the +",
    ),
    (
        "null-for-a-required-key",
        ["model.hidden=null"],
        "model.hidden: field 'model.hidden' is not Optional",
    ),
    (
        "delete-a-schema-key",
        ["~model.act"],
        "model.act: ModelConfig (DictConfig) does not support deletion",
    ),
    (
        "bad-value-in-a-range-sweep",
        ["-m", "trainer.epochs=range(0,2)", *TINY[:3]],
        "trainer.epochs=0: must be an integer >= 1",
    ),
]


@pytest.mark.parametrize("args,line", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_in_one_line(run_main, tmp_path: Path, args: list[str], line: str) -> None:
    result = run_main(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlp_sweep: error: "), result.stderr
    assert line in lines[0]
    assert not (tmp_path / "outputs").exists()  # refused before anything was written


def sweep(run_main, tmp_path: Path, *args: str) -> pd.DataFrame:
    """The sweep, run by the entry point in this process (the forms are parsed before any
    launcher sees them; real processes are tests/test_sweep.py's)."""
    result = run_main("-m", *args, *TINY, *BASIC, f"hydra.sweep.dir={tmp_path / 's'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return pd.read_csv(tmp_path / "s" / "summary.csv")


# (id, sweep overrides, the swept column, its values in job order)
SWEEPS = [
    ("comma-list", ["model.act=relu,selu"], "model.act", ["relu", "selu"]),
    ("glob-over-a-group", ["optim=glob(*)"], "optim", ["adam", "sgd"]),
    ("range", ["seed=range(0,3)"], "seed", [0, 1, 2]),
    (
        "choice",
        ["model.init=choice(default,xavier_normal)"],
        "model.init",
        ["default", "xavier_normal"],
    ),
    ("quoted-values", ["model.act='relu','selu'"], "model.act", ["relu", "selu"]),
    ("list-values", ["model.hidden=[20],[20,20]"], "model.hidden", ["[20]", "[20, 20]"]),
]


@pytest.mark.parametrize("args,column,values", [r[1:] for r in SWEEPS], ids=[r[0] for r in SWEEPS])
def test_sweep_forms(run_main, tmp_path: Path, args: list[str], column: str, values: list) -> None:
    frame = sweep(run_main, tmp_path, *args)
    assert frame[column].tolist() == values
    assert frame["status"].eq("ok").all()


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# (id, single-run overrides, {param: expected value in the run's record})
RUNS = [
    ("plus-plus", ["++trainer.batch_size=50"], {"trainer.batch_size": 50}),
    ("empty-list", ["model.hidden=[]"], {"model.hidden": []}),  # logistic regression
    ("null-for-optional", ["data.limit_test=null"], {"data.limit_test": None}),
    ("experiment-preset", ["experiment=tutorial", *TINY], {"model.output_act": True}),
    (
        "dict-value",
        ["optim={name: adam, lr: 0.01, betas: [0.8, 0.9]}"],
        {"optim.betas": [0.8, 0.9]},
    ),
]
HYDRA_DEBUG = "Installed Hydra Plugins"  # one of the lines hydra.verbose=true adds


@pytest.mark.parametrize("args,expected", [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_single_run_forms(run_main, tmp_path: Path, args: list[str], expected: dict) -> None:
    result = run_main(*TINY, *args, "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    params = record(tmp_path / "run")["params"]
    for key, value in expected.items():
        assert params[key] == value, key
    assert result.stdout.splitlines()[-1].startswith("ok: test_acc")
    assert HYDRA_DEBUG not in result.stdout  # only with hydra.verbose=true


def test_hydra_verbose_shows_hydras_debug_lines(run_main, tmp_path: Path) -> None:
    result = run_main(*TINY, "hydra.verbose=true", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"[HYDRA] {HYDRA_DEBUG}" in result.stdout
    assert "[HYDRA] Config search path" in result.stdout
    assert record(tmp_path / "run")["status"] == "ok"


@pytest.mark.parametrize("chdir", [True, False], ids=["chdir", "no-chdir"])
def test_chdir_runs_the_job_in_its_folder(run_main, tmp_path: Path, chdir: bool) -> None:
    """A relative path the job opens (here its log file's) lands in the run's folder under
    hydra.job.chdir=true, and in the folder the command started from without it."""
    result = run_main(
        *TINY, f"hydra.job.chdir={str(chdir).lower()}", "hydra.run.dir=run",
        "hydra.job_logging.handlers.file.filename=job.log",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert record(tmp_path / "run")["status"] == "ok"
    log = (tmp_path / "run" / "job.log") if chdir else (tmp_path / "job.log")
    assert "epoch 1/1" in log.read_text()
    assert not ((tmp_path / "job.log") if chdir else (tmp_path / "run" / "job.log")).exists()


def test_relative_data_root_under_chdir(run_main, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "MNIST").symlink_to(DATA_DIR / "MNIST")
    args = ["data.root=ds", "data.limit_train=500", "data.limit_test=100", "trainer.epochs=1"]
    result = run_main(*args, "hydra.job.chdir=true", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert record(tmp_path / "run")["status"] == "ok"


@pytest.mark.parametrize(
    "args,first",
    [
        (["--cfg", "job"], "model:"),
        (["--cfg", "job", "--package", "model"], "# @package model"),
        (["--cfg", "hydra", "--resolve"], "hydra:"),
        (["--info", "defaults"], "Defaults List"),
        (["--shell-completion", "install=bash"], "export _HYDRA_OLD_COMP="),
        (["--help"], "mlp_sweep: train the 784-200-200-10 MLP"),
    ],
    ids=["cfg", "cfg-package", "cfg-resolve", "info", "completion", "help"],
)
def test_hydra_flags_print_and_exit_0(run_main, args: list[str], first: str) -> None:
    result = run_main(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[0].startswith(first)


def test_config_dir_of_your_own_presets(run_main, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fast.yaml").write_text("defaults:\n  - config\n  - _self_\nmodel:\n  act: selu\n")
    result = run_main("-cd", str(mine), "-cn", "fast", *TINY, "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert record(tmp_path / "run")["params"]["model.act"] == "selu"


@pytest.mark.filterwarnings("ignore:Experimental rerun CLI option")  # Hydra says it
def test_experimental_rerun_of_a_saved_job(run_main, tmp_path: Path) -> None:
    save = (
        "+hydra.callbacks.save_job_info._target_=hydra.experimental.callbacks.PickleJobInfoCallback"
    )
    first = run_main(*TINY, "model.act=selu", save, "hydra.run.dir=first")
    assert first.returncode == 0, first.stderr[-3000:]
    pickle = tmp_path / "first" / ".hydra" / "config.pickle"
    assert pickle.is_file()
    again = run_main("--experimental-rerun", str(pickle))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ok: test_acc" in again.stdout


def test_config_path_and_dir_mistakes_are_one_line(run_main, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fast.yaml").write_text("defaults:\n  - config\n  - _self_\n")
    cases = [
        (["-cp", str(mine)], f"-cp/--config-path={mine}: no primary config 'config' in {mine}"),
        (["-cp", str(mine), "-cn", "fast"], "In 'fast': Could not load 'config'."),
        (["-cd", str(mine), "-cn", "fast", "model.act=bogus"], "model.act: Invalid value 'bogus'"),
        (["-cd", str(mine), "-cn", "slow"], "-cn/--config-name=slow: no primary config 'slow' in"),
    ]
    for args, line in cases:
        result = run_main(*args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and line in lines[0], (args, result.stderr)


# (the option, the module its extra installs, the extra, the line that names it)
EXTRAS = [
    (
        "hydra/launcher=slurm",
        "hydra_plugins.hydra_submitit_launcher",
        "cluster",
        'hydra/launcher=slurm needs the cluster extra: pip install ".[cluster]"',
    ),
    (
        "hparams_search=optuna",
        "optuna",
        "search",
        'hparams_search=optuna needs the search extra: pip install ".[search]"',
    ),
]


@pytest.mark.parametrize("override,module,extra,line", EXTRAS, ids=[e[2] for e in EXTRAS])
def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, run_main, override: str, module: str, extra: str, line: str
) -> None:
    """Without the extra (its module None in sys.modules: what `import` sees when it is not
    installed), the command refuses in one line that names the extra, whether it is installed
    here or not."""
    monkeypatch.setitem(sys.modules, module, None)
    result = run_main("-m", override, *TINY)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"mlp_sweep: error: {line}"]


@pytest.mark.parametrize("override,module,extra,line", EXTRAS, ids=[e[2] for e in EXTRAS])
def test_an_installed_extra_is_accepted(override: str, module: str, extra: str, line: str) -> None:
    from mlp_sweep.cli.checks import check_flags
    from mlp_sweep.hydra_compat import parse_args

    pytest.importorskip(module, reason=f'needs the {extra} extra: pip install ".[{extra}]"')
    check_flags(parse_args(["-m", override]))  # no CommandError: the check finds the module


def test_the_optuna_sweeper_without_optuna_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """hydra/sweeper=mlp_sweep_optuna chosen directly (not through hparams_search=optuna)."""
    from hydra_plugins.mlp_sweep_optuna.optuna_sweeper import MISSING_OPTUNA, OptunaSweeper

    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` sees when not installed
    with pytest.raises(ImportError) as err:
        OptunaSweeper().setup(hydra_context=None, task_function=None, config=None)  # type: ignore[arg-type]
    assert str(err.value) == MISSING_OPTUNA
    assert "pip install" in MISSING_OPTUNA and ".[search]" in MISSING_OPTUNA
