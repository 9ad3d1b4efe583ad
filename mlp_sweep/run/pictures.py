"""A run's two pictures of what it gets wrong, drawn at its end into its folder with
matplotlib's Agg backend, as the sweep's plots are:

- confusion.png: the 10 x 10 confusion matrix of the test set, counts in each cell;
- misclassified.png: up to 64 misclassified test digits under `true→predicted`.

Imported by the worker processes' fork server ahead of any job (mlp_sweep.cli.early_workers),
so a sweep pays matplotlib's import once, not once per worker.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from mlp_sweep.loggers.digits import grid  # noqa: E402
from mlp_sweep.run.record import write_bytes_atomic  # noqa: E402
from mlp_sweep.training.predict import CLASSES, Digits  # noqa: E402

CONFUSION_FILE = "confusion.png"
MISCLASSIFIED_FILE = "misclassified.png"


def _save(fig: plt.Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def draw_confusion(counts: list[list[int]], path: Path, title: str) -> None:
    """counts[true][predicted] as a heat map with each count written in its cell."""
    fig = plt.figure(figsize=(5.6, 5.6))
    ax = fig.add_axes((0.11, 0.09, 0.86, 0.78))  # fixed: no layout pass to pay for
    ax.imshow(counts, cmap="Blues")
    top = max(max(row) for row in counts) or 1
    for t in range(CLASSES):
        for p in range(CLASSES):
            value = counts[t][p]
            if value:
                colour = "white" if value > top / 2 else ("tab:red" if t != p else "black")
                ax.text(p, t, str(value), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(CLASSES))
    ax.set_yticks(range(CLASSES))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = sum(map(sum, counts))
    right = sum(counts[i][i] for i in range(CLASSES))
    ax.set_title(
        f"{title}\n{right} of {total} test digits right ({right / total:.2%}); "
        "counts, darker = more",
        fontsize=9,
    )
    _save(fig, path)


def draw_misclassified(digits: Digits, path: Path, title: str) -> None:
    """The misclassified digits of `digits` (it puts them first) in a grid of 8 columns."""
    wrong = digits.wrong
    shown = Digits(
        digits.images[:wrong], digits.true[:wrong], digits.pred[:wrong], digits.seen, wrong
    )
    rows = max(1, -(-wrong // 8))
    height = 1.0 + 0.62 * rows
    fig = plt.figure(figsize=(5.5, height))
    ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.8 / height))
    if wrong:
        ax.imshow(grid(shown), interpolation="nearest")
    ax.set_axis_off()
    errors = f"{digits.errors} of {digits.seen} test digits misclassified"
    what = f"the first {wrong}, labelled true→predicted" if wrong else "none to show"
    ax.set_title(f"{title}\n{errors}\n{what}", fontsize=9)
    _save(fig, path)
