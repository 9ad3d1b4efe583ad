"""Means with Student-t intervals, for mlp_sweep.compare and the results page.

Five seeds are few: a normal interval (+-1.96 sd/sqrt(n)) would be ~30% too narrow at n=5, so
intervals use Student's t. The paired comparisons, with their p-values and Holm's adjustment,
are mlp_sweep.results.compare's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95% quantiles of Student's t, t(0.975, df), df = 1..30 (standard tables; beyond
# 30 the normal 1.96 is within 2%).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Estimate:
    """Mean of n values, their standard deviation and the 95% interval of the mean."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        n = len(values)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if n > 1 else math.nan
        half = t975(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
        return cls(n, mean, sd, mean - half, mean + half)

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0
