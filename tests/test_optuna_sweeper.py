"""hydra/sweeper=mlp_sweep_optuna: Hydra's own sweeper suites, the search space, failures, resume.

The suites and the in-process sweeps use Hydra's pytest plugin (hydra_sweep_runner,
hydra_restore_singletons), which hydra-core registers with pytest itself. The toy app in
tests/optuna_app/ runs as a subprocess, as a user would.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, LauncherTestSuite
from hydra.test_utils.test_utils import TSweepRunner
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.search.study import load_study

optuna = pytest.importorskip("optuna", reason='needs the search extra: pip install ".[search]"')

from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.mlp_sweep_optuna.optuna_sweeper import OptunaSweeper  # noqa: E402
from mlp_sweep.config import flatten  # noqa: E402
from mlp_sweep.paths import CONF_DIR  # noqa: E402
from mlp_sweep.search.space import consecutive, parse_space, trial_overrides  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "optuna_app" / "app.py"
# Hydra's suites run its test app without version_base, which warns at every job.
pytestmark = pytest.mark.filterwarnings("ignore:Future Hydra versions will no longer change")
SWEEPER = ["hydra/sweeper=mlp_sweep_optuna", "hydra.sweeper.n_jobs=2"]


@pytest.mark.usefixtures("hydra_defaults")
@pytest.mark.parametrize("launcher_name, overrides", [("basic", [*SWEEPER])])
class TestLauncherSuite(LauncherTestSuite):
    """Hydra's launcher checks, run through this sweeper: small discrete sweeps run as grids."""


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        pytest.param("basic", [*SWEEPER, "hydra.sweeper.sampler.name=grid"], id="grid"),
        # tpe, but the 6 points fit in n_trials=20: any further trial could only repeat one.
        pytest.param("basic", [*SWEEPER], id="tpe-whole-grid"),
    ],
)
@pytest.mark.usefixtures("hydra_defaults")
class TestBatchedSuite(BatchedSweeperTestSuite):
    """group1=file1,file2 bar=100,200,300 in 3 batches of 2, in the basic sweeper's order."""


def space_of(*overrides: str) -> dict[str, Any]:
    return parse_space(OverridesParser.create().parse_overrides(list(overrides)))


def test_search_space_grammar() -> None:
    space = space_of(
        "a=1,2",
        "b=range(1,4)",
        "c=interval(-5,5)",
        "lr=tag(log, interval(1e-4, 0.1))",
        "width=int(interval(8, 64))",
        "act=choice(relu, selu)",
        "seed=3",
        "+extra=x",
    )
    assert space == {
        "a": CategoricalDistribution(["1", "2"]),
        "b": CategoricalDistribution(["1", "2", "3"]),
        "c": FloatDistribution(-5.0, 5.0),
        "lr": FloatDistribution(1e-4, 0.1, log=True),
        "width": IntDistribution(8, 64),
        "act": CategoricalDistribution(["relu", "selu"]),
        "seed": "seed=3",
        "+extra": "+extra=x",
    }
    params = {"a": "2", "b": "1", "c": -0.5, "lr": 0.001, "width": 16, "act": "selu"}
    assert trial_overrides(space, params) == [
        "a=2", "b=1", "c=-0.5", "lr=0.001", "width=16", "act=selu", "seed=3", "+extra=x",
    ]  # fmt: skip


def test_params_nested_or_dotted_and_command_line_wins() -> None:
    sweeper = OptunaSweeper(
        params=OmegaConf.create(
            {"optim": {"lr": "interval(0.1, 1)"}, "model.act": "relu,selu", "seed": 0}
        )
    )
    assert sweeper.params == {"optim.lr": "interval(0.1, 1)", "model.act": "relu,selu", "seed": "0"}
    space = space_of(*(f"{k}={v}" for k, v in sweeper.params.items()), "optim.lr=0.05")
    assert list(space) == ["optim.lr", "model.act", "seed"]  # the axis keeps its place
    assert space["optim.lr"] == "optim.lr=0.05"
    assert OptunaSweeper(params=OmegaConf.create({"a": {"b": {"c": 1}}})).params == {"a.b.c": "1"}


def test_consecutive_numbers_make_launches() -> None:
    assert list(consecutive([5, 0, 1, 2, 3, 7], 2)) == [[0, 1], [2, 3], [5], [7]]
    assert list(consecutive([], 4)) == []


def test_hparams_search_preset_composes() -> None:
    defaults = OmegaConf.load(CONF_DIR / "config.yaml").defaults
    listed = any(isinstance(d, DictConfig) and "hparams_search" in d for d in defaults)
    preset = ("" if listed else "+") + "hparams_search=optuna"  # `+` until config.yaml lists it
    override = "hydra.sweeper.params.optim.lr='tag(log, interval(0.01, 0.1))'"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [preset, override], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert (sweeper.direction, sweeper.n_trials) == ("maximize", 20)
    params = flatten(OmegaConf.to_container(sweeper.params))  # type: ignore[arg-type]
    assert space_of(*(f"{k}={v}" for k, v in params.items())) == {
        "optim.lr": FloatDistribution(0.01, 0.1, log=True),
        "model.act": CategoricalDistribution(["relu", "leaky", "selu", "softplus"]),
        "model.init": CategoricalDistribution(
            ["default", "kaiming_normal", "xavier_normal", "lecun_normal"]
        ),
    }


