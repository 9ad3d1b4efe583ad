"""SGD for a stacked model: the members' optimizer state, one step for all K, their epochs.

StackedSGD is to mlp_sweep.training.stacked.StackedMLP what torch.optim.SGD is to a module:
each member's lr, momentum, weight decay and Nesterov flag as [K] columns and its momentum
buffers stacked, applying torch.optim.SGD's update (dampening 0) to every member's slice at
once. Each member's loss is its own mean over its batch, and the sum of the members' losses has
exactly each member's gradient in its own slice. A member whose loss goes non-finite is
recorded `diverged` and taken out of the stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mlp_sweep.config import Config, Loss
from mlp_sweep.status import Status
from mlp_sweep.training import precision
from mlp_sweep.training.data import Data, batch_indices, load_data
from mlp_sweep.training.device import resolve_device
from mlp_sweep.training.loop import (
    LOSSES,
    EpochStats,
    check_deadline,
    diverged,
    make_optimizer,
)
from mlp_sweep.training.model import build_mlp
from mlp_sweep.training.sgd_step import manual_step
from mlp_sweep.training.stacked import Member, StackedMLP, act_key


class StackedSGD:
    """The members' SGD settings and momentum buffers, for the stack's parameters."""

    def __init__(self, model: StackedMLP) -> None:
        self.model = model
        like = model.weights[0]
        optims = [m.cfg.optim for m in model.members]

        def column(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=like.dtype, device=like.device)

        self.lr = column([o.lr for o in optims])
        self.neg_lr = -self.lr
        self.momentum = column([o.momentum for o in optims])
        self.weight_decay = column([o.weight_decay for o in optims])
        self.nesterov = torch.tensor([o.nesterov for o in optims], device=like.device)
        self.uses_momentum = any(o.momentum != 0 for o in optims)
        self.uses_decay = any(o.weight_decay != 0 for o in optims)
        self.buffers: list[Tensor | None] = [None] * len(model.parameters())
        self._load_buffers()

    @property
    def plain(self) -> bool:
        """No momentum and no weight decay for any member: p -= lr * grad."""
        return not (self.uses_momentum or self.uses_decay)

    def _load_buffers(self) -> None:
        """Momentum buffers from the members' optimizers (resumed runs'). A member without
        momentum has none and gets zeros: with momentum 0 its buffer is always its gradient."""
        states = [list(m.optimizer.state.values()) for m in self.model.members]
        if not self.uses_momentum or not any(states):
            return
        for j, p in enumerate(self.model.parameters()):
            self.buffers[j] = (
                torch.stack(
                    [s[j]["momentum_buffer"] if s else torch.zeros_like(p[0]) for s in states]
                )
                .detach()
                .clone()
            )

    @torch.no_grad()
    def update(self, j: int, p: Tensor, grad: Tensor) -> None:
        """torch.optim.SGD's update of parameter j (p, [K, ...]) with its gradient."""
        shape = (-1,) + (1,) * (p.dim() - 1)
        d_p = grad
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

    def write_back(self) -> None:
        """Each member's optimizer state from the stack (for its checkpoint)."""
        for j, m in enumerate(self.model.members):
            if m.cfg.optim.momentum != 0 and self.buffers[0] is not None:
                for p, buf in zip(m.model.parameters(), self.buffers, strict=True):
                    assert buf is not None
                    m.optimizer.state[p]["momentum_buffer"] = buf[j].clone()

    def keep(self, index: Tensor) -> None:
        """Only these members from now on (the model keeps the same ones)."""
        self.buffers = [None if b is None else b.index_select(0, index) for b in self.buffers]
        for name in ("lr", "neg_lr", "momentum", "weight_decay", "nesterov"):
            setattr(self, name, getattr(self, name).index_select(0, index))


def step(model: StackedMLP, sgd: StackedSGD, x: Tensor, y: Tensor, loss: Loss) -> Tensor:
    """One SGD step for every member; returns their mean losses on this batch, [K]. A shared
    batch is x [batch, in], y [batch]; one per member x [K, batch, in], y [K, batch]."""
    autocast = torch.is_autocast_enabled(x.device.type)
    if loss is Loss.ce and sgd.plain and model.has_all_backwards and not autocast:
        return _step_by_hand(model, sgd, x, y)
    return _step_autograd(model, sgd, x, y, loss)


