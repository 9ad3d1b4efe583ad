"""The grid sweeper's config, registered with Hydra under hydra/sweeper.

No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before
it is in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Dict, Optional  # noqa: UP035 (see the module's note)

from hydra.core.config_store import ConfigStore


@dataclass
class GridSweeperConf:
    """The keys of Hydra's BasicSweeperConf, with the same meaning."""

    _target_: str = "hydra_plugins.mlp_sweep_grid.grid_sweeper.GridSweeper"
    # Jobs handed to the launcher at a time; null: the whole grid in one batch.
    max_batch_size: Optional[int] = None  # noqa: UP045 (see the module's note)
    # A default grid, `key: v1,v2`, swept before the command line's own overrides.
    params: Optional[Dict[str, str]] = field(default=None)  # noqa: UP006, UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="mlp_sweep"
)
