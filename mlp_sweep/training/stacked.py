"""K MLPs of one shape as one stacked model (horizontal fusion, as in HFTA).

A sweep's runs often differ only in what each layer computes with its weights (activation,
init, learning rate, momentum, weight decay), not in the shapes or the data. Stacked, the K
first layers are one wide GEMM over the shared batch (784 x K*200), the later ones batched
matmuls, so small matmuls become large ones. This module is the model: the members' parameters
as [K, out, in] and [K, out] tensors and the forward pass; mlp_sweep.training.stacked_sgd holds
their optimizer state and trains them, as torch separates a module from its optimizer. No file
I/O: mlp_sweep.launch.stacked_group keeps each member's record, as runner.run does for one run.

Each member is the run it stands for: its weights come from build_mlp after
torch.manual_seed(its seed), as the run's do, and its batches from a generator seeded as the
run's (members of one seed share one batch order and one batch, the fast case; members of
several seeds each gather their own batch, and layer 1 is a batched matmul too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mlp_sweep.config import Config, Loss, Optimizer
from mlp_sweep.training.loop import LOSSES, History, StepHook
from mlp_sweep.training.model import ACTIVATIONS, Model
from mlp_sweep.training.sgd_step import ActGrad, activation_grad

# A run of members sharing an activation: (first member, how many, the activation and its
# backward, or None twice where the layer has none: hidden layers always, logits only
# for members with model.output_act).
Block = tuple[int, int, nn.Module | None, ActGrad | None]


def fuse_key(cfg: Config) -> tuple[object, ...] | None:
    """Runs with equal keys can train as one stack; None: this run trains alone."""
    if cfg.optim.name is not Optimizer.sgd or cfg.trainer.compile:
        return None
    t, d = cfg.trainer, cfg.data
    return (
        repr(d),  # the same data, whole
        t.batch_size,
        t.epochs,
        t.eval_batch_size,
        t.precision,
        t.deterministic,
        tuple(cfg.model.hidden),
        cfg.loss,
        cfg.device,
        t.time_limit,  # one clock for the stack
    )


@dataclass
class Member:
    """One run inside a stack: its own module and optimizer hold its state between epochs
    (the checkpoint format of a run trained alone)."""

    cfg: Config
    model: Model
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: History = field(default_factory=History)
    # The loggers' step hook (mlp_sweep.training.loop.StepHook) and how often it is called.
    on_steps: StepHook | None = None
    every: int = 10


def act_key(m: Member) -> str:
    return repr(ACTIVATIONS[m.cfg.model.act](m.cfg.model))


def _linear_state(model: Model) -> list[tuple[Tensor, Tensor]]:
    state = model.state_dict()
    layers = sorted({int(k.split(".")[0]) for k in state})
    return [(state[f"{i}.weight"], state[f"{i}.bias"]) for i in layers]


class StackedMLP:
    """The members' weights and biases stacked, [K, out, in] and [K, out], and their forward."""

    def __init__(self, members: Sequence[Member]) -> None:
        # Members with the same activation side by side: one activation call per run of them.
        self.members = sorted(members, key=lambda m: (act_key(m), m.cfg.model.output_act))
        per_member = [_linear_state(m.model) for m in self.members]
        n_layers = len(per_member[0])
        self.weights = [
            torch.stack([p[i][0] for p in per_member]).detach().clone().requires_grad_(True)
            for i in range(n_layers)
        ]
        self.biases = [
            torch.stack([p[i][1] for p in per_member]).detach().clone().requires_grad_(True)
            for i in range(n_layers)
        ]
        self.acts = [ACTIVATIONS[m.cfg.model.act](m.cfg.model) for m in self.members]
        self.grads = [activation_grad(a) for a in self.acts]
        self.output_act = [m.cfg.model.output_act for m in self.members]
        self._set_blocks()

    def parameters(self) -> list[Tensor]:
        """weight, bias of layer 1, then of layer 2, ...: the order of the members' modules."""
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    @property
    def has_all_backwards(self) -> bool:
        """Every activation has a hand-written backward (mlp_sweep.training.sgd_step)."""
        return all(g is not None for g in self.grads)

    def _set_blocks(self) -> None:
        """The runs of members sharing an activation (sorted so), for hidden layers and for
        the logits; computed when the members change, not per step."""
        self.blocks: dict[bool, list[Block]] = {}
        for last in (False, True):
            keys = [
                (repr(a), on or not last) for a, on in zip(self.acts, self.output_act, strict=True)
            ]
            starts = [j for j in range(len(keys)) if j == 0 or keys[j] != keys[j - 1]]
            ends = [*starts[1:], len(keys)]
            self.blocks[last] = [
                (a, b - a, *((self.acts[a], self.grads[a]) if keys[a][1] else (None, None)))
                for a, b in zip(starts, ends, strict=True)
            ]

    def activate(
        self, z: Tensor, last: bool
    ) -> tuple[list[Block], Sequence[Tensor], list[Tensor], Tensor]:
        """Each member's activation on its slice of z [K, batch, width], one call per block.
        Returns the blocks, z's parts, their outputs and the whole output."""
        blocks = self.blocks[last]
        # split, not slices: its backward is one cat, where each slice's zero-fills a whole z.
        parts = z.split([size for _, size, _, _ in blocks]) if len(blocks) > 1 else (z,)
        outs = [
            act(part) if act is not None else part
            for (_, _, act, _), part in zip(blocks, parts, strict=True)
        ]
        return blocks, parts, outs, outs[0] if len(outs) == 1 else torch.cat(outs)

    def forward(self, x: Tensor) -> Tensor:
        """Every member's logits, [K, batch, classes], for one shared batch x [batch, in] or
        one batch per member [K, batch, in]."""
        last = len(self.weights) - 1
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self.activate(self.layer(i, h, w, b), last=i == last)[3]
        return h

    def layer(self, i: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        if i == 0 and h.dim() == 2:  # a shared batch: one wide GEMM, x @ [W_1; ...; W_K]^T
            k, out = w.shape[0], w.shape[1]
            z = torch.addmm(b.reshape(-1), h, w.reshape(k * out, -1).t())
            return z.view(len(h), k, out).transpose(0, 1)
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, y: Tensor, loss: Loss, batch_size: int
    ) -> list[tuple[float, float]]:
        """(mean loss, accuracy) of each member over (x, y), summed as loop.evaluate sums."""
        k, loss_fn = len(self.members), LOSSES[loss]
        loss_sums = [torch.zeros((), device=x.device) for _ in range(k)]
        correct = [torch.zeros((), device=x.device, dtype=torch.long) for _ in range(k)]
        for start in range(0, len(x), batch_size):
            logits = self.forward(x[start : start + batch_size])
            target = y[start : start + batch_size]
            for j in range(k):
                loss_sums[j] += loss_fn(logits[j], target, "sum")
                correct[j] += (logits[j].argmax(dim=1) == target).sum()
        return [
            (s.item() / len(x), c.item() / len(x)) for s, c in zip(loss_sums, correct, strict=True)
        ]

    def write_back(self) -> None:
        """Each member's module from the stack (for its checkpoint)."""
        with torch.no_grad():
            for j, m in enumerate(self.members):
                state = {}
                for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                    state[f"{2 * i}.weight"], state[f"{2 * i}.bias"] = w[j], b[j]
                m.model.load_state_dict(state)

    def keep(self, index: Tensor) -> None:
        """Only these members from now on (the others diverged or were pruned)."""
        alive = index.tolist()
        with torch.no_grad():
            self.weights = [w.index_select(0, index).requires_grad_(True) for w in self.weights]
            self.biases = [b.index_select(0, index).requires_grad_(True) for b in self.biases]
        self.members = [self.members[j] for j in alive]
        self.acts = [self.acts[j] for j in alive]
        self.grads = [self.grads[j] for j in alive]
        self.output_act = [self.output_act[j] for j in alive]
        self._set_blocks()
