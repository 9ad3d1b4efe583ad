"""The training loop: shuffled mini-batches, one optimizer step each, a test pass per epoch.

No file I/O here: the caller gets an `on_epoch` hook for records and checkpoints.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from mlp_sweep.config import Loss, OptimConfig, Optimizer, TrainerConfig
from mlp_sweep.status import Status
from mlp_sweep.training.data import Data, batch_indices
from mlp_sweep.training.model import Model
from mlp_sweep.training.sgd_step import manual_step

LossFn = Callable[[Tensor, Tensor, str], Tensor]
# (global step, the mean train loss per sample over the steps since the last call, a 0-d
# tensor on the run's device): what the loggers get every logger.every_n_steps steps.
StepHook = Callable[[int, Tensor], None]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


class TimeLimitReached(Exception):
    """trainer.time_limit ran out: training stops at the step it was noticed; the epochs
    before it stand (the caller's checkpoint holds them)."""


def deadline_after(seconds: float | None) -> float | None:
    """The time.monotonic() at which trainer.time_limit (None: no limit) runs out."""
    return None if seconds is None else time.monotonic() + seconds


def check_deadline(deadline: float | None) -> None:
    """Raise TimeLimitReached past `deadline` (time.monotonic()); called once per step."""
    if deadline is not None and time.monotonic() > deadline:
        raise TimeLimitReached


def diverged(train_loss: float, test_loss: float) -> bool:
    """The one divergence rule, for a run alone and a member of a stack: a loss went
    non-finite (the run is `diverged`, a result: its epochs stand)."""
    return not (math.isfinite(train_loss) and math.isfinite(test_loss))


def _cross_entropy(logits: Tensor, y: Tensor, reduction: str) -> Tensor:
    return F.cross_entropy(logits, y, reduction=reduction)


def _mse_on_softmax(logits: Tensor, y: Tensor, reduction: str) -> Tensor:
    # Per sample: the mean over classes, so reduction="mean" equals F.mse_loss(probs, one_hot).
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    per_sample = (logits.softmax(dim=1) - target).pow(2).mean(dim=1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


LOSSES: dict[Loss, LossFn] = {Loss.ce: _cross_entropy, Loss.mse: _mse_on_softmax}


@functools.cache
def _skip_dynamo_import() -> None:
    """Let torch.optim run without importing torch._dynamo (1.2 s of every process's first
    optimizer, measured here: most of a trivial job's cost in a 100-job sweep).

    Optimizer's methods are wrapped in torch._disable_dynamo, whose first call imports dynamo
    to build the disabled version and then caches it on the function as `__dynamo_disable`.
    That version only differs inside a torch.compile'd region, and mlp_sweep never calls an
    optimizer from one (trainer.compile compiles the model), so the plain function is cached
    there instead. Only wrappers recognised by their code object are touched.
    """
    probe = torch._disable_dynamo(_skip_dynamo_import.__wrapped__)
    for attr in vars(torch.optim.Optimizer).values():
        if getattr(attr, "__code__", None) is probe.__code__:
            plain = attr.__wrapped__
            if getattr(plain, "__dynamo_disable", None) is None:
                plain.__dynamo_disable = plain


def _plain_step(optimizer: torch.optim.Optimizer) -> None:
    """The optimizer's step without the wrapper that imports torch._dynamo on every call
    (3.7 s the first time, measured here: Adam's every process paid it).

    torch.optim's `_use_grad_for_differentiable` sets grad mode from the `differentiable`
    default, calls the step, and puts a dynamo graph break on either side, which only matters
    inside a torch.compile'd region; mlp_sweep never steps an optimizer from one (trainer.
    compile compiles the model). The step itself, and so every number, is the same function.
    Optimizer hooks are left out: mlp_sweep registers none.
    """
    raw = inspect.unwrap(type(optimizer).step)
    if raw is type(optimizer).step:  # not wrapped: nothing to skip
        return

    def step(closure: Callable[[], float] | None = None) -> float | None:
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(optimizer.defaults["differentiable"])
            return raw(optimizer, closure)
        finally:
            torch.set_grad_enabled(previous)

    optimizer.step = step  # type: ignore[method-assign,assignment]


def make_optimizer(params: Iterable[Tensor], cfg: OptimConfig) -> torch.optim.Optimizer:
    _skip_dynamo_import()
    if cfg.name is Optimizer.adam:
        b1, b2 = cfg.betas
        adam = torch.optim.Adam(
            params, lr=cfg.lr, betas=(b1, b2), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        _plain_step(adam)
        return adam
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's samples
    test_loss: float  # mean per test sample
    test_acc: float  # fraction in [0, 1]
    seconds: float  # wall time of the epoch, evaluation included

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class History:
    epochs: list[EpochStats] = field(default_factory=list)
    status: Status = Status.OK  # or DIVERGED when a loss went non-finite
    # The predicted class of each test row after the last epoch trained in this process (never
    # checkpointed): the loggers' digits and the run's pictures take it rather than predicting
    # again. None before this process trains an epoch.
    test_pred: Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def best(self) -> EpochStats | None:
        finite = [e for e in self.epochs if math.isfinite(e.test_loss)]
        return max(finite, key=lambda e: e.test_acc, default=None)


def train_epoch(
    model: Model,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    loss: Loss,
    generator: torch.Generator,
    deadline: float | None = None,
    on_steps: StepHook | None = None,
    every: int = 10,
    first_step: int = 1,
) -> float:
    """One pass over (x, y) in shuffled mini-batches. Returns the mean training loss.

    The running sum stays on the device: one host sync per epoch, not per step. Where the
    model, loss and optimizer allow it, each step runs by hand (mlp_sweep.training.sgd_step:
    the same kernels and numbers as autograd, a quarter less time on a CPU). `on_steps` gets
    the mean loss of every `every` steps (numbered from `first_step`) as a device tensor, cut
    from the running sum every `every` steps (with every=1, the step's own loss): no sync, and
    no tensor operation in the steps between.
    """
    model.train()
    total = torch.zeros((), device=x.device, dtype=x.dtype)
    loss_fn = LOSSES[loss]
    step = manual_step(model, optimizer, loss is Loss.ce)
    mark, samples = total.clone(), 0  # the running sum at the last report, samples since
    for number, idx in enumerate(batch_indices(len(x), batch_size, generator, x.device)):
        check_deadline(deadline)
        # index_select: the same rows as x[idx], a third of the time on a CPU.
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        if step is not None:
            batch_loss = step(xb, yb)
        else:
            batch_loss = loss_fn(model(xb), yb, "mean")
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
        total += batch_loss.detach() * len(idx)
        if on_steps is not None and every == 1:  # the step's own loss: no op at all
            on_steps(first_step + number, batch_loss.detach())
        elif on_steps is not None:
            samples += len(idx)
            if (number + 1) % every == 0:
                on_steps(first_step + number, (total - mark) / samples)
                mark, samples = total.clone(), 0
    if on_steps is not None and samples:  # the epoch's last steps, fewer than `every`
        on_steps(first_step + number, (total - mark) / samples)
    return total.item() / len(x)


def evaluate(
    model: Model, x: Tensor, y: Tensor, loss: Loss, batch_size: int = 10_000
) -> tuple[float, float]:
    """(mean loss per sample, accuracy) over (x, y), in chunks of batch_size."""
    mean_loss, accuracy, _ = assess(model, x, y, loss, batch_size)
    return mean_loss, accuracy


@torch.no_grad()
def assess(
    model: Model, x: Tensor, y: Tensor, loss: Loss, batch_size: int = 10_000
) -> tuple[float, float, Tensor]:
    """evaluate's (mean loss per sample, accuracy), and the predicted class of each row."""
    model.eval()
    loss_fn = LOSSES[loss]
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    predicted = []
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += loss_fn(logits, target, "sum")
        predicted.append(logits.argmax(dim=1))
        correct += (predicted[-1] == target).sum()
    return loss_sum.item() / len(x), correct.item() / len(x), torch.cat(predicted)


def fit(
    model: Model,
    optimizer: torch.optim.Optimizer,
    data: Data,
    cfg: TrainerConfig,
    loss: Loss,
    generator: torch.Generator,
    history: History | None = None,
    on_epoch: Callable[[History], bool] | None = None,
    deadline: float | None = None,
    on_steps: StepHook | None = None,
    every_n_steps: int = 10,
) -> History:
    """Train until cfg.epochs are done, a loss goes non-finite (status DIVERGED) or `on_epoch`
    (called after each epoch) returns True: a search's pruner stopping the run there.

    A history passed in (from a checkpoint) is continued from its last epoch. Past
    `deadline` (time.monotonic()), raises TimeLimitReached at the next step. `on_steps` gets
    the train loss every `every_n_steps` steps, numbered over the whole run from 1.
    """
    history = history or History()
    if history.status == Status.DIVERGED:  # a checkpoint of a run that already blew up
        return history
    for epoch in range(len(history.epochs) + 1, cfg.epochs + 1):
        tic = time.perf_counter()
        per_epoch = steps_per_epoch(len(data.x_train), cfg.batch_size)
        train_loss = train_epoch(
            model,
            optimizer,
            data.x_train,
            data.y_train,
            cfg.batch_size,
            loss,
            generator,
            deadline,
            on_steps,
            every_n_steps,
            (epoch - 1) * per_epoch + 1,
        )
        test_loss, test_acc, history.test_pred = assess(
            model, data.x_test, data.y_test, loss, cfg.eval_batch_size
        )
        history.epochs.append(
            EpochStats(epoch, train_loss, test_loss, test_acc, time.perf_counter() - tic)
        )
        if diverged(train_loss, test_loss):
            history.status = Status.DIVERGED
        stop = on_epoch is not None and on_epoch(history)
        if stop or history.status == Status.DIVERGED:
            break
    return history
