"""Every piece of Hydra that is not public API and that mlp_sweep relies on, in one place.

The pre-launch check must read a command line as Hydra will (its argument parser) and expand a
sweep into jobs as Hydra's basic sweeper will (its split_arguments, and glob() through the
config loader), or count them without expanding them (its range and choice sweeps, read
directly: grid_size, which the worker pool's early start uses too); the faster compose
(mlp_sweep.launch.compose) repeats the last stage of Hydra's compose with Hydra's own
functions. None is exported by Hydra 1.3; tests/test_hydra_compat.py, tests/test_compose.py
and tests/test_limits.py check each use against the Hydra installed, so a release that changes
them fails there first.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.hydra import Hydra
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, RangeSweep
from hydra.errors import HydraException

# hydra.sweeper._target_ of Hydra's default sweeper, whose expansion preflight repeats, and
# of mlp_sweep's default (hydra_plugins/mlp_sweep_grid), which expands a grid the same way.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
GRID_SWEEPERS = (BASIC_SWEEPER, "hydra_plugins.mlp_sweep_grid.grid_sweeper.GridSweeper")


# The last stage of Hydra's compose: the overrides that are not config-group choices, applied
# in order to the composed config; and hydra.job.override_dirname, made from the overrides.
apply_overrides = ConfigLoaderImpl._apply_overrides_to_config
overrides_dirname = get_overrides_dirname


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as @hydra.main reads it (flags and overrides)."""
    args, _ = get_args_parser().parse_known_args(list(argv))
    return args


def overrides_parser() -> OverridesParser:
    """Hydra's override parser; inside an initialized Hydra (initialize_config_dir) it can also
    expand glob() over a config group's options, as the sweeper's own parser does."""
    hydra = GlobalHydra.instance()
    return OverridesParser.create(
        config_loader=hydra.config_loader() if hydra.is_initialized() else None
    )


def expand_grid(overrides: list[Override]) -> list[list[str]]:
    """Every job of a basic-sweeper grid, in the order the sweeper launches them."""
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def grid_size(overrides: Sequence[Override]) -> int:
    """How many jobs the basic sweeper makes of these overrides, without making them: the
    product of each key's number of values (a key given twice counts once, its last, as
    split_arguments keeps it). A range's length is arithmetic, so range(10**9) costs nothing."""
    sizes = {o.get_key_element(): sweep_size(o) for o in overrides}
    return math.prod(sizes.values())


# Float ranges up to this many values are counted by Hydra's own iteration (exact, as the
# sweeper steps in Decimal); past it, arithmetically (the count may differ by one there).
_COUNT_FLOAT_STEPS = 10_000


def sweep_size(override: Override) -> int:
    """How many values one override gives the basic sweeper (1: a plain value). Raises
    HydraException for a sweep it cannot expand (interval(), tag()), as the sweeper does."""
    if not override.is_sweep_override():
        return 1
    if not override.is_discrete_sweep():
        assert override.value_type is not None
        raise HydraException(
            f"{BasicSweeper.__name__} does not support sweep type : {override.value_type.name}"
        )
    value = override.value()
    if isinstance(value, RangeSweep):
        steps = value.range()  # Hydra's own: int range(), or its FloatRange (an iterator)
        if isinstance(steps, range):
            return len(steps)
        assert value.start is not None and value.stop is not None
        start, stop, step = (Fraction(v) for v in (value.start, value.stop, value.step))
        if step == 0:
            return len(list(steps))  # Hydra's own error for a zero step
        count = max(0, math.ceil((stop - start) / step))
        return count if count > _COUNT_FLOAT_STEPS else sum(1 for _ in steps)
    return sum(1 for _ in override.sweep_string_iterator())  # a list, or glob() over a group


@contextmanager
def known_mode(mode: Any) -> Iterator[None]:
    """Within the block, Hydra's @hydra.main takes `mode` for the command's hydra.mode instead of
    composing the whole config to read it (Hydra.get_mode: ~0.2 s, and the same config is
    composed again to run): the pre-launch check composed it already and read the same key."""
    composing = Hydra.get_mode
    Hydra.get_mode = lambda self, config_name, overrides: mode  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = composing  # type: ignore[method-assign]
