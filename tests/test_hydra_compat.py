"""The Hydra internals mlp_sweep relies on (mlp_sweep/hydra_compat.py) still behave as used.

If a Hydra release moves or changes one of them, these fail before any user sees a wrong
pre-launch check; pyproject.toml's hydra-core range names the releases these passed on.
"""

from __future__ import annotations

import hydra
from hydra import compose, initialize_config_dir

from mlp_sweep import hydra_compat
from mlp_sweep.paths import CONF_DIR


def test_args_parser_reads_hydras_flags() -> None:
    args = hydra_compat.parse_args(
        ["-m", "--cfg", "job", "--resolve", "-cn", "x", "-cd", "d", "a=1", "--info"]
    )
    assert args.multirun and args.cfg == "job" and args.resolve
    assert args.config_name == "x" and args.config_dir == "d" and args.info == "all"
    assert args.overrides == ["a=1"]
    assert hydra_compat.parse_args(["--shell-completion", "install=bash"]).shell_completion
    assert hydra_compat.parse_args(["--experimental-rerun", "f"]).experimental_rerun == "f"


def test_default_sweeper_expands_grids_as_hydras_basic_one() -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from hydra_plugins.mlp_sweep_grid.grid_sweeper import GridSweeper

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
        basic = compose("config", ["hydra/sweeper=basic"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ in hydra_compat.GRID_SWEEPERS
    assert basic.hydra.sweeper._target_ == hydra_compat.BASIC_SWEEPER
    # The grid sweeper is Hydra's own but for how it composes: same split, same batches.
    assert issubclass(GridSweeper, BasicSweeper)
    assert GridSweeper.split_arguments is BasicSweeper.split_arguments
    assert GridSweeper.sweep is BasicSweeper.sweep


def test_grid_expands_in_the_sweepers_order_with_glob() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = hydra_compat.overrides_parser()
        jobs = hydra_compat.expand_grid(
            parser.parse_overrides(["optim=glob(*)", "seed=range(2)", "loss=ce"])
        )
    assert jobs == [
        ["optim=adam", "seed=0", "loss=ce"],
        ["optim=adam", "seed=1", "loss=ce"],
        ["optim=sgd", "seed=0", "loss=ce"],
        ["optim=sgd", "seed=1", "loss=ce"],
    ]


def test_hydra_version_is_in_the_tested_range() -> None:
    major, minor, patch = (int(p) for p in hydra.__version__.split(".")[:3])
    assert (major, minor) == (1, 3) and patch >= 2


def test_get_mode_is_what_known_mode_replaces() -> None:
    """known_mode stands in for Hydra.get_mode(config_name, overrides) -> the config's
    hydra.mode; a Hydra whose method changed shape fails here, not in a user's command."""
    import inspect

    from hydra._internal.hydra import Hydra

    assert list(inspect.signature(Hydra.get_mode).parameters) == [
        "self",
        "config_name",
        "overrides",
    ]
