"""A run's two pictures of what it gets wrong, drawn at its end into its folder:

- confusion.png: the 10 x 10 confusion matrix of the test set, counts in each cell;
- misclassified.png: up to 64 misclassified test digits under `true→predicted`.

Each under a title (`title`: the run's folder name and what its sweep varies) wrapped to the
picture's width, never clipped. Drawn with Pillow, not matplotlib as the sweep's plots are:
importing matplotlib costs 1.1 s in every process that would draw one. Every run of every
launcher draws them at its end, so what never changes (the matrix's frame, a count's glyphs)
is laid out once per process, and `png` writes the file in a third of Pillow's time.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlp_sweep import labels
from mlp_sweep.loggers.digits import grid, label_font
from mlp_sweep.run.record import write_bytes_atomic
from mlp_sweep.training.predict import CLASSES, Digits

CONFUSION_FILE = "confusion.png"
MISCLASSIFIED_FILE = "misclassified.png"

CELL, MARGIN = 40, 44  # the matrix's cell and the room left of and below it, in pixels
TITLE_SIZE, LINE_HEIGHT = 13, 18
SIDE_PAD = 10  # white either side of the widest title line
MIN_WIDTH = 360  # a picture narrower than this still gets this much room for its title
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def title(run_name: str, overrides: Sequence[str], swept: set[str] | None = None) -> str:
    """`3: model.act=relu optim.lr=0.03029`: the run's folder name and the overrides of the
    keys its sweep varies (mlp_sweep.labels.label); every override where `swept` is None."""
    return f"{run_name}: {labels.label(list(overrides), swept) or 'defaults'}"


def wrap(text: str, width: float, font: Any) -> list[str]:
    """text as lines no wider than `width` pixels in `font`: broken at spaces, and inside a
    word only where that word alone is wider."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        joined = f"{line} {word}" if line else word
        if font.getlength(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        line = word
        while font.getlength(line) > width:  # one override wider than the picture: cut it
            cut = max(1, len(line) - 1)  # a character a line at the least
            while cut > 1 and font.getlength(line[:cut]) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    return [*lines, line] if line else lines


def _titled(picture: Any, lines: list[str], path: Path, scale: int = 1) -> None:
    """The picture (a PIL image, enlarged `scale` times with its pixels kept sharp) under its
    title lines, each wrapped to the picture's width, on white, written whole as a PNG."""
    from PIL import Image, ImageDraw

    font = label_font(TITLE_SIZE)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    width = max(picture.width, MIN_WIDTH) + 2 * SIDE_PAD
    shown = [part for line in lines for part in wrap(line, width - 2 * SIDE_PAD, font)]
    top = 10 + LINE_HEIGHT * len(shown)
    canvas = Image.new("RGB", (width, picture.height + top + 10), "white")
    canvas.paste(picture, ((width - picture.width) // 2, top))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(shown):
        draw.text((width / 2, 8 + LINE_HEIGHT * i), line, fill="black", font=font, anchor="ma")
    write_bytes_atomic(path, png(canvas))


def png(image: Any) -> bytes:
    """An RGB image as a PNG file's bytes: rows unfiltered, zlib's fastest level. Pillow's
    writer tries five filters on each row and compresses at level 6: 3-7x the time (a
    confusion.png: 14 ms against 2-6 ms, on a busy 2-core machine) for files a third smaller,
    at the end of every run."""
    pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + 3 * width), np.uint8)  # each row led by its filter: 0, none
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.data, 1)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def _frame() -> Any:
    """The matrix's picture without its cells: the classes along its left and bottom edges,
    `true` and `predicted`. The same in every run: drawn once, copied per picture."""
    from PIL import Image, ImageDraw

    side = CLASSES * CELL
    image = Image.new("RGB", (side + MARGIN + 8, side + MARGIN + 8), "white")
    draw = ImageDraw.Draw(image)
    large = label_font(13)
    for c in range(CLASSES):
        middle = (c + 0.5) * CELL
        draw.text((MARGIN - 8, 8 + middle), str(c), fill="black", font=large, anchor="rm")
        draw.text((MARGIN + middle, side + 14), str(c), fill="black", font=large, anchor="mt")
    for xy, text, anchor in (
        ((MARGIN + side / 2, side + MARGIN), "predicted", "mb"),
        ((4, 8 + side / 2), "true", "lm"),
    ):
        draw.text(xy, text, fill="black", font=large, anchor=anchor)
    return image


@functools.lru_cache(maxsize=2048)
def _count(value: int) -> tuple[Any, int, int]:
    """A cell's count as a mask ("L" image, ink bright) and its offset from the cell's centre:
    laid out once per value, not once per cell of every run."""
    from PIL import Image, ImageDraw

    font, text = label_font(11), str(value)
    left, top, right, bottom = font.getbbox(text, anchor="mm")
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor="mm")
    return mask, left, top


def _heat_map(counts: list[list[int]]) -> Any:
    """The matrix as a PIL image, CELL pixels a cell: white to dark blue by count, each count
    written in its cell (red off the diagonal), the classes along its left and bottom edges."""
    from PIL import Image, ImageDraw

    top = max(max(row) for row in counts) or 1
    shade = (np.asarray(counts, dtype=float) / top)[..., None]
    white, blue = np.array([247, 251, 255]), np.array([8, 48, 107])
    side = CLASSES * CELL
    cells = Image.fromarray((white + (blue - white) * shade).astype(np.uint8))
    image = _frame().copy()
    image.paste(cells.resize((side, side), Image.Resampling.NEAREST), (MARGIN, 8))
    for t in range(CLASSES):
        for p in range(CLASSES):
            value = counts[t][p]
            if value:
                colour = "white" if value > top / 2 else ("black" if t == p else (200, 30, 30))
                mask, left, rise = _count(value)
                x, y = MARGIN + (p * CELL + CELL // 2) + left, 8 + (t * CELL + CELL // 2) + rise
                image.paste(colour, (x, y, x + mask.width, y + mask.height), mask)
    ImageDraw.Draw(image).rectangle((MARGIN, 8, MARGIN + side, 8 + side), outline=(120, 120, 120))
    return image


def draw_confusion(counts: list[list[int]], path: Path, title: str) -> None:
    """counts[true][predicted] as a heat map with each count written in its cell."""
    total = sum(map(sum, counts))
    right = sum(counts[i][i] for i in range(CLASSES))
    summary = f"{right} of {total} test digits right ({right / total:.2%}); darker = more"
    _titled(_heat_map(counts), [title, summary], path)


def draw_misclassified(digits: Digits, path: Path, title: str) -> None:
    """The misclassified digits of `digits` (it puts them first) in a grid of 8 columns."""
    from PIL import Image

    wrong = digits.wrong
    shown = Digits(
        digits.images[:wrong], digits.true[:wrong], digits.pred[:wrong], digits.seen, wrong
    )
    errors = f"{digits.errors} of {digits.seen} test digits misclassified"
    what = f"the first {wrong}, labelled true→predicted" if wrong else "none to show"
    picture = Image.fromarray(grid(shown)) if wrong else Image.new("RGB", (20, 20), "white")
    _titled(picture, [title, errors, what], path, scale=2 if wrong else 1)
