"""Comparisons with their noise in view, for any frame of runs (mlp_sweep.load's):

    mlp_sweep.compare(runs, by="model.act", metric="test_acc", paired_on=["model.init", "seed"])
    mlp_sweep.table(runs, rows="model.act", cols="model.init")

compare: every pair of `by`'s levels, a - b over the runs that match on `paired_on` (the same
seed and everything else equal: what the seed does to both runs cancels), its mean, its 95%
Student-t interval, "a better in k of n", the paired t-test's two-sided p-value, and Holm's
adjustment of it over all the pairs: with 6 or 12 pairs at 95%, some "real" differences would
be chance, and Holm keeps the chance of calling any pair different by chance at 5%. A pair
exceeds the noise when its Holm-adjusted p is below 0.05.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pandas as pd

from mlp_sweep.results.stats import Estimate
from mlp_sweep.status import Status

LEVEL = 0.05


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with integer df (Abramowitz & Stegun 26.7.3-4: exact)."""
    if df < 1 or math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        term, total = c, c if df > 1 else 0.0
        for k in range(3, df - 1, 2):  # cos θ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ...)
            term *= (k - 1) / k * c * c
            total += term
        inside = (2 / math.pi) * (theta + s * total)
    else:
        term, total = 1.0, 1.0
        for k in range(2, df - 1, 2):  # 1 + cos²θ/2 + 1·3/(2·4) cos⁴θ + ...
            term *= (k - 1) / k * c * c
            total += term
        inside = s * total
    return min(1.0, max(0.0, 1.0 - inside))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN)."""
    known = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[i] = running
    return adjusted


def compare(
    frame: pd.DataFrame,
    by: str,
    metric: str = "test_acc",
    paired_on: Sequence[str] = ("seed",),
) -> pd.DataFrame:
    """Every pair (a, b) of `by`'s levels, in their order of appearance: one row each with
    n (matched pairs), mean a - b, sd, its 95% interval (lo, hi), a_better (pairs where a is
    higher), p (paired t-test, two-sided), p_holm (Holm over all the rows) and exceeds_noise
    (p_holm < 0.05). Runs are matched on `paired_on`; a run without its match is left out.
    Only runs whose status is ok count."""
    for key in (by, metric, *paired_on):
        if key not in frame:
            raise KeyError(f"{key}: not a column of the frame; it has {', '.join(frame.columns)}")
    runs = frame[frame["status"].eq(Status.OK)] if "status" in frame else frame
    match = list(paired_on)
    wide = runs.pivot_table(
        index=match, columns=by, values=metric, aggfunc="first", dropna=False, sort=False
    )
    rows = []
    for a, b in itertools.combinations(list(dict.fromkeys(runs[by])), 2):
        both = wide[[a, b]].dropna()
        differences = [float(x) for x in both[a] - both[b]]
        diff = Estimate.of(differences)
        t = diff.mean / (diff.sd / math.sqrt(diff.n)) if diff.n > 1 and diff.sd > 0 else math.nan
        if diff.n > 1 and diff.sd == 0:
            t = math.inf if diff.mean != 0 else math.nan
        rows.append(
            {
                "a": a,
                "b": b,
                "n": diff.n,
                "diff": diff.mean,
                "sd": diff.sd,
                "lo": diff.lo,
                "hi": diff.hi,
                "a_better": int((both[a] > both[b]).sum()),
                "p": t_two_sided_p(t, diff.n - 1),
            }
        )
    result = pd.DataFrame(rows, columns=["a", "b", "n", "diff", "sd", "lo", "hi", "a_better", "p"])
    result["p_holm"] = holm(result["p"].tolist())
    result["exceeds_noise"] = result["p_holm"] < LEVEL
    return result


def table(
    frame: pd.DataFrame, rows: str, cols: str | None = None, metric: str = "test_acc"
) -> pd.DataFrame:
    """`metric`'s mean ± sd over the ok runs of each (rows, cols) cell, with their count:
    "0.9345 ± 0.0012 (5)". Levels in their order of appearance."""
    runs = frame[frame["status"].eq(Status.OK)] if "status" in frame else frame
    keys = [rows] if cols is None else [rows, cols]
    groups = runs.groupby(keys, sort=False, dropna=False)[metric]
    stats = groups.agg(["mean", "std", "count"])

    def cell(mean: float, sd: float, n: int) -> str:
        spread = f" ± {sd:.4f}" if n > 1 else ""
        return f"{mean:.4f}{spread} ({n})"

    text = pd.Series(
        [cell(m, s, int(n)) for m, s, n in stats.itertuples(index=False)], index=stats.index
    )
    if cols is None:
        return text.rename(metric).to_frame()
    return text.unstack(cols).reindex(columns=list(dict.fromkeys(runs[cols])))