def flaky(cfg: DictConfig) -> Any:
    """Job a=1 raises, a=2 returns nan, a=3 returns None, a=4 a string; the rest a float."""
    if cfg.a == 1:
        raise ValueError("bad a")
    return {2: math.nan, 3: None, 4: "0.5"}.get(cfg.a, float(cfg.a))


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_failed_jobs_are_fail_trials_and_the_sweep_goes_on(
    hydra_sweep_runner: TSweepRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=flaky,
        config_path="configs",
        config_name="compose.yaml",
        overrides=[*SWEEPER, "+a=0,1,2,3,4,5"],
        temp_dir=tmp_path,
    )
    with sweep:
        study = load_study(tmp_path)
        states = [t.state for t in study.trials]
        assert [t.params for t in study.trials] == [{"+a": str(a)} for a in range(6)]
        assert study.best_trial.number == 5 and study.best_value == 5.0
        assert sweep.returns is not None
        assert [[r.hydra_cfg.hydra.job.num for r in batch] for batch in sweep.returns] == [
            [0, 1], [2, 3], [4, 5],
        ]  # fmt: skip
    C, F = TrialState.COMPLETE, TrialState.FAIL
    assert states == [C, F, F, F, F, C]
    log = capsys.readouterr().out  # Hydra's console log; a job's logging setup drops caplog's
    assert "trial 1 failed: the job raised ValueError: bad a" in log
    assert "trial 2 failed: the job returned nan" in log
    assert "trial 3 failed: the job returned None, not a number" in log
    assert "trial 4 failed: the job returned '0.5', not a number" in log
    assert f"best trial 5: value 5 (+a=5); study 'mlp_sweep' in {tmp_path}/optuna.journal" in log


def run_app(sweep_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python tests/optuna_app/app.py -m ...` minimizing (x - 2)^2, as a user would run it."""
    command = [
        sys.executable, str(APP), "-m",
        "hydra/sweeper=mlp_sweep_optuna", "hydra.sweeper.direction=minimize", "x=interval(-5,5)",
        f"hydra.sweep.dir={sweep_dir}", *args,
    ]  # fmt: skip
    # The checkout first on the path: Hydra finds the plugin in its hydra_plugins/.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, **env}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def runs(sweep_dir: Path) -> dict[int, list[float]]:
    """Job folder -> the x of each time the app ran there."""
    return {
        int(job.name): [float(x) for x in (job / "runs.txt").read_text().split()]
        for job in sweep_dir.iterdir()
        if job.name.isdigit()
    }


def load(sweep_dir: Path) -> Any:
    return load_study(sweep_dir)


def test_cli_sweep_minimizes_into_folders_numbered_by_trial(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    done = run_app(sweep_dir, "hydra.sweeper.n_trials=6")
    assert done.returncode == 0, done.stderr
    study = load(sweep_dir)  # from this process, the sweep's study in its journal file
    trials = study.trials
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert runs(sweep_dir) == {t.number: [t.params["x"]] for t in trials}  # folder = trial
    assert all(t.value == pytest.approx((t.params["x"] - 2) ** 2) for t in trials)
    assert len({t.params["x"] for t in trials}) == 6 and all(
        -5 <= t.params["x"] <= 5 for t in trials
    )
    assert (sweep_dir / "multirun.yaml").is_file()
    best = study.best_trial
    assert best.value == min(t.value for t in trials)
    line = f"best trial {best.number}: value {best.value:.4g} (x={best.params['x']:.4g}); "
    assert line + f"study 'mlp_sweep' in {sweep_dir}/optuna.journal" in done.stdout + done.stderr

    again = run_app(sweep_dir, "hydra.sweeper.n_trials=6")  # a finished study: nothing to run
    assert again.returncode == 0, again.stderr
    assert len(load(sweep_dir).trials) == 6 and all(len(x) == 1 for x in runs(sweep_dir).values())


def test_killed_sweep_resumes_its_running_trial_in_its_own_folder(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ("hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1")
    killed = run_app(sweep_dir, *args, KILL_AT_JOB="3")
    assert killed.returncode == -9, killed.stderr
    trials = load(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.RUNNING]
    x3 = trials[3].params["x"]

    resumed = run_app(sweep_dir, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming trials [3]" in resumed.stdout + resumed.stderr
    trials = load(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert trials[3].params["x"] == x3 and trials[3].value == pytest.approx((x3 - 2) ** 2)
    ran = runs(sweep_dir)
    assert ran[3] == [x3, x3]  # killed once, then finished with the same params in folder 3
    assert {n: len(ran[n]) for n in ran} == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1}
    assert len({t.params["x"] for t in trials}) == 6  # the resumed sampler drew new points
