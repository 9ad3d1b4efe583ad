"""The grid sweeper's compose (mlp_sweep/launch/compose.py) gives exactly Hydra's configs and
Hydra's errors, composing once per structure: a sweep's cost per job guarded by counting."""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable, Iterator

import pandas as pd
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlp_sweep.launch.compose import CachedLoader
from mlp_sweep.paths import CONF_DIR
from tests.helpers import CtrlCInsideOmegaConf

JOBS = [
    ["seed=0", "optim=sgd", "optim.lr=0.1", "model.act=selu"],
    ["seed=1", "optim=adam", "optim.lr=0.1", "model.act=selu"],
    ["seed=2", "optim=sgd", "optim.lr=0.03", "model.act=leaky"],
    ["seed=3", "optim=adam", "optim.lr=0.03", "model.act=leaky"],
    ["model.hidden=[10,10,10]", "+extra=1"],
    ["model.hidden=[5]", "+extra=2"],
    ["trainer={epochs:2}", "data=synthetic", "~model.elu_alpha"],  # Hydra refuses the deletion
    ["seed=x"],  # not an int
    ["model.act=nope"],  # not an Activation
    ["model.actt=relu"],  # no such key
    ["experiment=tutorial", "model.act=softplus", "hydra.job.chdir=true"],
    ["experiment=tutorial", "model.act=tanh", "hydra.job.chdir=true"],
]


@pytest.fixture
def loaders() -> Iterator[tuple[object, CachedLoader]]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        yield hydra_loader, CachedLoader(hydra_loader)


def _outcome(loader: object, overrides: list[str]) -> str:
    try:
        cfg = loader.load_configuration("config", overrides, RunMode.RUN)  # type: ignore[attr-defined]
    except (HydraException, OmegaConfBaseException) as err:
        return f"{type(err).__name__}: {err}"
    return OmegaConf.to_yaml(cfg)


def test_every_job_composes_as_hydra_composes_it(loaders) -> None:
    """The whole config, hydra node included (overrides.task, override_dirname, choices), and
    every refusal word for word."""
    hydra_loader, cached = loaders
    refused = 0
    for overrides in JOBS:
        expected = _outcome(hydra_loader, overrides)
        assert _outcome(cached, overrides) == expected, overrides
        refused += "Exception" in expected or "Error" in expected.split(":")[0]
    assert refused == 4
    # Structures: (), optim=adam/sgd, data=synthetic+~deletion, experiment=tutorial+chdir;
    # and each refused job once more in full, to say it as Hydra says it.
    assert cached.composes < len(JOBS)


def test_three_hundred_jobs_cost_one_compose(loaders) -> None:
    _, cached = loaders
    for seed in range(300):
        cfg = cached.load_configuration("config", [f"seed={seed}", "optim.lr=0.05"], RunMode.RUN)
        assert cfg.seed == seed and cfg.hydra.overrides.task == [f"seed={seed}", "optim.lr=0.05"]
    assert cached.composes == 1


def _sweep_outcome(call: Callable[..., DictConfig | None], *args: object) -> tuple[str, str]:
    """("refused", Hydra's error), ("config", the job's config as YAML) or ("checked", "")."""
    try:
        cfg = call(*args)
    except (HydraException, OmegaConfBaseException) as err:
        return "refused", f"{type(err).__name__}: {err}"
    return ("checked", "") if cfg is None else ("config", OmegaConf.to_yaml(cfg))


