"""A sweep's two pictures, drawn beside its summary.csv:

- curves.png: test accuracy and train loss per epoch, one line per run, one colour per
  configuration (the swept values, named in the legend); with many runs, the mean over seeds
  of each configuration; with very many configurations, the best ten in colour and the rest in
  grey.
- comparison.png: final and best test accuracy of each configuration, best first; with seeds
  swept, their mean with a bar of one standard deviation (summary_by_config.csv's numbers).
- pareto.png, for a search with several objectives: each trial by its first two objectives
  (means over its seeds), the Pareto-optimal ones marked, named and joined.

Runs without history (failed before their first epoch) are left out of the curves; runs a
search's pruner stopped are drawn thinner and fainter, with an x at the epoch it stopped them.
Runs that did not finish `ok` are left out of the comparison, as they are of
summary_by_config.csv.
Drawn with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from mlp_sweep.results.summary import PARETO, TRIAL, override_keys, search_settings
from mlp_sweep.run.record import HISTORY_FILE, write_bytes_atomic
from mlp_sweep.status import Status

CURVES_FILE = "curves.png"
COMPARISON_FILE = "comparison.png"
PARETO_FILE = "pareto.png"
MAX_LINES = 30  # one line per run up to here; beyond, one per configuration
MAX_COLOURED = 10  # beyond MAX_LINES configurations: these best ones in colour, the rest grey
MAX_ROWS = 30  # configurations shown in comparison.png
STYLES = ("-", "--", "-.", ":")


def read_history(run_dir: str) -> dict[str, list[float]]:
    """history.csv as columns; empty when the run has none."""
    columns: dict[str, list[float]] = defaultdict(list)
    try:
        with open(Path(run_dir) / HISTORY_FILE, newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    columns[key].append(float(value))
    except (OSError, ValueError, TypeError):
        return {}
    return dict(columns)


def _short_names(keys: list[str]) -> dict[str, str]:
    """model.act -> act, unless two keys would get the same short name."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (t if tails.count(t) == 1 else k) for k, t in zip(keys, tails, strict=True)}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_labels(frame: pd.DataFrame) -> tuple[list[str], str]:
    """Each row's configuration as text ("act=selu lr=0.1"), and what the legend names."""
    keys = [k for k in override_keys(frame) if k != TRIAL]
    if TRIAL in frame and not keys:
        keys = [TRIAL]
    if not keys:
        return ["all runs"] * len(frame), ""
    short = _short_names(keys)
    rows = frame[keys].itertuples(index=False, name=None)
    if len(keys) == 1:  # the legend's title names the key
        return [_format(row[0]) for row in rows], keys[0]
    texts = [
        " ".join(f"{short[k]}={_format(v)}" for k, v in zip(keys, row, strict=True)) for row in rows
    ]
    return texts, ", ".join(keys)


