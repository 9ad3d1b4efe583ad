"""docs/RESULTS.md from two sweep folders: every number on the page is computed here from the
runs' own records (metrics.json, history.csv, checkpoints); the prose only says what they mean."""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from mlp_sweep.labels import command, read_multirun
from mlp_sweep.results.compare import compare
from mlp_sweep.results.stats import Estimate
from mlp_sweep.run.reader import job_dirs, read_run, warning_line
from mlp_sweep.status import Status

# Ends this far (test accuracy) below its linear-logit twin (same activation, same seed): collapsed.
COLLAPSE = 0.05


def load_runs(sweep_dir: Path) -> pd.DataFrame:
    """One row per run of the sweep: its factors, final metrics and where its record is."""
    rows = []
    for job_dir in job_dirs(sweep_dir):
        read = read_run(job_dir)
        if not read.readable:  # the page is built from whole sweeps only
            raise ValueError(warning_line(read))
        record, p = dict(read.fields), read.params
        rows.append(
            {
                "act": p["model.act"],
                "init": p["model.init"],
                "output_act": p["model.output_act"],
                "seed": p["seed"],
                "status": read.status,
                "test_acc": record["test_acc"],
                "test_loss": record["test_loss"],
                "epochs": record["epochs_done"],
                "threads": record["threads"],
                "run_dir": str(job_dir),
                "record": record,
            }
        )
    return pd.DataFrame(rows)


def sweep_command(sweep_dir: Path) -> str:
    saved = read_multirun(sweep_dir)["hydra"]["overrides"]["task"]
    return command("-m", *[str(o) for o in saved])


def _pm(e: Estimate) -> str:
    return f"{e.mean:.4f} ± {e.sd:.4f}"


def _ci(e: Estimate) -> str:
    return f"[{e.lo:.4f}, {e.hi:.4f}]"


def _diff(e: Estimate) -> str:
    return f"{100 * e.mean:+.2f} [{100 * e.lo:+.2f}, {100 * e.hi:+.2f}]"


def grid_section(grid: pd.DataFrame) -> tuple[list[str], dict[str, Any]]:
    acts, inits = list(dict.fromkeys(grid["act"])), list(dict.fromkeys(grid["init"]))
    cells = {
        (a, i): Estimate.of(list(grid[(grid.act == a) & (grid.init == i)]["test_acc"]))
        for a in acts
        for i in inits
    }
    best = max(cells, key=lambda k: cells[k].mean)
    n_seeds = grid["seed"].nunique()
    lines = [
        f"Final test accuracy after {int(grid['epochs'].max())} epochs, mean ± standard "
        f"deviation over {n_seeds} seeds ({len(grid)} runs):",
        "",
        "| activation | " + " | ".join(inits) + " |",
        "|---|" + "---:|" * len(inits),
    ]
    for a in acts:
        row = [f"**{_pm(cells[a, i])}**" if (a, i) == best else _pm(cells[a, i]) for i in inits]
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"95% intervals of each mean (Student's t, {n_seeds - 1} degrees of freedom):",
        "",
        "| activation | " + " | ".join(inits) + " |",
        "|---|" + "---:|" * len(inits),
    ]
    for a in acts:
        lines.append(f"| {a} | " + " | ".join(_ci(cells[a, i]) for i in inits) + " |")
    noise = [cells[k].sd for k in cells]
    facts = {
        "best": best,
        "best_est": cells[best],
        "worst": min(cells, key=lambda k: cells[k].mean),
        "sd_range": (min(noise), max(noise)),
        "cells": cells,
    }
    return lines, facts


