"""Every config group composes into the typed schema; bad values fail at composition."""

from __future__ import annotations

import itertools

import pytest

from mlp_sweep.cli.preflight import preflight
from mlp_sweep.config import Activation, Config, Impl, Init, Loss, Optimizer, validate
from mlp_sweep.paths import CONF_DIR

GROUPS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in ("optim", "data")}
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_groups_are_the_documented_ones() -> None:
    assert GROUPS == {
        "optim": ["adam", "sgd"],
        "data": ["fashion_mnist", "kmnist", "mnist", "synthetic"],
    }
    assert EXPERIMENTS == [
        "activations_grid",
        "compare_activations",
        "tutorial",
        "tutorial_lowlevel",
        "tutorial_repro",
    ]


@pytest.mark.parametrize(
    "optim,data", itertools.product(GROUPS["optim"], GROUPS["data"]), ids=lambda v: str(v)
)
def test_every_group_choice_composes(typed_cfg, optim: str, data: str) -> None:
    cfg = typed_cfg(f"optim={optim}", f"data={data}")
    assert isinstance(cfg, Config)
    assert cfg.optim.name is Optimizer[optim]
    assert cfg.data.name.name == data
    validate(cfg)


def test_defaults_are_the_tutorials_training_setup(typed_cfg) -> None:
    cfg = typed_cfg()
    assert (cfg.model.act, cfg.model.init, cfg.model.hidden) == (
        Activation.relu,
        Init.default,
        [200, 200],
    )
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == (Optimizer.sgd, 0.01, 0.0)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (10, 200)
    assert (cfg.loss, cfg.seed, cfg.device, cfg.model.output_act) == (Loss.ce, 0, "auto", False)


@pytest.mark.parametrize("experiment", ["tutorial", "tutorial_lowlevel"])
def test_experiments_reproduce_the_tutorial(typed_cfg, experiment: str) -> None:
    cfg = typed_cfg(f"experiment={experiment}")
    assert cfg.model.output_act is True  # the tutorial's ReLU on the logits
    assert (cfg.optim.lr, cfg.trainer.epochs, cfg.trainer.batch_size) == (0.01, 10, 200)
    expected = (
        (Impl.functional, Init.kaiming_normal)
        if "lowlevel" in experiment
        else (Impl.module, Init.default)
    )
    assert (cfg.model.impl, cfg.model.init) == expected


def test_overrides_reach_the_typed_config(typed_cfg) -> None:
    cfg = typed_cfg(
        "model.act=selu",
        "model.init=lecun_normal",
        "model.hidden=[]",
        "optim=adam",
        "optim.lr=0.003",
        "seed=7",
        "device=cpu",
        "loss=mse",
    )
    assert cfg.model.act is Activation.selu and cfg.model.hidden == []
    assert cfg.optim.name is Optimizer.adam and cfg.optim.lr == 0.003
    assert (cfg.seed, cfg.device, cfg.loss) == (7, "cpu", Loss.mse)


@pytest.mark.parametrize(
    "argv,jobs",
    [
        (["-m", "experiment=compare_activations"], 4),  # the grid in hydra.sweeper.params
        (["-m", "experiment=compare_activations", "model.act=relu,selu"], 2),  # axis replaced
        (["-m", "model.act=relu,selu", "optim.lr=0.1,0.01", "seed=0,1,2"], 12),
        (["model.act=selu"], 1),
    ],
)
def test_preflight_sees_every_job_the_sweep_will_run(argv: list[str], jobs: int) -> None:
    assert preflight(argv) == [None] * jobs  # None: no earlier run in any job's folder


@pytest.mark.parametrize(
    "argv,jobs,composes",
    [
        (["-m", "seed=range(60)", "model.act=relu,selu", "data=synthetic"], 120, 1),
        (["-m", "optim=sgd,adam", "optim.lr=0.1,0.01", "seed=range(10)"], 40, 2),
        (["-m", "experiment=compare_activations", "seed=range(5)"], 20, 1),
    ],
)
def test_preflight_composes_once_per_structure_not_per_job(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], jobs: int, composes: int
) -> None:
    """The check's cost per job, guarded without timing anything: Hydra's full compose runs
    once per distinct set of config-group choices, not once per job."""
    from mlp_sweep.cli import preflight as pf

    counts = []
    real = pf.Composer.__init__

    def counting(self, config_name: str) -> None:
        real(self, config_name)
        counts.append(self)

    monkeypatch.setattr(pf.Composer, "__init__", counting)
    assert preflight(argv) == [None] * jobs
    assert [c.composes for c in counts] == [composes]


def test_the_fast_check_composes_what_hydra_composes(compose_cfg) -> None:
    """Each job's config, built from its structure and its values, equals Hydra's compose."""
    from omegaconf import OmegaConf

    from mlp_sweep.cli.preflight import Composer

    jobs = [
        ["optim=adam", "optim.lr=0.003", "model.hidden=[64,32]", "seed=3"],
        [
            "experiment=tutorial",
            "model.act=selu",
            "trainer.precision=bf16",
            "data.limit_train=null",
        ],
        ["model.init=orthogonal", "optim.betas=[0.8,0.9]", "optim=adam", "loss=mse"],
        # Jobs of one shape share one copy: each must still read as if composed alone.
        ["model.hidden=[10,10,10]", "seed=1"],
        ["model.hidden=[5]", "seed=2"],
        ["model.hidden=[]", "seed=3"],
    ]
    compose_cfg()  # Hydra initialized on conf/, as preflight has it
    composer = Composer("config")
    for overrides in jobs:
        assert OmegaConf.to_yaml(composer(overrides)) == OmegaConf.to_yaml(compose_cfg(*overrides))
    # optim=adam twice, experiment=tutorial once, none: 3 structures
    assert composer.composes == 3
    with pytest.raises(Exception, match="seed"):
        composer(["model.hidden=[7]", "seed=x"])  # fails half-way through the shared copy
    after = ["model.hidden=[8]", "seed=4"]
    assert OmegaConf.to_yaml(composer(after)) == OmegaConf.to_yaml(compose_cfg(*after))
