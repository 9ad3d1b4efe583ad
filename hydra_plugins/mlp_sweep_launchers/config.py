"""Configs of mlp_sweep's launchers, registered with Hydra under hydra/launcher.

No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before
it is in sys.modules, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ParallelLauncherConf:
    _target_: str = "hydra_plugins.mlp_sweep_launchers.parallel_launcher.ParallelLauncher"
    # Jobs run at once; null: as many as the cores allow at trainer.threads each (with
    # threads=auto, one per core). 1 runs them one after another in a single worker.
    n_jobs: Optional[int] = None  # noqa: UP045 (see the module's note)
    # How many times a job whose worker process died while running it (killed, out of memory,
    # crashed) runs again, continuing from its checkpoint; 0: it is reported, and --resume
    # runs it. A job that failed by itself is never retried: it would fail the same way.
    retries: int = 0
    # The GPUs the workers are placed on: auto (every GPU this process sees, when the jobs
    # train on CUDA; none otherwise) or a list of GPU numbers, e.g. [0,2]. Each worker is
    # pinned to one by CUDA_VISIBLE_DEVICES; with a list, workers are pinned whatever the device.
    gpus: Any = "auto"
    # Workers sharing each GPU: small MLPs leave a GPU mostly idle, so several at once train
    # more models per second. auto: as many as the cores allow, at most 8.
    jobs_per_gpu: Any = 1


ConfigStore.instance().store(
    group="hydra/launcher", name="parallel", node=ParallelLauncherConf, provider="mlp_sweep"
)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.mlp_sweep_launchers.fused_launcher.FusedLauncher"
    # As the parallel launcher's: workers at once (each trains a stack or a single job).
    n_jobs: Optional[int] = None  # noqa: UP045 (see the module's note)
    # As the parallel launcher's; a stack whose worker died runs again as a whole.
    retries: int = 0
    # As the parallel launcher's: each worker, and so each stack, on one GPU.
    gpus: Any = "auto"
    jobs_per_gpu: Any = 1
    # auto: fuse a group only where a stack, measured here before the sweep starts (~1 s),
    # trains faster per run than the runs alone; always; never (the parallel launcher).
    fuse: str = "auto"
    # Jobs that can share a stack train as one from this many on; fewer run one by one.
    min_group: int = 2
    # The most runs in one stack; a larger group is split evenly (memory, and workers to feed).
    max_group: int = 16


ConfigStore.instance().store(
    group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="mlp_sweep"
)
