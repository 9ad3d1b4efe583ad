"""The results page's two figures (matplotlib, Agg): learning curves of the grid, and the
tutorial's logits activation against linear logits."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from mlp_sweep.results.plots import STYLES, read_history
from mlp_sweep.run.record import write_bytes_atomic


def _curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run and epoch: test_acc, with the frame's columns."""
    rows = []
    for run in frame.itertuples(index=False):
        history = read_history(str(run.run_dir))
        for epoch, acc in zip(history.get("epoch", []), history.get("test_acc", []), strict=True):
            rows.append({**run._asdict(), "epoch": int(epoch), "curve_acc": acc})
    return pd.DataFrame(rows)


def _finish(fig: Any, axes: Any, titles: list[str], ylabel: str, path: Path) -> None:
    """Panels titled, epochs along x, one y label and legend, written atomically."""
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    write_bytes_atomic(path, buf.getvalue())


def grid_curves(grid: pd.DataFrame, path: Path) -> None:
    """One panel per init; per activation the mean test accuracy over seeds, +-1 sd band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(grid)
    inits = list(dict.fromkeys(grid["init"]))
    fig, axes = plt.subplots(1, len(inits), figsize=(3.2 * len(inits), 3.4), sharey=True)
    for ax, init in zip(axes, inits, strict=True):
        for n, act in enumerate(dict.fromkeys(grid["act"])):
            part = curves[(curves["init"] == init) & (curves["act"] == act)]
            stats = part.groupby("epoch")["curve_acc"].agg(["mean", "std"])
            # Dashes as well as colours: relu and leaky nearly coincide.
            ax.plot(stats.index, stats["mean"], STYLES[n % len(STYLES)], label=act, marker=".")
            ax.fill_between(
                stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2
            )
    _finish(fig, axes, [f"init {i}" for i in inits], "test accuracy (mean over seeds)", path)


def logits_curves(repro: pd.DataFrame, path: Path) -> None:
    """One panel per activation: each seed's curve with the activation on the logits (solid),
    and with linear logits (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(repro)
    acts = list(dict.fromkeys(repro["act"]))
    fig, axes = plt.subplots(1, len(acts), figsize=(3.2 * len(acts), 3.4), sharey=True)
    for ax, act in zip(axes, acts, strict=True):
        for on, style, colour in ((True, "-", "tab:red"), (False, "--", "tab:blue")):
            part = curves[(curves["act"] == act) & (curves["output_act"] == on)]
            for i, (_, run) in enumerate(part.groupby("seed")):
                label = ("activation on logits" if on else "linear logits") if i == 0 else None
                ax.plot(run["epoch"], run["curve_acc"], style, color=colour, alpha=0.7, label=label)
    _finish(fig, axes, acts, "test accuracy (each seed)", path)