def _colours(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _mean_curve(
    curves: list[dict[str, list[float]]], column: str
) -> tuple[list[float], list[float]]:
    """Per epoch, the mean over the runs that reached it."""
    by_epoch: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for epoch, value in zip(curve["epoch"], curve[column], strict=False):
            if math.isfinite(value):
                by_epoch[epoch].append(value)
    epochs = sorted(by_epoch)
    return epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def draw_curves(frame: pd.DataFrame, path: Path, title: str) -> bool:
    """curves.png; False (nothing drawn) when no run has a history."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    texts, legend_title = config_labels(frame)
    runs: dict[str, list[dict[str, list[float]]]] = defaultdict(list)
    pruned: set[int] = set()  # id() of the curves of runs a search's pruner stopped
    for text, run_dir, status in zip(texts, frame["run_dir"], frame["status"], strict=True):
        curve = read_history(str(run_dir))
        if curve.get("epoch"):
            runs[text].append(curve)
            if status == Status.PRUNED:
                pruned.add(id(curve))
    if not runs:
        return False
    n_runs = sum(len(c) for c in runs.values())
    order = list(runs)  # configurations in job order
    # Ranked by their final mean test accuracy, for colouring when there are very many.
    final = {t: _mean_curve(runs[t], "test_acc")[1][-1:] or [0.0] for t in order}
    ranked = sorted(order, key=lambda t: -final[t][0])
    coloured = ranked[:MAX_COLOURED] if len(order) > MAX_LINES else order
    colours = dict(zip(coloured, _colours(len(coloured)), strict=True))
    # Dashes as well as colours: two configurations with the same curves stay both visible.
    dashes = {t: STYLES[i % len(STYLES)] for i, t in enumerate(coloured)}
    aggregate = n_runs > MAX_LINES

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    for text in order:
        colour = colours.get(text, (0.6, 0.6, 0.6, 0.5))
        label = text if text in colours else None
        width = 1.6 if text in colours else 0.8
        curves = runs[text]
        for column, ax, scale in (("test_acc", acc_ax, 100.0), ("train_loss", loss_ax, 1.0)):
            if aggregate:
                epochs, values = _mean_curve(curves, column)
                ax.plot(
                    epochs,
                    [v * scale for v in values],
                    color=colour,
                    ls=dashes.get(text, "-"),
                    lw=width,
                    label=label,
                )
                continue
            for i, curve in enumerate(curves):
                stopped = id(curve) in pruned  # thinner, fainter, an x where it was stopped
                ax.plot(
                    curve["epoch"],
                    [v * scale for v in curve[column]],
                    color=colour,
                    ls=dashes.get(text, "-"),
                    lw=width * 0.6 if stopped else width,
                    alpha=0.5 if stopped else 0.85,
                    marker="x" if stopped else None,
                    markevery=[len(curve["epoch"]) - 1] if stopped else None,
                    label=label if i == 0 else None,
                )
    seeds = " (mean over seeds)" if aggregate and n_runs > len(order) else ""
    acc_ax.set(title=f"test accuracy{seeds}", xlabel="epoch", ylabel="test accuracy (%)")
    loss_ax.set(
        title=f"train loss{seeds}", xlabel="epoch", ylabel="train loss, mean per sample (log scale)"
    )
    loss_ax.set_yscale("log")
    low, high = loss_ax.get_ylim()
    if 0 < low and high / low < 100:  # within two decades: 0.5, 1, 2 rather than 5x10^-1
        loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
        loss_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        loss_ax.yaxis.set_minor_formatter(NullFormatter())
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if pruned and not aggregate:
        loss_ax.plot([], [], color="black", lw=0.8, alpha=0.5, marker="x", label="pruned (x)")
    others = len(order) - len(coloured)
    if others:
        loss_ax.plot([], [], color=(0.6, 0.6, 0.6), lw=0.8, label=f"{others} other configurations")
    handles, labels_ = loss_ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels_,
            title=legend_title or None,
            loc="outside right upper",
            fontsize="small",
            ncols=1 if len(handles) <= 16 else 2,
        )
    shown = f"{n_runs} runs" + (f", {len(order)} configurations" if len(order) != n_runs else "")
    shown += f", {len(pruned)} pruned" if pruned else ""
    fig.suptitle(f"{title}: {shown}")
    _save(fig, path)
    return True


def comparison_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: final and best test accuracy of its `ok` runs (mean, std over seeds:
    summary_by_config.csv's numbers), and how many of its runs that is."""
    texts, _ = config_labels(frame)
    data = frame.assign(
        text=texts,
        final=pd.to_numeric(frame["test_acc"], errors="coerce"),
        best=pd.to_numeric(frame["best_test_acc"], errors="coerce"),
    )
    ok = data[data["status"].eq(Status.OK)].groupby("text", sort=False)
    table = ok[["final", "best"]].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" if s == "std" else m for m, s in table.columns]
    table = table.join(ok.size().rename("n_ok")).join(data.groupby("text").size().rename("n_runs"))
    return table.dropna(subset=["best"]).fillna({"final_std": 0.0, "best_std": 0.0})


def draw_comparison(frame: pd.DataFrame, path: Path, title: str) -> bool:
    """comparison.png; False (nothing drawn) when no run finished ok."""
    import matplotlib.pyplot as plt

    _, legend_title = config_labels(frame)
    table = comparison_table(frame)
    with_std = frame["seed"].nunique(dropna=True) > 1
    if with_std:
        runs = [f"  ({ok}/{n} runs)" for ok, n in zip(table["n_ok"], table["n_runs"], strict=True)]
        table.index = table.index + runs
    if table.empty:
        return False
    n_configs = len(table)
    table = table.sort_values("best", ascending=False).head(MAX_ROWS).iloc[::-1]
    height = 2.0 + 0.32 * len(table)
    fig, ax = plt.subplots(figsize=(10, height), layout="constrained")
    y = list(range(len(table)))
    ax.errorbar(
        table["final"] * 100,
        [v + 0.12 for v in y],
        xerr=table["final_std"] * 100 if with_std else None,
        fmt="o",
        color="tab:blue",
        capsize=3,
        label="final epoch" + (" (mean ± std over seeds)" if with_std else ""),
    )
    ax.errorbar(
        table["best"] * 100,
        [v - 0.12 for v in y],
        xerr=table["best_std"] * 100 if with_std else None,
        fmt="D",
        mfc="none",
        color="tab:orange",
        capsize=3,
        label="best epoch" + (" (mean ± std over seeds)" if with_std else ""),
    )
    ax.set_yticks(y, table.index, fontsize="small")
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    shown = f"top {len(table)} of {n_configs}" if n_configs > len(table) else f"{n_configs}"
    ax.set_title(
        f"{title}: {shown} configurations" + (f" ({legend_title})" if legend_title else "")
    )
    _save(fig, path)
    return True


def draw_pareto(
    frame: pd.DataFrame, objectives: tuple[str, ...], directions: tuple[str, ...], path: Path
) -> bool:
    """pareto.png; False (nothing drawn) when the frame has no Pareto column or no trial with
    every objective's value."""
    import matplotlib.pyplot as plt

    if PARETO not in frame or len(objectives) < 2:
        return False
    x_name, y_name = objectives[:2]
    finished = frame["status"].isin([Status.OK, Status.DIVERGED])
    values = frame[[x_name, y_name]].apply(pd.to_numeric, errors="coerce")[finished].dropna()
    if values.empty:
        return False
    trials = values.groupby(frame.loc[values.index, TRIAL]).mean()
    optimal = frame.loc[values.index].groupby(TRIAL)[PARETO].all()
    front = trials[optimal.reindex(trials.index, fill_value=False)].sort_values(x_name)
    rest = trials.drop(front.index)
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    ax.scatter(rest[x_name], rest[y_name], color="0.6", s=22, label="other trials")
    ax.plot(front[x_name], front[y_name], "-", color="tab:red", alpha=0.5)
    ax.scatter(front[x_name], front[y_name], color="tab:red", s=40, label="Pareto-optimal")
    for trial, (x, y) in front[[x_name, y_name]].iterrows():
        ax.annotate(
            f"trial {trial}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize="small"
        )
    arrow = {"maximize": "higher is better", "minimize": "lower is better"}
    ax.set_xlabel(f"{x_name} ({arrow[directions[0]]})")
    ax.set_ylabel(f"{y_name} ({arrow[directions[1]]})")
    ax.grid(alpha=0.3)
    ax.margins(0.1)  # room for the trials' names
    ax.legend(fontsize="small")
    more = f"; {len(objectives) - 2} more objectives not drawn" if len(objectives) > 2 else ""
    ax.set_title(f"{path.parent.name}: {len(front)} of {len(trials)} trials Pareto-optimal{more}")
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    """Whole or not at all: a reader never sees half a PNG."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def write_plots(sweep_dir: Path, frame: pd.DataFrame) -> list[Path]:
    """Draw curves.png, comparison.png (and pareto.png) into sweep_dir; returns those drawn."""
    import matplotlib

    matplotlib.use("Agg")
    sweep_dir = Path(sweep_dir)
    drawn = []
    title = sweep_dir.name
    if draw_curves(frame, sweep_dir / CURVES_FILE, title):
        drawn.append(sweep_dir / CURVES_FILE)
    if draw_comparison(frame, sweep_dir / COMPARISON_FILE, title):
        drawn.append(sweep_dir / COMPARISON_FILE)
    search = search_settings(sweep_dir)
    if draw_pareto(frame, search.objectives, search.directions, sweep_dir / PARETO_FILE):
        drawn.append(sweep_dir / PARETO_FILE)
    return drawn