def test_the_sweepers_check_refuses_what_hydra_refuses(loaders) -> None:
    """check_sweep_config (one scratch copy for jobs of one shape) refuses exactly the jobs
    load_sweep_config refuses, with Hydra's own error, whatever ran on the copy before; and the
    cached load_sweep_config composes each accepted job as Hydra does."""
    hydra_loader, cached = loaders
    master = hydra_loader.load_configuration("config", ["hydra.job.chdir=true"], RunMode.MULTIRUN)
    jobs = [
        ["seed=1", "+extra=1"],
        ["seed=2", "+extra=2"],  # `+` onto the same copy again: decided by a full compose
        ["seed=oops", "+extra=3"],
        ["model.hidden=[1,2,3]"],
        ["model.hidden=[4]"],
        ["optim=adam", "optim.betas=[0.8,0.9]"],
        ["optim=adam", "optim.betas=[0.8]"],  # Hydra's to accept (mlp_sweep's check wants a pair)
        ["trainer={epochs:2}"],
        ["trainer={epochz:2}"],  # no such key
    ]
    refused = []
    for overrides in jobs:
        kind, expected = _sweep_outcome(hydra_loader.load_sweep_config, master, overrides)
        if kind == "refused":
            refused.append(overrides)
            # The same exception, in the same words.
            assert _sweep_outcome(cached.check_sweep_config, master, overrides) == (kind, expected)
        else:
            assert _sweep_outcome(cached.check_sweep_config, master, overrides) == ("checked", "")
            composed = _sweep_outcome(cached.load_sweep_config, master, overrides)
            assert composed == (kind, expected), overrides
    assert refused == [jobs[2], jobs[8]]


def test_it_travels_to_workers_without_its_cache(loaders) -> None:
    import cloudpickle

    _, cached = loaders
    cached.load_configuration("config", ["seed=1"], RunMode.RUN)
    copy = cloudpickle.loads(cloudpickle.dumps(cached))
    assert isinstance(copy, CachedLoader) and copy.composes == 0
    cfg = copy.load_configuration("config", ["seed=2"], RunMode.RUN)
    assert isinstance(cfg, DictConfig) and cfg.seed == 2


def _compose_with_ctrl_c(loader: object) -> BaseException:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with CtrlCInsideOmegaConf(within="load_configuration"):
            loader.load_configuration("config", ["model.hidden=[7,7]"], RunMode.RUN)  # type: ignore[attr-defined]
    except BaseException as err:  # noqa: BLE001 (what it raises is the point)
        return err
    finally:
        signal.signal(signal.SIGINT, previous)
    raise AssertionError("the Ctrl-C was lost")


def test_ctrl_c_while_composing_stops_it_cleanly(loaders) -> None:
    """Hydra's own compose, hit at that moment, turns the Ctrl-C into an error (OmegaConf's
    AttributeError, whose traceback Hydra prints); the sweep's compose holds the signal to its
    end and raises a plain KeyboardInterrupt there, its cache intact for the next job."""
    hydra_loader, cached = loaders
    lost = _compose_with_ctrl_c(hydra_loader)
    assert isinstance(lost, Exception), lost
    assert "_invalidate_flags_cache" in "".join(traceback.format_exception(lost))
    err = _compose_with_ctrl_c(cached)
    assert type(err) is KeyboardInterrupt
    cfg = cached.load_configuration("config", ["model.hidden=[7,7]"], RunMode.RUN)
    assert list(cfg.model.hidden) == [7, 7]


def test_a_sweep_command_composes_its_config_four_times(
    run_main, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's Hydra composes, counted: the check's two (the sweep's config, the job's
    structure), Hydra's own for the sweep, and the sweeper's one per structure; Hydra's
    get_mode would compose a fifth only to read hydra.mode, which the check has read. A config
    that sets hydra.mode still decides it: `hydra.mode=MULTIRUN` without -m runs a sweep."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    composes: list[list[str]] = []
    compose = ConfigLoaderImpl.load_configuration

    def counted(self, config_name, overrides, *args, **kwargs):  # type: ignore[no-untyped-def]
        composes.append(list(overrides))
        return compose(self, config_name, overrides, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    tiny = ["data=synthetic", "data.n_train=100", "data.n_test=50", "trainer.epochs=1"]
    done = run_main("-m", "model.act=relu,selu", *tiny, "hydra/launcher=basic",
                    f"hydra.sweep.dir={tmp_path / 'm'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(composes) == 4, composes
    done = run_main("model.act=relu,selu", "hydra.mode=MULTIRUN", *tiny, "hydra/launcher=basic",
                    f"hydra.sweep.dir={tmp_path / 'mode'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "mode" / "summary.csv")) == 2
