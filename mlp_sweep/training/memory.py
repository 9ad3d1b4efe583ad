"""How much memory a run holds, and how much this machine has: what the command's check needs
to refuse, before any job starts, a sweep whose runs cannot fit side by side.

Arithmetic on the config, no torch: the tensors a run keeps (parameters, gradients, optimizer
state, a batch's activations, the data on its device) counted from the model's widths and the
data's sizes. Not counted: Python and torch themselves (~0.3 GB a process, mostly shared by a
pool's workers, which are forked from one server), and short-lived copies (an init's QR, the
synthetic set's generation). So the estimate errs low, and a refusal means a sweep that cannot
fit, not one that might not.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlp_sweep.config import Config, Dataset, Optimizer, Precision

FEATURES = 784  # every dataset's images are 28 x 28; the synthetic set has as many dimensions
CLASSES = 10
# Training and test images of MNIST, Fashion-MNIST and KMNIST alike.
FILE_SIZES = (60_000, 10_000)
LABEL_BYTES = 8  # int64 labels
BF16_BYTES = 2


@dataclass(frozen=True)
class RunMemory:
    """Bytes one run holds at its peak, by what holds them."""

    parameters: int
    gradients: int
    optimizer: int  # SGD's momentum buffer, Adam's two moments
    activations: int  # a training batch's forward and backward, or an evaluation chunk
    data: int  # the training and test sets on the run's device
    # Whether the runs on one machine share one copy of the data: a dataset read from files
    # and kept float32 on the CPU is the memory-mapped cache (mlp_sweep.training.data).
    shared_data: bool = False

    @property
    def own(self) -> int:
        """What no other run shares."""
        return self.parameters + self.gradients + self.optimizer + self.activations

    @property
    def total(self) -> int:
        return self.own + self.data

    def parts(self) -> str:
        """`parameters 640 GB, gradients 640 GB, ...`: where the bytes go, largest first."""
        named = {
            "parameters": self.parameters,
            "gradients": self.gradients,
            "optimizer state": self.optimizer,
            "activations": self.activations,
            "data": self.data,
        }
        big = sorted((n for n in named.items() if n[1]), key=lambda n: -n[1])
        return ", ".join(f"{name} {size_text(size)}" for name, size in big)


def widths(cfg: Config) -> list[int]:
    """Each layer's width, input to logits: [784, *model.hidden, 10]."""
    return [FEATURES, *cfg.model.hidden, CLASSES]


def parameter_count(layers: list[int]) -> int:
    """Weights and biases of Linear layers between consecutive widths."""
    return sum(n_in * n_out + n_out for n_in, n_out in zip(layers, layers[1:], strict=False))


def dataset_sizes(cfg: Config) -> tuple[int, int]:
    """(training, test) samples the run holds, after data.limit_train / limit_test."""
    data = cfg.data
    full = (data.n_train, data.n_test) if data.name is Dataset.synthetic else FILE_SIZES
    limits = (data.limit_train, data.limit_test)
    return (
        min(full[0], limits[0] or full[0]),
        min(full[1], limits[1] or full[1]),
    )


def run_memory(cfg: Config) -> RunMemory:
    """The bytes one run of this config holds at its peak."""
    layers = widths(cfg)
    params = parameter_count(layers)
    size = 8 if cfg.trainer.precision is Precision.fp64 else 4
    if cfg.optim.name is Optimizer.adam:
        buffers = 2
    else:
        buffers = 1 if cfg.optim.momentum > 0 else 0
    n_train, n_test = dataset_sizes(cfg)
    # Training: the gathered batch, each hidden layer's input and output kept for backward,
    # the logits with their log-softmax and its gradient, and two layers' gradients of the
    # activations alive at once in backward.
    batch = min(cfg.trainer.batch_size, n_train)
    widest = max(layers[1:])
    train = batch * (FEATURES + 2 * sum(cfg.model.hidden) + 3 * CLASSES + 2 * widest)
    # Evaluation (no gradients): a chunk's layer input and output at a time.
    chunk = min(cfg.trainer.eval_batch_size, max(n_train, n_test))
    evaluate = chunk * 2 * widest
    activations = max(train, evaluate) * size
    if cfg.trainer.precision is Precision.bf16:  # autocast's bfloat16 copy of each weight
        activations += params * BF16_BYTES
    on_cpu = not str(cfg.device).strip().lower().startswith("cuda")
    return RunMemory(
        parameters=params * size,
        # Every parameter's gradient (the hand-written SGD step holds one layer's at a time:
        # for it this is the most, not the usual).
        gradients=params * size,
        optimizer=buffers * params * size,
        activations=activations,
        data=(n_train + n_test) * (FEATURES * size + LABEL_BYTES),
        shared_data=cfg.data.name is not Dataset.synthetic and size == 4 and on_cpu,
    )


def peak(runs: Mapping[RunMemory, int], at_once: int, data_copies: int) -> int:
    """The bytes a machine holds with `at_once` runs side by side, the largest of `runs` (each
    estimate with how many jobs have it), and `data_copies` copies of their data (a stack of
    runs shares one; shared data is one copy for all)."""
    own = _largest([(run.own, n) for run, n in runs.items()], at_once)
    private = [(run.data, n) for run, n in runs.items() if not run.shared_data]
    shared = max((run.data for run in runs if run.shared_data), default=0)
    return own + _largest(private, min(at_once, data_copies)) + shared


def _largest(sizes: list[tuple[int, int]], take: int) -> int:
    """The sum of the `take` largest values among (value, how many times it occurs)."""
    total = 0
    for value, count in sorted(sizes, reverse=True):
        used = min(count, take)
        total, take = total + used * value, take - used
        if take <= 0:
            break
    return total


def host_memory() -> int:
    """This machine's memory in bytes, or its cgroup's limit where that is lower (a container,
    a SLURM allocation)."""
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limits = [physical]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max": no limit
            limits.append(int(text))
    return min(limits)


def gpu_memory(device: str) -> int | None:
    """A CUDA device's memory in bytes, where this process has initialised CUDA already; None
    otherwise (asking would initialise it here, and a pool's workers forked after that could
    not use CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    _, _, index = device.partition(":")
    props = torch.cuda.get_device_properties(int(index) if index else torch.cuda.current_device())
    return int(props.total_memory)


def size_text(size: float) -> str:
    """Bytes as a person reads them: 850 MB, 1.2 GB, 640 GB, 1.9 TB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            break
        size /= 1000
    if unit == "B":
        return f"{int(size)} B"
    return f"{size:.1f} {unit}" if size < 10 else f"{math.floor(size + 0.5)} {unit}"