@torch.no_grad()
def _step_by_hand(model: StackedMLP, sgd: StackedSGD, x: Tensor, y: Tensor) -> Tensor:
    """_step_autograd's step without autograd's bookkeeping (as mlp_sweep.training.sgd_step
    does for one run): forward keeping what backward needs, backward with the activations' own
    ATen backward kernels, each layer updated once its gradients are known. Plain SGD and
    cross-entropy only (the tutorial's setup)."""
    k, n = len(model.members), x.shape[-2]
    last = len(model.weights) - 1
    saved = []
    h = x
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        blocks, parts, outs, a = model.activate(model.layer(i, h, w, b), last=i == last)
        saved.append((h, parts, outs, blocks))
        h = a
    c = h.shape[2]
    logp = torch.log_softmax(h, dim=2)
    losses = F.nll_loss(logp.reshape(k * n, c), _targets(y, k), reduction="none").view(k, n).mean(1)
    g = (logp.exp() - F.one_hot(y, c).to(logp.dtype)) / n  # d(mean loss)/d(logits), per member
    for i in range(last, -1, -1):
        w, b = model.weights[i], model.biases[i]
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
        sgd.update(2 * i, w, grad_w)
        sgd.update(2 * i + 1, b, grad_b)
    return losses


def _step_autograd(model: StackedMLP, sgd: StackedSGD, x: Tensor, y: Tensor, loss: Loss) -> Tensor:
    logits = model.forward(x)
    k, n, c = logits.shape
    if loss is Loss.ce:  # one call for all: each member's mean over its batch
        per_sample = F.cross_entropy(logits.reshape(k * n, c), _targets(y, k), reduction="none")
        losses = per_sample.view(k, n).mean(dim=1)
    else:
        loss_fn = LOSSES[loss]
        ys = [y[j] if y.dim() == 2 else y for j in range(k)]
        losses = torch.stack([loss_fn(logits[j], ys[j], "mean") for j in range(k)])
    params = model.parameters()
    for p in params:
        p.grad = None
    losses.sum().backward()
    for j, p in enumerate(params):
        assert p.grad is not None
        sgd.update(j, p, p.grad)
    return losses.detach()


class _StepReports:
    """Each member's train loss every its logger.every_n_steps steps, cut from the stack's
    running sums as train_epoch cuts one run's (with every=1: the step's own loss)."""

    def __init__(self, members: Sequence[Member], first_step: int) -> None:
        self.first_step = first_step
        self.hooks = [(j, m.on_steps, m.every) for j, m in enumerate(members) if m.on_steps]
        self.everys = sorted({every for _, _, every in self.hooks})
        self.marks: dict[int, tuple[Tensor | None, int]] = {e: (None, 0) for e in self.everys}

    def step(self, number: int, losses: Tensor, total: Tensor, size: int) -> None:
        for every in self.everys:
            if every == 1:
                self._tell(every, number, losses)
                continue
            mark, samples = self.marks[every]
            samples += size
            if (number + 1) % every == 0:
                start = torch.zeros_like(total) if mark is None else mark
                self._tell(every, number, (total - start) / samples)
                mark, samples = total.clone(), 0
            self.marks[every] = (mark, samples)

    def end(self, number: int, total: Tensor) -> None:
        """The epoch's last steps, fewer than `every`."""
        for every, (mark, samples) in self.marks.items():
            if samples:
                start = torch.zeros_like(total) if mark is None else mark
                self._tell(every, number, (total - start) / samples)

    def _tell(self, every: int, number: int, losses: Tensor) -> None:
        for j, hook, each in self.hooks:
            if each == every:
                hook(self.first_step + number, losses[j])


