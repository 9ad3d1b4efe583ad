"""What every logger is told about the run it watches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """What a logger needs to know about the run it watches."""

    run_dir: Path
    label: str  # names the run in legends: "3: model.act=selu optim.lr=0.1"
    group: str  # the sweep's folder name (its runs share one visdom env), or "runs"
    params: dict[str, Any]  # the flat config, as in metrics.json
    hparams: dict[str, Any] = field(default_factory=dict)  # the keys worth comparing
    # Where TensorBoard's event files go: a sweep's run in <sweep>/tb/<its label>, so that
    # TensorBoard's run selector shows "tb/3 model.act=selu" rather than "3"; a single run in
    # its own folder.
    events_dir: Path | None = None