def paired_section(grid: pd.DataFrame) -> tuple[list[str], list[dict[str, Any]]]:
    """The paired comparisons, by mlp_sweep.compare (what notebooks call): a - b per pair,
    its 95% interval, and whether it exceeds the noise once Holm has counted every pair of
    the table."""
    lines = []
    found = []
    for factor, match, what in (
        ("act", ["init", "seed"], "activations, matched on init and seed"),
        ("init", ["act", "seed"], "inits, matched on activation and seed"),
    ):
        rows = compare(grid, by=factor, metric="test_acc", paired_on=match)
        n = int(rows["n"].iloc[0]) if len(rows) else 0
        lines += [
            f"**{what.capitalize()}** ({n} pairs each): a − b in points of test accuracy, "
            "mean and 95% interval; p from the paired t-test, then Holm-adjusted over the "
            f"{len(rows)} pairs of this table (with that many comparisons some would pass "
            "at 95% by chance; Holm keeps that chance at 5% for the whole table); *exceeds "
            "noise* when the adjusted p is below 0.05.",
            "",
            "| a | b | a − b (points) | a better in | p | p, Holm | exceeds noise |",
            "|---|---|---:|---:|---:|---:|:---:|",
        ]
        for r in rows.to_dict("records"):
            diff = f"{100 * r['diff']:+.2f} [{100 * r['lo']:+.2f}, {100 * r['hi']:+.2f}]"
            lines.append(
                f"| {r['a']} | {r['b']} | {diff} | {r['a_better']}/{r['n']} | "
                f"{_p(r['p'])} | {_p(r['p_holm'])} | {'yes' if r['exceeds_noise'] else 'no'} |"
            )
            found.append({"factor": factor, **r})
        lines.append("")
    return lines, found


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def logits_section(repro: pd.DataFrame, counts: dict[str, dict[str, float]]) -> list[str]:
    acts = list(dict.fromkeys(repro["act"]))
    lines = [
        "| activation | on the logits (tutorial) | linear logits | collapsed seeds | "
        "on − linear, per seed (points) | worst seed |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for a in acts:
        on = repro[(repro.act == a) & repro.output_act].set_index("seed")["test_acc"]
        off = repro[(repro.act == a) & ~repro.output_act].set_index("seed")["test_acc"]
        drop = (off - on).dropna()
        collapsed = int((drop > COLLAPSE).sum())
        lines.append(
            f"| {a} | {_pm(Estimate.of(list(on)))} | {_pm(Estimate.of(list(off)))} | "
            f"{collapsed}/{len(drop)} | "
            + ", ".join(f"{100 * -d:+.1f}" for d in drop)
            + f" | {on.min():.4f} |"
        )
    lines += [
        "",
        f"*Collapsed*: ends more than {100 * COLLAPSE:.0f} points below its linear-logit twin "
        "(same activation, same seed).",
        "",
        "What the trained models do with their logits (test set, each run's own checkpoint; "
        "mean over seeds):",
        "",
        "| activation on the logits | class scores exactly 0 | samples whose true class "
        "scores ≤ 0 | samples with a tied top score |",
        "|---|---:|---:|---:|",
    ]
    for a in acts:
        c = counts[a]
        lines.append(
            f"| {a} | {100 * c['zero_scores']:.1f}% | {100 * c['true_class_nonpositive']:.1f}% "
            f"| {100 * c['tied_top']:.1f}% |"
        )
    return lines


def provenance(frames: dict[str, pd.DataFrame], commands: dict[str, str]) -> list[str]:
    first = next(iter(frames.values())).iloc[0]["record"]
    commits = {
        (f["record"]["git"] or {}).get("commit")
        for frame in frames.values()
        for f in frame.to_dict("records")
    }
    dirty = any((r["git"] or {}).get("dirty") for f in frames.values() for r in f["record"])
    threads = sorted({int(t) for f in frames.values() for t in f["threads"] if t is not None})
    started = min(r["started_at"] for f in frames.values() for r in f["record"])
    finished = max(r["finished_at"] or "" for f in frames.values() for r in f["record"])
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items() if v)
    lines = ["The sweeps, exactly as run:", "", "```"]
    lines += [f"{commands[name]}    # {len(frames[name])} runs" for name in frames]
    lines += [
        "```",
        "",
        f"- commit: {', '.join(sorted(c or 'unknown' for c in commits))}"
        + (" (with uncommitted changes)" if dirty else ""),
        f"- versions: {versions}",
        f"- machine: {first['host']}, {first['platform']}, device {first['device']}, "
        f"{'/'.join(map(str, threads))} torch thread(s) per run",
        f"- runs from {started} to {finished}; page generated with Python "
        f"{platform.python_version()}",
    ]
    return lines


def setup(frame: pd.DataFrame) -> str:
    """The training setup the runs share, read from their own params."""
    p = frame.iloc[0]["record"]["params"]
    data = p["data.name"] + (
        f", first {p['data.limit_train']} training images" if p.get("data.limit_train") else ""
    )
    return (
        f"{'-'.join(str(n) for n in [784, *p['model.hidden'], 10])}, {p['optim.name']} lr "
        f"{p['optim.lr']:g}, batch {p['trainer.batch_size']}, {p['trainer.epochs']} epochs, {data}"
    )


def n_finished(frame: pd.DataFrame) -> str:
    ok = int((frame["status"] == Status.OK).sum())
    return f"{ok} of {len(frame)} runs ok" + ("" if ok == len(frame) else " (the rest left out)")


def fmt_points(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"
