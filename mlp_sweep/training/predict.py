"""What a model says of the test digits: its predictions, which of them are wrong, and the
confusion matrix. For the loggers' grid of digits each epoch and a run's pictures at its end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mlp_sweep.training.model import Model

CLASSES = 10
SIDE = 28  # MNIST-like digits: 784 features, 28 x 28 pixels


@dataclass(frozen=True)
class Digits:
    """Test digits with their true labels and the model's predictions, misclassified first."""

    images: np.ndarray  # (n, 28, 28) uint8 grey levels, ink bright
    true: list[int]
    pred: list[int]
    seen: int  # test digits looked at
    errors: int  # how many of those the model got wrong

    @property
    def wrong(self) -> int:
        """Digits of the grid that are misclassified (they come first)."""
        return sum(t != p for t, p in zip(self.true, self.pred, strict=True))


@torch.no_grad()
def predict(model: Model, x: Tensor, batch_size: int = 10_000) -> Tensor:
    """The predicted class of each row of x, on x's device (the MLPs have no dropout or batch
    norm: train and eval mode compute the same)."""
    chunks = [model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(chunks)


def is_image(x: Tensor) -> bool:
    return x.dim() == 2 and x.shape[1] == SIDE * SIDE


def pick(x: Tensor, y: Tensor, pred: Tensor, n: int = 64) -> Digits:
    """Up to n digits of x: the misclassified ones in test order, then correct ones."""
    wrong = (pred != y).nonzero().flatten()
    right = (pred == y).nonzero().flatten()
    chosen = torch.cat([wrong[:n], right[: max(0, n - len(wrong))]])
    rows = x.index_select(0, chosen).float()
    low = rows.min(dim=1, keepdim=True).values
    high = rows.max(dim=1, keepdim=True).values
    grey = ((rows - low) / (high - low).clamp_min(1e-12) * 255).round().to(torch.uint8)
    return Digits(
        images=grey.reshape(-1, SIDE, SIDE).cpu().numpy(),
        true=y.index_select(0, chosen).cpu().tolist(),
        pred=pred.index_select(0, chosen).cpu().tolist(),
        seen=len(y),
        errors=len(wrong),
    )


def confusion(y: Tensor, pred: Tensor) -> list[list[int]]:
    """counts[true][predicted]."""
    flat = torch.bincount(y * CLASSES + pred, minlength=CLASSES * CLASSES)
    return flat.reshape(CLASSES, CLASSES).cpu().tolist()
