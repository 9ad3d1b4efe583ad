"""curves.png and comparison.png: drawn for every sweep, from what its runs recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.colors
import matplotlib.figure
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from mlp_sweep.results import plots, publish
from mlp_sweep.results.publish import main
from mlp_sweep.results.summary import BY_CONFIG_FILE, write_summary

ACTS = ["relu", "leaky", "selu", "softplus", "tanh"]
LRS = [0.001, 0.01, 0.1, 1.0]


def fake_sweep(root: Path, seeds: int = 2, epochs: int = 5, failed: tuple[int, ...] = ()) -> None:
    """Records as runs write them: metrics.json, and history.csv unless the run failed early."""
    n = 0
    for act in ACTS:
        for lr in LRS:
            for seed in range(seeds):
                job = root / str(n)
                job.mkdir(parents=True)
                accs = [0.5 + 0.4 * math.tanh(lr * 3) * (1 - math.exp(-e / 2)) + 0.001 * seed
                        for e in range(1, epochs + 1)]  # fmt: skip
                overrides = [f"model.act={act}", f"optim.lr={lr}", f"seed={seed}"]
                record = {
                    "status": "failed" if n in failed else "ok",
                    "error": "ValueError: boom" if n in failed else None,
                    "overrides": overrides,
                    "params": {"model.act": act, "optim.lr": lr, "seed": seed},
                    "seed": seed,
                    "device": "cpu",
                    "test_acc": None if n in failed else accs[-1],
                    "best_test_acc": None if n in failed else max(accs),
                    "test_loss": 0.3,
                    "train_loss": 0.3,
                    "best_epoch": epochs,
                    "epochs_done": 0 if n in failed else epochs,
                    "train_seconds": 1.0,
                }
                (job / "metrics.json").write_text(json.dumps(record))
                if n not in failed:
                    rows = ["epoch,train_loss,test_loss,test_acc,seconds"] + [
                        f"{e},{2.3 * math.exp(-e * lr)},{2.3 * math.exp(-e * lr)},{a},0.2"
                        for e, a in enumerate(accs, start=1)
                    ]
                    (job / "history.csv").write_text("\n".join(rows) + "\n")
                n += 1


# Pixel sizes at plots' 110 dpi: curves.png is 13 x 5.2 inches, comparison.png 10 inches wide
# and 2 + 0.32 inches a configuration high.
CURVES_PX = (572, 1430)
COMPARISON_PX = (924, 1100)  # 20 configurations


def image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The PNG's pixels (RGB, 0-255), after checking it is a whole PNG of the expected size
    with something drawn on it."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == size
    drawn = (pixels[..., :3] < 0.95).any(axis=-1).mean()
    assert 0.01 < drawn < 0.5, drawn  # lines, markers and text on a white page
    return (pixels[..., :3] * 255).round()


def has_colour(pixels: np.ndarray, colour: str | tuple[float, ...]) -> bool:
    """Whether some pixel is this colour (within rounding): a line or marker drawn in it."""
    rgb = np.array(matplotlib.colors.to_rgb(colour)) * 255
    return bool((np.abs(pixels - rgb).max(axis=-1) <= 2).any())


def test_a_sweep_with_seeds_and_failures_gets_both_plots(tmp_path: Path) -> None:
    fake_sweep(tmp_path, seeds=2, failed=(3, 17))
    frame = write_summary(tmp_path)
    drawn = plots.write_plots(tmp_path, frame)
    assert drawn == [tmp_path / "curves.png", tmp_path / "comparison.png"]
    # 20 configurations, one colour each (tab20), in the curves and their legend.
    curves = image(tmp_path / "curves.png", CURVES_PX)
    tab20 = matplotlib.colormaps["tab20"]
    assert [i for i in range(20) if not has_colour(curves, tab20(i))] == []
    # The comparison's markers: final accuracy in blue, best in orange.
    comparison = image(tmp_path / "comparison.png", COMPARISON_PX)
    assert has_colour(comparison, "tab:blue") and has_colour(comparison, "tab:orange")
    # The comparison shows summary_by_config.csv's numbers (means and stds of the ok runs).
    table = plots.comparison_table(frame)
    by_config = pd.read_csv(tmp_path / BY_CONFIG_FILE)
    assert len(table) == len(by_config) == len(ACTS) * len(LRS)
    for _, row in by_config.iterrows():
        text = f"act={row['model.act']} lr={row['optim.lr']:g}"
        assert table.loc[text, "final"] == pytest.approx(row["test_acc_mean"])
        assert table.loc[text, "best"] == pytest.approx(row["best_test_acc_mean"])
        assert table.loc[text, "best_std"] == pytest.approx(
            0.0 if pd.isna(row["best_test_acc_std"]) else row["best_test_acc_std"]
        )
        assert (table.loc[text, "n_ok"], table.loc[text, "n_runs"]) == (row["n_ok"], row["n_runs"])


def test_labels_name_only_the_swept_values(tmp_path: Path) -> None:
    fake_sweep(tmp_path, seeds=1)
    frame = write_summary(tmp_path)
    texts, title = plots.config_labels(frame)
    assert title == "model.act, optim.lr"
    assert texts[:2] == ["act=relu lr=0.001", "act=relu lr=0.01"]
    one_key = frame[frame["optim.lr"] == 0.1].drop(columns=["optim.lr"])
    assert plots.config_labels(one_key) == (ACTS, "model.act")


def test_runs_without_history_still_leave_a_summary(tmp_path: Path) -> None:
    fake_sweep(tmp_path, seeds=1, failed=tuple(range(len(ACTS) * len(LRS))))
    frame = write_summary(tmp_path)
    assert plots.write_plots(tmp_path, frame) == []  # nothing to draw, and no error
    assert list(tmp_path.glob("*.png")) == []
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["status"].tolist() == ["failed"] * len(ACTS) * len(LRS)


def test_the_summary_command_redraws_them(tmp_path: Path) -> None:
    fake_sweep(tmp_path, seeds=1, epochs=3)
    assert main([str(tmp_path)]) == 0
    curves, comparison = tmp_path / "curves.png", tmp_path / "comparison.png"
    image(curves, CURVES_PX)
    image(comparison, COMPARISON_PX)
    first = {path: (path.read_bytes(), path.stat().st_ino) for path in (curves, comparison)}
    curves.unlink()
    assert main([str(tmp_path)]) == 0
    # Both drawn again (new files), the same pictures to the byte: the same records.
    for path, (data, inode) in first.items():
        assert path.read_bytes() == data and path.stat().st_ino != inode, path.name


def test_a_plot_that_fails_costs_a_warning_not_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_sweep(tmp_path, seeds=1, epochs=2)
    frame = write_summary(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)  # fails as it renders
    assert publish.draw(tmp_path, frame) == []
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == publish.log.name]
    assert said == [("WARNING", f"no plots for {tmp_path}: RuntimeError: no fonts")]
    assert list(tmp_path.glob("*.png")) == []  # no plot, not even half of one
    assert pd.read_csv(tmp_path / "summary.csv").shape[0] == len(frame)
