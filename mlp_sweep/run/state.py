"""A run's training state: drawn from its seed, saved to its checkpoint, restored from it; and
the process-wide settings it trains under. The same for a run trained alone and for a member of
a stack, so both draw the same weights and batches and write the same checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from mlp_sweep.config import Config
from mlp_sweep.run.record import UNREADABLE_SUFFIX, load_checkpoint, save_checkpoint
from mlp_sweep.status import Status
from mlp_sweep.training import precision, threads
from mlp_sweep.training.data import Data
from mlp_sweep.training.loop import EpochStats, History, make_optimizer
from mlp_sweep.training.model import Model, build_mlp


@dataclass
class RunState:
    """What a run's checkpoint holds, besides its config: model, optimizer, batch order."""

    model: Model
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: History = field(default_factory=History)
    # Why the run's checkpoint was set aside and the run restarted, if it was.
    set_aside: str | None = None

    def save(self, path: Path, params: dict[str, Any]) -> None:
        save_checkpoint(
            path,
            {
                "params": json.dumps(params),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": [e.as_dict() for e in self.history.epochs],
                "status": str(self.history.status),  # a plain str: weights_only loads it
            },
        )

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = History(
            [EpochStats(**e) for e in state["history"]], status=Status(state["status"])
        )


def start_state(cfg: Config, data: Data, device: torch.device, checkpoint: Path) -> RunState:
    """The run's model, optimizer and batch generator, drawn from its seed as every run draws
    them (a stacked member too: the same seed gives the same weights and batches), continued
    from its checkpoint where trainer.checkpoint is on and one exists. Loading data draws
    nothing from torch's RNG, so it may come before or after."""
    state = _drawn(cfg, data, device)
    if cfg.trainer.checkpoint and checkpoint.exists():
        try:
            state.restore(load_checkpoint(checkpoint))
        except Exception as err:  # torn, garbage, another shape, an older format
            aside = set_aside(checkpoint)
            state = _drawn(cfg, data, device)  # restore may have loaded part of it
            state.set_aside = (
                f"{checkpoint} is unreadable ({unreadable_because(err)}); moved aside to "
                f"{aside.name}, the run restarts from epoch 0"
            )
    return state


def _drawn(cfg: Config, data: Data, device: torch.device) -> RunState:
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    dtype = precision.dtype(cfg.trainer.precision)
    model = build_mlp(cfg.model, data.num_features, data.num_classes, device, dtype)
    return RunState(model, make_optimizer(model.parameters(), cfg.optim), generator)


def set_aside(path: Path) -> Path:
    """Move a damaged file out of the way as `<name>.unreadable` (the newest such copy is
    kept, for whoever wants to look at it), so the run can go on without it."""
    aside = path.with_name(path.name + UNREADABLE_SUFFIX)
    os.replace(path, aside)
    return aside


def unreadable_because(err: BaseException) -> str:
    """Why a file could not be read, in a few words. Never torch's own weights_only message,
    whose advice (load it with weights_only=False) would run whatever the file holds."""
    if isinstance(err, pickle.UnpicklingError):
        return "not a checkpoint of tensors and plain values"
    lines = str(err).strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > 100:
        first = first[:97] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def configure_process(cfg: Config, device: torch.device) -> None:
    """The process-wide settings a run trains under: determinism, torch threads, matmul
    precision (a worker that ran another job before keeps none of its settings)."""
    _set_determinism(cfg.trainer.deterministic, cfg.trainer.compile)
    torch.set_num_threads(threads.resolve(cfg.trainer.threads))
    precision.configure(cfg.trainer.precision, device)


def compiled(model: Model) -> Model:
    """torch.compile of the model; the checkpoint keeps saving the model itself. On CUDA the
    "reduce-overhead" mode captures the steps in CUDA graphs (the MLP's kernels are small)."""
    if not isinstance(model, torch.nn.Module):  # the functional impl trains eagerly
        return model
    device = next(model.parameters()).device
    mode = "reduce-overhead" if device.type == "cuda" else None
    return cast(Model, torch.compile(model, mode=mode))


def _set_determinism(enabled: bool, compiling: bool) -> None:
    if enabled:
        # cuBLAS needs this before its first use to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if compiling or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(enabled)
    else:
        # The public call imports torch._inductor (a second per process) only to set its own
        # flag, which matters to torch.compile alone: without it, set the ATen flag directly.
        torch._C._set_deterministic_algorithms(enabled)
