"""Hydra's BasicSweeper (same grid, same order, same batches, same multirun.yaml), with every
job's config composed through mlp_sweep.launch.compose.CachedLoader: by the launcher it hands
the loader to, and (checked without building each config) when it checks a batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mlp_sweep.launch.compose import CachedLoader


class GridSweeper(BasicSweeper):
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        loader = hydra_context.config_loader
        if not isinstance(loader, CachedLoader):
            hydra_context = dataclasses.replace(hydra_context, config_loader=CachedLoader(loader))
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """What Hydra's sweeper checks before a batch (that every job composes), at a cost
        that does not grow with the config's size."""
        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        assert isinstance(loader, CachedLoader)
        for overrides in batch:
            loader.check_sweep_config(self.config, list(overrides))