def fit_stacked(
    members: Sequence[Member],
    data: Data,
    on_epoch: Callable[[list[Member]], Collection[Member]] | None = None,
    deadline: float | None = None,
) -> None:
    """Train the members together until their epochs are done; each member's history gets
    its epochs (seconds: the stack's epoch time shared out evenly) and its status.

    A member leaves the stack, and the stack goes on with the rest, when its loss goes
    non-finite (`diverged`) or when `on_epoch` (called after each epoch with the members that
    trained it) returns it: a search's pruner stopping it there. Each member's `on_steps`
    gets its train loss every `every` steps, numbered over the whole run from 1. Past
    `deadline` (time.monotonic()), raises TimeLimitReached at the next step."""
    first = members[0].cfg
    t, loss = first.trainer, first.loss
    model = StackedMLP([m for m in members if m.history.status != Status.DIVERGED])
    sgd = StackedSGD(model)
    # One seed: one batch order, one batch for all (the wide first GEMM). Several: each
    # member gathers its own batch from its own generator, and layer 1 is batched too.
    shared = len({m.cfg.seed for m in model.members}) == 1
    generator = model.members[0].generator if model.members else None
    start = len(members[0].history.epochs)
    n, device = len(data.x_train), data.x_train.device
    per_epoch = -(-n // t.batch_size)
    for epoch in range(start + 1, t.epochs + 1):
        if not model.members:
            return
        assert generator is not None
        tic = time.perf_counter()
        total = torch.zeros(len(model.members), device=device, dtype=data.x_train.dtype)
        reports = _StepReports(model.members, (epoch - 1) * per_epoch + 1)
        number = -1
        if shared:
            for number, idx in enumerate(batch_indices(n, t.batch_size, generator, device)):
                check_deadline(deadline)
                xb, yb = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
                losses = step(model, sgd, xb, yb, loss)
                total += losses * len(idx)
                if reports.hooks:
                    reports.step(number, losses, total, len(idx))
        else:
            orders = [batch_indices(n, t.batch_size, m.generator, device) for m in model.members]
            for number, idxs in enumerate(zip(*orders, strict=True)):
                check_deadline(deadline)
                xb = torch.stack([data.x_train.index_select(0, idx) for idx in idxs])
                yb = torch.stack([data.y_train.index_select(0, idx) for idx in idxs])
                losses = step(model, sgd, xb, yb, loss)
                total += losses * len(idxs[0])
                if reports.hooks:
                    reports.step(number, losses, total, len(idxs[0]))
        if reports.hooks:
            reports.end(number, total)
        train_losses = [v / n for v in total.tolist()]  # as train_epoch: item() / n
        tested = model.evaluate(data.x_test, data.y_test, loss, t.eval_batch_size)
        seconds = (time.perf_counter() - tic) / len(model.members)
        for m, train_loss, (test_loss, test_acc) in zip(
            model.members, train_losses, tested, strict=True
        ):
            m.history.epochs.append(EpochStats(epoch, train_loss, test_loss, test_acc, seconds))
            if diverged(train_loss, test_loss):
                m.history.status = Status.DIVERGED
            if shared and m.generator is not generator:
                m.generator.set_state(generator.get_state())
        model.write_back()
        sgd.write_back()
        leaving = {id(m) for m in on_epoch(model.members)} if on_epoch is not None else set()
        alive = [
            j
            for j, m in enumerate(model.members)
            if m.history.status != Status.DIVERGED and id(m) not in leaving
        ]
        if not alive:  # every member diverged or was pruned: nothing left to train
            return
        if len(alive) < len(model.members):
            index = torch.tensor(alive, device=device, dtype=torch.long)
            sgd.keep(index)
            model.keep(index)


def _targets(y: Tensor, k: int) -> Tensor:
    """The labels of all members' samples, flat: a shared batch's repeated, or each member's."""
    return y.reshape(-1) if y.dim() == 2 else y.repeat(k)


def step_seconds(cfgs: Sequence[Config], threads: int, steps: int = 15) -> tuple[float, float]:
    """Seconds per model and training step of these runs, (alone, stacked), at `threads` torch
    threads on their device: what hydra/launcher=fused measures before it decides to stack.
    Alone: the mean over the runs' distinct activations; stacked: the stack's step / k."""
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
        distinct = {(act_key(m), m.cfg.model.output_act): m for m in members}

        def alone(m: Member) -> Callable[[], None]:
            one = manual_step(m.model, m.optimizer, m.cfg.loss is Loss.ce)

            def step_alone() -> None:
                if one is not None:
                    one(x, y)
                    return
                m.optimizer.zero_grad(set_to_none=True)
                loss_fn(m.model(x), y, "mean").backward()
                m.optimizer.step()

            return step_alone

        if len({c.seed for c in cfgs}) > 1:  # each member its own batch (here: the same one)
            xs, ys = x.expand(k, *x.shape).contiguous(), y.expand(k, *y.shape).contiguous()
        else:
            xs, ys = x, y
        with precision.autocast(cfg.trainer.precision, device):
            alone_s = sum(_timed(alone(m), steps, device) for m in distinct.values())
            stacked = StackedMLP(members)
            sgd = StackedSGD(stacked)
            stacked_s = _timed(lambda: step(stacked, sgd, xs, ys, cfg.loss), steps, device) / k
        return alone_s / len(distinct), stacked_s
    finally:
        torch.set_num_threads(before)


def _timed(fn: Callable[[], object], steps: int, device: torch.device) -> float:
    """Median seconds of a step, in rounds of `steps` after a warm-up round."""
    rounds = []
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rounds.append((time.perf_counter() - tic) / steps)
    return sorted(rounds[1:])[1]
