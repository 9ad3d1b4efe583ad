"""A grid of test digits, each under its true and predicted label: the picture the loggers
show every epoch and misclassified.png holds at a run's end. Composed with Pillow (a few
milliseconds), so a logger can afford it every epoch."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from mlp_sweep.training.predict import Digits

TILE = 28
PAD = 3
LABEL = 14  # the label's strip above each digit
WRONG = (200, 30, 30)
RIGHT = (40, 120, 40)


def label_font(size: int = 10) -> Any:
    return _font(size)[0]


@functools.cache
def _font(size: int = 10) -> tuple[Any, str]:
    """DejaVu Sans from matplotlib's data (it has the arrow) without importing matplotlib;
    Pillow's own font and "->" where matplotlib is absent."""
    import importlib.util
    from pathlib import Path

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size), "→"
    return ImageFont.load_default(size=size), "->"


def prepare() -> None:
    """Import Pillow's drawing and PNG writer and load the label font, before the first grid."""
    from PIL import Image, ImageDraw  # noqa: F401

    Image.preinit()  # the PNG and JPEG plugins, otherwise imported at the first save
    _font()


@functools.cache
def _label(true: int, pred: int) -> Any:
    """`true→pred` as a mask ("L" image, ink bright), drawn once per pair: the grid pastes its
    colour through it, instead of laying out text 64 times per grid under the interpreter's
    lock while a run trains."""
    from PIL import Image, ImageDraw

    font, arrow = _font()
    text = f"{true}{arrow}{pred}"
    _, _, right, bottom = font.getbbox(text)
    mask = Image.new("L", (right, bottom), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font)
    return mask


def grid(digits: Digits, columns: int = 8) -> np.ndarray:
    """(height, width, 3) uint8: dark digits on white, `true→pred` above each, red where the
    model is wrong and green where it is right; misclassified digits first, row by row."""
    from PIL import Image, ImageDraw

    n = len(digits.true)
    rows = max(1, -(-n // columns))
    width, height = TILE + 2 * PAD, TILE + LABEL + 2 * PAD
    pixels = np.full((rows * height, columns * width, 3), 255, dtype=np.uint8)
    for i, image in enumerate(digits.images):
        x, y = (i % columns) * width + PAD, (i // columns) * height + PAD + LABEL
        pixels[y : y + TILE, x : x + TILE] = (255 - image)[:, :, None]
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for i, (true, pred) in enumerate(zip(digits.true, digits.pred, strict=True)):
        x, y = (i % columns) * width, (i // columns) * height
        colour = RIGHT if true == pred else WRONG
        label = _label(true, pred)
        left, top = x + PAD + 2, y + PAD
        canvas.paste(colour, (left, top, left + label.width, top + label.height), label)
        if true != pred:
            draw.rectangle((x + 1, y + 1, x + width - 2, y + height - 2), outline=colour)
    return np.asarray(canvas)


def caption(digits: Digits) -> str:
    """`12 of 1000 test digits wrong; shown: the first 12 wrong, then 52 right (true→predicted)`"""
    wrong = digits.wrong
    return (
        f"{digits.errors} of {digits.seen} test digits misclassified; shown: "
        f"{wrong} wrong, then {len(digits.true) - wrong} right (label: true→predicted)"
    )
