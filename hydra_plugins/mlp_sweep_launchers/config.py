"""Configs of mlp_sweep's launchers, registered with Hydra under hydra/launcher.

No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before
it is in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ParallelLauncherConf:
    _target_: str = "hydra_plugins.mlp_sweep_launchers.parallel_launcher.ParallelLauncher"
    # Jobs run at once; null: as many as the cores allow at trainer.threads each (with
    # threads=auto, one per core). 1 runs them one after another in a single worker.
    n_jobs: Optional[int] = None  # noqa: UP045 (see the module's note)


ConfigStore.instance().store(
    group="hydra/launcher", name="parallel", node=ParallelLauncherConf, provider="mlp_sweep"
)
