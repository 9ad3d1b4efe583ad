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
import numpy as np

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


def _heat_map(counts: list[list[int]], cell: int = 40, margin: int = 44) -> np.ndarray:
    """The matrix as an image, `cell` pixels a cell: white to dark blue by count, each count
    written in its cell (red off the diagonal), the classes along its left and bottom edges.
    Drawn with Pillow: matplotlib's 100 texts and 20 ticks would cost a few times more, at the
    end of every run."""
    from PIL import Image, ImageDraw

    from mlp_sweep.loggers.digits import label_font

    top = max(max(row) for row in counts) or 1
    shade = (np.asarray(counts, dtype=float) / top)[..., None]
    white, blue = np.array([247, 251, 255]), np.array([8, 48, 107])
    cells = (white + (blue - white) * shade).astype(np.uint8).repeat(cell, 0).repeat(cell, 1)
    side = CLASSES * cell
    image = Image.new("RGB", (side + margin + 8, side + margin + 8), "white")
    image.paste(Image.fromarray(cells), (margin, 8))
    draw = ImageDraw.Draw(image)
    small, large = label_font(11), label_font(13)
    for t in range(CLASSES):
        for p in range(CLASSES):
            value = counts[t][p]
            if value:
                colour = "white" if value > top / 2 else ("black" if t == p else (200, 30, 30))
                centre = (margin + (p + 0.5) * cell, 8 + (t + 0.5) * cell)
                draw.text(centre, str(value), fill=colour, font=small, anchor="mm")
    for c in range(CLASSES):
        draw.text((margin - 8, 8 + (c + 0.5) * cell), str(c), fill="black", font=large, anchor="rm")
        draw.text(
            (margin + (c + 0.5) * cell, side + 14), str(c), fill="black", font=large, anchor="mt"
        )
    draw.text(
        (margin + side / 2, side + margin), "predicted", fill="black", font=large, anchor="mb"
    )
    draw.text((4, 8 + side / 2), "true", fill="black", font=large, anchor="lm")
    draw.rectangle((margin, 8, margin + side, 8 + side), outline=(120, 120, 120))
    return np.asarray(image)


def draw_confusion(counts: list[list[int]], path: Path, title: str) -> None:
    """counts[true][predicted] as a heat map with each count written in its cell."""
    picture = _heat_map(counts)
    height, width = picture.shape[:2]
    fig = plt.figure(figsize=(width / 90, height / 90 + 0.5))
    ax = fig.add_axes((0, 0, 1, height / (height + 45)))  # fixed: no layout pass to pay for
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    total = sum(map(sum, counts))
    right = sum(counts[i][i] for i in range(CLASSES))
    fig.suptitle(
        f"{title}\n{right} of {total} test digits right ({right / total:.2%}); "
        "counts, darker = more",
        fontsize=9,
        y=0.99,
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
