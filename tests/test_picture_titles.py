"""A run's pictures (confusion.png, misclassified.png) under a title that is never clipped: it
names the swept values and wraps to the picture's width; and the PNG writer behind them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mlp_sweep.loggers.digits import label_font
from mlp_sweep.run import pictures
from mlp_sweep.training.predict import Digits

# A search's job as the lifecycle names it when the swept keys are unknown (a single run),
# and an override wider than any picture (a path, say): neither may lose a character.
SEARCH = [
    "hparams_search=optuna",
    "trainer.epochs=10",
    "model.act=relu",
    "model.init=lecun_normal",
    "optim.lr=0.030285251536",
    "data.limit_train=20000",
    "logger=tensorboard",
]
LONG_WORD = "+data.root=/" + "very/long/folder/" * 8 + "MNIST"


def _counts() -> list[list[int]]:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=(10, 10))
    np.fill_diagonal(counts, rng.integers(150, 220, size=10))
    return counts.tolist()


def _digits(wrong: int) -> Digits:
    rng = np.random.default_rng(1)
    true = [i % 10 for i in range(64)]
    pred = [(t + 1) % 10 if i < wrong else t for i, t in enumerate(true)]
    images = rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    return Digits(images=images, true=true, pred=pred, seen=1000, errors=wrong)


def _texts_drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, tuple[float, float], str]]:
    """Every ImageDraw.text call from here on: the draw, where, and what."""
    calls: list[tuple[Any, tuple[float, float], str]] = []
    real = ImageDraw.ImageDraw.text

    def spy(self: ImageDraw.ImageDraw, xy: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((self, tuple(xy), str(text)))
        return real(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    return calls


@pytest.mark.parametrize("overrides", [SEARCH, [*SEARCH, LONG_WORD]], ids=["search", "long-word"])
@pytest.mark.parametrize(
    "draw",
    [
        lambda path, title: pictures.draw_confusion(_counts(), path, title),
        lambda path, title: pictures.draw_misclassified(_digits(12), path, title),
        lambda path, title: pictures.draw_misclassified(_digits(0), path, title),
    ],
    ids=["confusion", "misclassified", "none-misclassified"],
)
def test_a_long_title_is_drawn_whole_inside_the_picture(
    draw: Any, overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each title line's bounding box, measured by Pillow's own layout of the text as drawn,
    lies inside the written PNG with white to spare, and the lines hold the whole title."""
    title = pictures.title("17", overrides)
    calls = _texts_drawn(monkeypatch)
    path = tmp_path / "picture.png"
    draw(path, title)
    with Image.open(path) as written:
        size = written.size
        pixels = np.asarray(written.convert("RGB"))
    on_canvas = [(d, xy, text) for d, xy, text in calls if d.im.size == size]
    font = label_font(pictures.TITLE_SIZE)
    lines = []
    for d, xy, text in on_canvas:
        left, top, right, bottom = d.textbbox(xy, text, font=font, anchor="ma")
        assert 0 < left and right < size[0] and 0 <= top and bottom < size[1], (text, size)
        lines.append(text)
    assert len(lines) > 2  # the title wrapped, its summary lines below it
    drawn = "".join(lines)
    assert "".join(title.split()) in drawn.replace(" ", "")  # not one character lost
    assert title.startswith("17: hparams_search=optuna") and "optim.lr=0.03029" in title
    band = pixels[: 8 + pictures.LINE_HEIGHT * len(lines)]
    assert (band[:, :2] == 255).all() and (band[:, -2:] == 255).all()  # no ink at the edges


def test_the_title_names_what_the_sweep_varies() -> None:
    swept = {"model.act", "model.init", "optim.lr"}
    assert pictures.title("17", SEARCH, swept) == (
        "17: model.act=relu model.init=lecun_normal optim.lr=0.03029"
    )
    assert pictures.title("3", ["seed=3", "data=synthetic"], {"seed"}) == "3: seed=3"
    assert pictures.title("run", []) == "run: defaults"
    assert pictures.title("0", ["seed=0", "data=synthetic"]) == "0: seed=0 data=synthetic"


def test_a_title_that_fits_stays_one_line_and_a_long_one_breaks_at_spaces() -> None:
    font = label_font(pictures.TITLE_SIZE)
    assert pictures.wrap("3: seed=3", 452, font) == ["3: seed=3"]
    text = pictures.title("17", SEARCH)
    lines = pictures.wrap(text, 300, font)
    assert len(lines) > 1 and " ".join(lines) == text
    assert all(font.getlength(line) <= 300 for line in lines)
    pieces = pictures.wrap(LONG_WORD, 300, font)  # no space to break at: cut where it must
    assert len(pieces) > 1 and "".join(pieces) == LONG_WORD
    assert all(font.getlength(piece) <= 300 for piece in pieces)
    assert pictures.wrap("", 300, font) == []
    assert pictures.wrap("ab c", 1, font) == ["a", "b", "c"]  # narrower than any character


def test_a_short_title_keeps_the_pictures_height(tmp_path: Path) -> None:
    """Two lines above the matrix, as wide as the matrix: no room spent where none is needed."""
    pictures.draw_confusion(_counts(), tmp_path / "c.png", "3: seed=3")
    with Image.open(tmp_path / "c.png") as written:
        width, height = written.size
    side = 10 * pictures.CELL + pictures.MARGIN + 8
    assert (width, height) == (side + 2 * pictures.SIDE_PAD, side + 10 + 2 * 18 + 10)


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (120, 81)], ids=str)
def test_the_png_writer_round_trips_through_pillow(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    data = pictures.png(Image.fromarray(pixels))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as read:
        read.verify()  # every chunk's CRC
    with Image.open(io.BytesIO(data)) as read:
        assert read.mode == "RGB" and read.size == (shape[1], shape[0])
        assert (np.asarray(read) == pixels).all()
