"""A run's two pictures of what it gets wrong, drawn at its end into its folder:

- confusion.png: the 10 x 10 confusion matrix of the test set, counts in each cell;
- misclassified.png: up to 64 misclassified test digits under `true→predicted`.

Drawn with Pillow, not matplotlib as the sweep's plots are: they are an image with text, which
Pillow draws in ~20 ms, while importing matplotlib costs 1.1 s in every process that would
draw one (each single run, each job of the basic launcher, each worker) and a matplotlib
figure with 100 counts and 20 ticks 0.3 s more per run.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from mlp_sweep.loggers.digits import grid, label_font
from mlp_sweep.run.record import write_bytes_atomic
from mlp_sweep.training.predict import CLASSES, Digits

CONFUSION_FILE = "confusion.png"
MISCLASSIFIED_FILE = "misclassified.png"


def _titled(picture: np.ndarray, lines: list[str], path: Path, scale: int = 1) -> None:
    """The picture (enlarged `scale` times, pixels kept sharp) under its title lines, on
    white, written whole as a PNG."""
    from PIL import Image, ImageDraw

    font = label_font(13)
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    height, width = picture.shape[:2]
    top = 10 + 18 * len(lines)
    canvas = Image.new("RGB", (max(width, 360) + 20, height + top + 10), "white")
    canvas.paste(Image.fromarray(picture), ((canvas.width - width) // 2, top))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((canvas.width / 2, 8 + 18 * i), line, fill="black", font=font, anchor="ma")
    buf = io.BytesIO()
    canvas.save(buf, format="png")
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
    total = sum(map(sum, counts))
    right = sum(counts[i][i] for i in range(CLASSES))
    summary = f"{right} of {total} test digits right ({right / total:.2%}); darker = more"
    _titled(_heat_map(counts), [title, summary], path)


def draw_misclassified(digits: Digits, path: Path, title: str) -> None:
    """The misclassified digits of `digits` (it puts them first) in a grid of 8 columns."""
    wrong = digits.wrong
    shown = Digits(
        digits.images[:wrong], digits.true[:wrong], digits.pred[:wrong], digits.seen, wrong
    )
    errors = f"{digits.errors} of {digits.seen} test digits misclassified"
    what = f"the first {wrong}, labelled true→predicted" if wrong else "none to show"
    picture: Any = grid(shown) if wrong else np.full((20, 20, 3), 255, np.uint8)
    _titled(picture, [title, errors, what], path, scale=2 if wrong else 1)
