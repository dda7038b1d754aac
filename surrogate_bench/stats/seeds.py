"""Statistics over seeds: t intervals of a cell's mean and paired tests against the task's baseline.

Rules (README, "Reading the leaderboard"):
- a cell is the mean over seeds with a two-sided 95% Student-t interval (``scipy.stats.t``) and n;
- a method is compared with its task's baseline by a paired t-test (``scipy.stats.ttest_rel``) over the
  seeds both have (same seed = same initialisation and data order); the difference is *detectable* only
  with at least 2 paired seeds and p < ``ALPHA``. The Wilcoxon signed-rank test is not used: with n = 3
  pairs its smallest two-sided p is 2/2^3 = 0.25, so it can never detect anything at the grid's size;
- records are deduplicated by run key, and a cell keeps one record per seed (the newest), so copies of
  a record are never counted as extra seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean over seeds, the half-width of its two-sided t interval (NaN for n < 2), and n."""

    mean: float
    half_width: float
    n: int


@dataclass(frozen=True)
class Paired:
    """A method minus its baseline over the seeds both have: mean difference, p (paired t) and n pairs."""

    diff: float
    p: float
    n: int

    @property
    def detectable(self) -> bool:
        return self.n >= 2 and not math.isnan(self.p) and self.p < ALPHA


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t_{(1+c)/2, n-1} · s / sqrt(n) (s the sample standard deviation)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    if n == 1:
        return Interval(float(x[0]), float("nan"), 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(float(x.mean()), half, n)


def paired_test(values: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Paired t-test of ``values`` against ``baseline`` (both seed -> metric) over their common seeds."""
    seeds = sorted(s for s in set(values) & set(baseline)
                   if not (math.isnan(values[s]) or math.isnan(baseline[s])))
    if not seeds:
        return Paired(float("nan"), float("nan"), 0)
    a = np.array([values[s] for s in seeds], dtype=float)
    b = np.array([baseline[s] for s in seeds], dtype=float)
    diff = float((a - b).mean())
    if len(seeds) < 2:
        return Paired(diff, float("nan"), len(seeds))
    d = a - b
    if np.all(d == d[0]):  # zero spread: scipy says p = 0 (constant non-zero) or NaN (all equal)
        return Paired(diff, 0.0 if d[0] != 0 else 1.0, len(seeds))
    return Paired(diff, float(stats.ttest_rel(a, b).pvalue), len(seeds))
