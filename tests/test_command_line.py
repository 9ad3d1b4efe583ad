"""Hydra's whole command line through the real entry point: what works, and one line for what
does not. Each row is a command as a user types it, its exit code and what it must print."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweep.training.data import DATA_DIR

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
def test_refused_in_one_line(run_cli, tmp_path: Path, args: list[str], line: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlp_sweep: error: "), result.stderr
    assert line in lines[0]
    assert not (tmp_path / "outputs").exists()  # refused before anything was written


def sweep(run_cli, tmp_path: Path, *args: str) -> pd.DataFrame:
    result = run_cli("-m", *args, *TINY, *BASIC, f"hydra.sweep.dir={tmp_path / 's'}")
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
def test_sweep_forms(run_cli, tmp_path: Path, args: list[str], column: str, values: list) -> None:
    frame = sweep(run_cli, tmp_path, *args)
    assert frame[column].tolist() == values
    assert frame["status"].eq("ok").all()


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# (id, single-run overrides, {param: expected value in the run's record})
RUNS = [
    ("plus-plus", ["++trainer.batch_size=50"], {"trainer.batch_size": 50}),
    ("empty-list", ["model.hidden=[]"], {"model.hidden": []}),
    ("null-for-optional", ["data.limit_test=null"], {"data.limit_test": None}),
    ("experiment-preset", ["experiment=tutorial", *TINY], {"model.output_act": True}),
    ("hydra-verbose", ["hydra.verbose=true"], {"model.act": "relu"}),
    ("chdir", ["hydra.job.chdir=true"], {"model.act": "relu"}),
    (
        "dict-value",
        ["optim={name: adam, lr: 0.01, betas: [0.8, 0.9]}"],
        {"optim.betas": [0.8, 0.9]},
    ),
]


@pytest.mark.parametrize("args,expected", [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_single_run_forms(run_cli, tmp_path: Path, args: list[str], expected: dict) -> None:
    result = run_cli(*TINY, *args, "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    params = record(tmp_path / "run")["params"]
    for key, value in expected.items():
        assert params[key] == value, key


def test_relative_data_root_under_chdir(run_cli, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "MNIST").symlink_to(DATA_DIR / "MNIST")
    args = ["data.root=ds", "data.limit_train=500", "data.limit_test=100", "trainer.epochs=1"]
    result = run_cli(*args, "hydra.job.chdir=true", "hydra.run.dir=run")
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
def test_hydra_flags_print_and_exit_0(run_cli, args: list[str], first: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[0].startswith(first)


def test_config_dir_of_your_own_presets(run_cli, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fast.yaml").write_text("defaults:\n  - config\n  - _self_\nmodel:\n  act: selu\n")
    result = run_cli("-cd", str(mine), "-cn", "fast", *TINY, "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert record(tmp_path / "run")["params"]["model.act"] == "selu"


def test_experimental_rerun_of_a_saved_job(run_cli, tmp_path: Path) -> None:
    save = (
        "+hydra.callbacks.save_job_info._target_=hydra.experimental.callbacks.PickleJobInfoCallback"
    )
    first = run_cli(*TINY, "model.act=selu", save, "hydra.run.dir=first")
    assert first.returncode == 0, first.stderr[-3000:]
    pickle = tmp_path / "first" / ".hydra" / "config.pickle"
    assert pickle.is_file()
    again = run_cli("--experimental-rerun", str(pickle))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ok: test_acc" in again.stdout


def test_config_path_and_dir_mistakes_are_one_line(run_cli, tmp_path: Path) -> None:
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
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and line in lines[0], (args, result.stderr)


@pytest.mark.parametrize(
    "override,line",
    [
        (
            "hydra/launcher=slurm",
            'hydra/launcher=slurm needs the cluster extra: pip install ".[cluster]"',
        ),
        (
            "hparams_search=optuna",
            'hparams_search=optuna needs the search extra: pip install ".[search]"',
        ),
    ],
)
def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, override: str, line: str
) -> None:
    import importlib.util

    from mlp_sweep.cli.checks import CommandError, check_flags
    from mlp_sweep.hydra_compat import parse_args

    check_flags(parse_args(["-m", override]))  # installed here: accepted
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(CommandError) as refused:
        check_flags(parse_args(["-m", override]))
    assert str(refused.value) == line
