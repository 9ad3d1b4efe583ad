"""K MLPs of one shape trained as one stacked model (horizontal fusion, as in HFTA).

A sweep's runs often differ only in what each layer computes with its weights (activation,
init, learning rate, momentum, weight decay), not in the shapes or the data. Stacked, the K
first layers are one wide GEMM over the shared batch (784 x K*200), the later ones batched
matmuls, and one step updates all K, so small matmuls become large ones. No file I/O here:
mlp_sweep.launch.fused keeps each member's records, as runner.run does for one run.

Each member is the run it stands for: its weights come from build_mlp after
torch.manual_seed(its seed), as the run's do; its batches from a generator seeded as the run's
(members share one seed, hence one batch order); its loss is its own mean over the batch, and
the sum of the members' losses has exactly each member's gradient in its own slice. The SGD
update is torch.optim.SGD's (weight decay, momentum, dampening 0, Nesterov), per member. A
member whose loss goes non-finite is recorded `diverged` and taken out of the stack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mlp_sweep.config import Config, Optimizer
from mlp_sweep.data import Data, batch_indices
from mlp_sweep.model import ACTIVATIONS, Model
from mlp_sweep.train import LOSSES, EpochStats, History, LossFn


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
        cfg.seed,  # one batch order for all (see the README: why seeds are not mixed here)
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


def _linear_state(model: Model) -> list[tuple[Tensor, Tensor]]:
    state = model.state_dict()
    layers = sorted({int(k.split(".")[0]) for k in state})
    return [(state[f"{i}.weight"], state[f"{i}.bias"]) for i in layers]


class Stack:
    """The members' parameters as [K, out, in] and [K, out] tensors, and their SGD settings."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)
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
        self.output_act = [m.cfg.model.output_act for m in self.members]
        like = self.weights[0]
        optims = [m.cfg.optim for m in self.members]

        def column(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=like.dtype, device=like.device)

        self.lr = column([o.lr for o in optims])
        self.momentum = column([o.momentum for o in optims])
        self.weight_decay = column([o.weight_decay for o in optims])
        self.nesterov = torch.tensor([o.nesterov for o in optims], device=like.device)
        self.uses_momentum = any(o.momentum != 0 for o in optims)
        self.uses_decay = any(o.weight_decay != 0 for o in optims)
        self.buffers: list[Tensor | None] = [None] * (2 * n_layers)
        self._load_buffers()

    def params(self) -> list[Tensor]:
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    def _load_buffers(self) -> None:
        """Momentum buffers from the members' optimizers (resumed runs'). A member without
        momentum has none and gets zeros: with momentum 0 its buffer is always its gradient."""
        states = [list(m.optimizer.state.values()) for m in self.members]
        if not self.uses_momentum or not any(states):
            return
        for j, p in enumerate(self.params()):
            self.buffers[j] = (
                torch.stack(
                    [s[j]["momentum_buffer"] if s else torch.zeros_like(p[0]) for s in states]
                )
                .detach()
                .clone()
            )

    def forward(self, x: Tensor) -> Tensor:
        """Every member's logits for one shared input batch: [K, batch, classes]."""
        k = len(self.members)
        last = len(self.weights) - 1
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i == 0:  # one wide GEMM: x @ [W_1; ...; W_K]^T
                out = w.shape[1]
                z = torch.addmm(b.reshape(-1), x, w.reshape(k * out, -1).t())
                z = z.view(len(x), k, out).transpose(0, 1)
            else:
                z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < last:
                h = torch.stack([act(z[j]) for j, act in enumerate(self.acts)])
            elif any(self.output_act):
                h = torch.stack(
                    [
                        act(z[j]) if on else z[j]
                        for j, (act, on) in enumerate(zip(self.acts, self.output_act, strict=True))
                    ]
                )
            else:
                h = z
        return h

    def step(self, x: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
        """One SGD step for every member; returns their mean losses on this batch, [K]."""
        logits = self.forward(x)
        losses = torch.stack([loss_fn(logits[j], y, "mean") for j in range(len(self.members))])
        for p in self.params():
            p.grad = None
        losses.sum().backward()
        with torch.no_grad():
            for j, p in enumerate(self.params()):
                assert p.grad is not None
                shape = (-1,) + (1,) * (p.dim() - 1)
                d_p = p.grad
                if self.uses_decay:
                    d_p = d_p.add(p * self.weight_decay.view(shape))
                if self.uses_momentum:
                    buf = self.buffers[j]
                    if buf is None:
                        buf = self.buffers[j] = d_p.clone()
                    else:
                        buf.mul_(self.momentum.view(shape)).add_(d_p)
                    nesterov = d_p + buf * self.momentum.view(shape)
                    d_p = torch.where(self.nesterov.view(shape), nesterov, buf)
                p.sub_(d_p * self.lr.view(shape))
        return losses.detach()

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, y: Tensor, loss_fn: LossFn, batch_size: int
    ) -> list[tuple[float, float]]:
        """(mean loss, accuracy) of each member over (x, y), summed as train.evaluate sums."""
        k = len(self.members)
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
        """Each member's module and optimizer state from the stack (for its checkpoint)."""
        with torch.no_grad():
            for j, m in enumerate(self.members):
                state = {}
                for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                    state[f"{2 * i}.weight"], state[f"{2 * i}.bias"] = w[j], b[j]
                m.model.load_state_dict(state)
                if m.cfg.optim.momentum != 0 and self.buffers[0] is not None:
                    for p, buf in zip(m.model.parameters(), self.buffers, strict=True):
                        assert buf is not None
                        m.optimizer.state[p]["momentum_buffer"] = buf[j].clone()

    def keep(self, alive: list[int]) -> None:
        """Only these members from now on (the others diverged)."""
        index = torch.tensor(alive, device=self.lr.device)
        with torch.no_grad():
            self.weights = [w.index_select(0, index).requires_grad_(True) for w in self.weights]
            self.biases = [b.index_select(0, index).requires_grad_(True) for b in self.biases]
        self.buffers = [None if b is None else b.index_select(0, index) for b in self.buffers]
        self.members = [self.members[j] for j in alive]
        self.acts = [self.acts[j] for j in alive]
        self.output_act = [self.output_act[j] for j in alive]
        for name in ("lr", "momentum", "weight_decay", "nesterov"):
            setattr(self, name, getattr(self, name).index_select(0, index))


