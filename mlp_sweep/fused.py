"""K MLPs of one shape trained as one stacked model (horizontal fusion, as in HFTA).

A sweep's runs often differ only in what each layer computes with its weights (activation,
init, learning rate, momentum, weight decay), not in the shapes or the data. Stacked, the K
first layers are one wide GEMM over the shared batch (784 x K*200), the later ones batched
matmuls, and one step updates all K, so small matmuls become large ones. No file I/O here:
mlp_sweep.launch.fused keeps each member's records, as runner.run does for one run.

Each member is the run it stands for: its weights come from build_mlp after
torch.manual_seed(its seed), as the run's do; its batches from a generator seeded as the run's
(members of one seed share one batch order and one batch, the fast case; members of several
seeds each gather their own batch, and layer 1 is a batched matmul too, which pays where the
device is far from its limit, measured before a sweep decides); its loss is its own mean over
the batch, and the sum of the members' losses has exactly each member's gradient in its own
slice. The SGD
update is torch.optim.SGD's (weight decay, momentum, dampening 0, Nesterov), per member. A
member whose loss goes non-finite is recorded `diverged` and taken out of the stack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlp_sweep import precision
from mlp_sweep.config import Config, Loss, Optimizer
from mlp_sweep.data import Data, batch_indices, load_data
from mlp_sweep.device import resolve_device
from mlp_sweep.fast import ActGrad, activation_grad, fast_step
from mlp_sweep.model import ACTIVATIONS, Model, build_mlp
from mlp_sweep.train import LOSSES, EpochStats, History, LossFn, make_optimizer

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
        # Members with the same activation side by side: one activation call per run of them.
        self.members = sorted(members, key=lambda m: (_act_key(m), m.cfg.model.output_act))
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
        like = self.weights[0]
        optims = [m.cfg.optim for m in self.members]

        def column(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=like.dtype, device=like.device)

        self.lr = column([o.lr for o in optims])
        self.neg_lr = -self.lr
        self.momentum = column([o.momentum for o in optims])
        self.weight_decay = column([o.weight_decay for o in optims])
        self.nesterov = torch.tensor([o.nesterov for o in optims], device=like.device)
        self.uses_momentum = any(o.momentum != 0 for o in optims)
        self.uses_decay = any(o.weight_decay != 0 for o in optims)
        self.by_hand = (
            not (self.uses_momentum or self.uses_decay)
            and all(g is not None for g in self.grads)
            and not torch.is_autocast_enabled(like.device.type)
        )
        self.buffers: list[Tensor | None] = [None] * (2 * n_layers)
        self._load_buffers()
        self._set_blocks()

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

    def _activate(
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
            h = self._activate(self._layer(i, h, w, b), last=i == last)[3]
        return h

    def _layer(self, i: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        if i == 0 and h.dim() == 2:  # a shared batch: one wide GEMM, x @ [W_1; ...; W_K]^T
            k, out = w.shape[0], w.shape[1]
            z = torch.addmm(b.reshape(-1), h, w.reshape(k * out, -1).t())
            return z.view(len(h), k, out).transpose(0, 1)
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def step(self, x: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
        """One SGD step for every member; returns their mean losses on this batch, [K]. A
        shared batch is x [batch, in], y [batch]; one per member x [K, batch, in], y [K, batch]."""
        if self.by_hand and loss_fn is LOSSES[Loss.ce]:
            return self._step_by_hand(x, y)
        return self._step_autograd(x, y, loss_fn)

    @torch.no_grad()
    def _step_by_hand(self, x: Tensor, y: Tensor) -> Tensor:
        """The step of _step_autograd without autograd's bookkeeping (as mlp_sweep.fast does
        for one run): forward keeping what backward needs, backward with the activations' own
        ATen backward kernels, each layer updated once its gradients are known. Plain SGD and
        cross-entropy only (the tutorial's setup)."""
        k, n = len(self.members), x.shape[-2]
        last = len(self.weights) - 1
        saved = []
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            blocks, parts, outs, a = self._activate(self._layer(i, h, w, b), last=i == last)
            saved.append((h, parts, outs, blocks))
            h = a
        c = h.shape[2]
        logp = torch.log_softmax(h, dim=2)
        losses = (
            F.nll_loss(logp.reshape(k * n, c), _targets(y, k), reduction="none").view(k, n).mean(1)
        )
        g = (logp.exp() - F.one_hot(y, c).to(logp.dtype)) / n  # d(mean loss)/d(logits), per member
        for i in range(last, -1, -1):
            w, b = self.weights[i], self.biases[i]
            h_in, parts, outs, blocks = saved[i]
            if any(grad is not None for _, _, _, grad in blocks):
                gs = g.split([size for _, size, _, _ in blocks]) if len(blocks) > 1 else (g,)
                back = [
                    grad(gp, zp, ap) if grad is not None else gp
                    for (_, _, _, grad), gp, zp, ap in zip(blocks, gs, parts, outs, strict=True)
                ]
                g = back[0] if len(back) == 1 else torch.cat(back)
            grad_b = g.sum(1)
            if i == 0 and h_in.dim() == 2:  # one wide GEMM again: [K*out, batch] @ [batch, in]
                out = w.shape[1]
                grad_w = g.transpose(0, 1).reshape(n, k * out).t().mm(h_in).view(k, out, -1)
            else:
                grad_w = torch.bmm(g.transpose(1, 2), h_in)
                if i > 0:
                    g = torch.bmm(g, w)  # with the weights before this step's update
            w.addcmul_(grad_w, self.neg_lr.view(-1, 1, 1))
            b.addcmul_(grad_b, self.neg_lr.view(-1, 1))
        return losses

    def _step_autograd(self, x: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
        logits = self.forward(x)
        k, n, c = logits.shape
        if loss_fn is LOSSES[Loss.ce]:  # one call for all: each member's mean over its batch
            per_sample = F.cross_entropy(logits.reshape(k * n, c), _targets(y, k), reduction="none")
            losses = per_sample.view(k, n).mean(dim=1)
        else:
            ys = [y[j] if y.dim() == 2 else y for j in range(k)]
            losses = torch.stack([loss_fn(logits[j], ys[j], "mean") for j in range(k)])
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
                p.addcmul_(d_p, self.neg_lr.view(shape))  # p - lr * d_p, in one pass
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
        self.grads = [self.grads[j] for j in alive]
        self.output_act = [self.output_act[j] for j in alive]
        self._set_blocks()
        for name in ("lr", "neg_lr", "momentum", "weight_decay", "nesterov"):
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
    # One seed: one batch order, one batch for all (the wide first GEMM). Several: each
    # member gathers its own batch from its own generator, and layer 1 is batched too.
    shared = len({m.cfg.seed for m in stack.members}) == 1
    generator = stack.members[0].generator if stack.members else None
    start = len(members[0].history.epochs)
    n, device = len(data.x_train), data.x_train.device
    for epoch in range(start + 1, t.epochs + 1):
        if not stack.members:
            return
        assert generator is not None
        tic = time.perf_counter()
        total = torch.zeros(len(stack.members), device=device, dtype=data.x_train.dtype)
        if shared:
            for idx in batch_indices(n, t.batch_size, generator, device):
                xb, yb = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
                total += stack.step(xb, yb, loss_fn) * len(idx)
        else:
            orders = [batch_indices(n, t.batch_size, m.generator, device) for m in stack.members]
            for idxs in zip(*orders, strict=True):
                xb = torch.stack([data.x_train.index_select(0, idx) for idx in idxs])
                yb = torch.stack([data.y_train.index_select(0, idx) for idx in idxs])
                total += stack.step(xb, yb, loss_fn) * len(idxs[0])
        train_losses = [v / n for v in total.tolist()]  # as train_epoch: item() / n
        tested = stack.evaluate(data.x_test, data.y_test, loss_fn, t.eval_batch_size)
        seconds = (time.perf_counter() - tic) / len(stack.members)
        alive = []
        for j, (m, train_loss, (test_loss, test_acc)) in enumerate(
            zip(stack.members, train_losses, tested, strict=True)
        ):
            m.history.epochs.append(EpochStats(epoch, train_loss, test_loss, test_acc, seconds))
            if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
                m.history.status = "diverged"
            else:
                alive.append(j)
            if shared and m.generator is not generator:
                m.generator.set_state(generator.get_state())
        stack.write_back()
        if on_epoch is not None:
            on_epoch(stack.members)
        if len(alive) < len(stack.members):
            stack.keep(alive)


def _targets(y: Tensor, k: int) -> Tensor:
    """The labels of all members' samples, flat: a shared batch's repeated, or each member's."""
    return y.reshape(-1) if y.dim() == 2 else y.repeat(k)


def _act_key(m: Member) -> str:
    return repr(ACTIVATIONS[m.cfg.model.act](m.cfg.model))


def step_seconds(cfgs: Sequence[Config], threads: int, steps: int = 15) -> tuple[float, float]:
    """Seconds per model and training step of these runs, (alone, fused), at `threads` torch
    threads on their device: what hydra/launcher=fused measures before it decides to fuse.
    Alone: the mean over the runs' distinct activations; fused: the stack's step / k."""
    cfg, k = cfgs[0], len(cfgs)
    device = resolve_device(cfg.device)
    dtype = precision.dtype(cfg.trainer.precision)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = load_data(cfg.data, device, dtype)
        x, y = data.x_train[: cfg.trainer.batch_size], data.y_train[: cfg.trainer.batch_size]
        loss_fn = LOSSES[cfg.loss]
        members = []
        for c in cfgs:
            model = build_mlp(c.model, data.num_features, data.num_classes, device, dtype)
            optimizer = make_optimizer(model.parameters(), c.optim)
            members.append(Member(c, model, optimizer, torch.Generator()))
        distinct = {(_act_key(m), m.cfg.model.output_act): m for m in members}

        def alone(m: Member) -> Callable[[], None]:
            one = fast_step(m.model, m.optimizer, m.cfg.loss is Loss.ce)

            def step() -> None:
                if one is not None:
                    one(x, y)
                    return
                m.optimizer.zero_grad(set_to_none=True)
                loss_fn(m.model(x), y, "mean").backward()
                m.optimizer.step()

            return step

        if len({c.seed for c in cfgs}) > 1:  # each member its own batch (here: the same one)
            xs, ys = x.expand(k, *x.shape).contiguous(), y.expand(k, *y.shape).contiguous()
        else:
            xs, ys = x, y
        with precision.autocast(cfg.trainer.precision, device):
            alone_s = sum(_timed(alone(m), steps, device) for m in distinct.values())
            stack = Stack(members)
            fused_s = _timed(lambda: stack.step(xs, ys, loss_fn), steps, device) / k
        return alone_s / len(distinct), fused_s
    finally:
        torch.set_num_threads(before)


def _timed(step: Callable[[], object], steps: int, device: torch.device) -> float:
    """Median seconds of a step, in rounds of `steps` after a warm-up round."""
    rounds = []
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rounds.append((time.perf_counter() - tic) / steps)
    return sorted(rounds[1:])[1]
