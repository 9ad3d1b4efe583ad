"""trainer.precision: the number format a run computes in.

- fp32 (default): float32 everywhere, matmuls in full float32 (no TF32 on GPUs).
- tf32: float32 tensors, matmuls allowed TensorFloat-32 on GPUs that have it (Ampere and
  later); on a CPU the same as fp32.
- bf16: autocast to bfloat16 for matmuls (weights and the optimizer stay float32), on CUDA and
  on CPUs; losses and softmax stay float32, as autocast does.
- fp64: float64 model and data: slow, for checking the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mlp_sweep.config import Precision

CHOICES = [p.value for p in Precision]


def _as(precision: Precision | str) -> Precision:
    return precision if isinstance(precision, Precision) else Precision(precision)


def configure(precision: Precision | str, device: torch.device) -> None:
    """Process-wide matmul settings for this precision (a job's worker keeps no stale ones)."""
    tf32 = _as(precision) is Precision.tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def dtype(precision: Precision | str) -> torch.dtype:
    """The dtype of the model's parameters and the data."""
    return torch.float64 if _as(precision) is Precision.fp64 else torch.float32


def matmul_dtype(precision: Precision | str) -> torch.dtype:
    """The dtype the matmuls run in (for the benchmark's roofline)."""
    return {Precision.fp64: torch.float64, Precision.bf16: torch.bfloat16}.get(
        _as(precision), torch.float32
    )


@contextlib.contextmanager
def autocast(precision: Precision | str, device: torch.device) -> Iterator[None]:
    if _as(precision) is Precision.bf16:
        # No cast cache: it keeps the first bf16 copy of each weight until the context ends,
        # and this context spans the whole training, so every step would see the initial weights.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False):
            yield
    else:
        yield