def fit_fused(
    members: Sequence[Member],
    data: Data,
    on_epoch: Callable[[list[Member]], None] | None = None,
) -> None:
    """Train the members together until their epochs are done; each member's history gets
    its epochs (seconds: the stack's epoch time shared out evenly) and its status."""
    first = members[0].cfg
    t = first.trainer
    loss_fn = LOSSES[first.loss]
    stack = Stack([m for m in members if m.history.status != "diverged"])
    generator = stack.members[0].generator if stack.members else None
    start = len(members[0].history.epochs)
    n = len(data.x_train)
    for epoch in range(start + 1, t.epochs + 1):
        if not stack.members:
            return
        assert generator is not None
        tic = time.perf_counter()
        stack_dtype = data.x_train.dtype
        total = torch.zeros(len(stack.members), device=data.x_train.device, dtype=stack_dtype)
        for idx in batch_indices(n, t.batch_size, generator, data.x_train.device):
            xb, yb = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
            total += stack.step(xb, yb, loss_fn) * len(idx)
        train_losses = [v / n for v in total.tolist()]  # as train_epoch: item() / n
        tested = stack.evaluate(data.x_test, data.y_test, loss_fn, t.eval_batch_size)
        seconds = (time.perf_counter() - tic) / len(stack.members)
        alive = []
        for j, (m, train_loss, (test_loss, test_acc)) in enumerate(
            zip(stack.members, train_losses, tested, strict=True)
        ):
            m.history.epochs.append(EpochStats(epoch, train_loss, test_loss, test_acc, seconds))
            if not (_finite(train_loss) and _finite(test_loss)):
                m.history.status = "diverged"
            else:
                alive.append(j)
            if m.generator is not generator:
                m.generator.set_state(generator.get_state())
        stack.write_back()
        if on_epoch is not None:
            on_epoch(stack.members)
        if len(alive) < len(stack.members):
            stack.keep(alive)


def _finite(x: float) -> bool:
    return math.isfinite(x)
