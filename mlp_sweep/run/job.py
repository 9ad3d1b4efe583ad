"""Where a run sits in a sweep (JobInfo): known before any torch is imported, so the command's
own process can build it (mlp_sweep.launch.task.job_info) without training anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlp_sweep.training.loop import History


@dataclass(frozen=True)
class JobInfo:
    """Where a run sits in a sweep; all optional so a run can stand alone."""

    num: int | None = None
    overrides: list[str] = field(default_factory=list)
    # The sweep's folder, for a job of a sweep (its runs share a visdom env, say).
    sweep_dir: Path | None = None
    # A search's trial: told each epoch, True to stop the run there (mlp_sweep.search.trial).
    prune: Callable[[History], bool] | None = None
