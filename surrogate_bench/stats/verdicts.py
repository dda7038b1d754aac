"""Verdicts that decide: each method vs its task's baseline, one of better / worse / equivalent / inconclusive.

A *family* is every method compared with the task's baseline in one profile's table; the input is, per
comparison, the per-seed paired differences method − baseline over the seeds both have.

- Superiority: two-sided paired t-test of H0: mean difference = 0 (``scipy.stats.ttest_1samp`` on the
  differences, identical to ``ttest_rel`` on the pairs), p-values Holm-adjusted across the family
  (``statsmodels.stats.multitest.multipletests(method="holm")``). Adjusted p < level → ``better`` or
  ``worse`` by the sign of the mean difference and ``higher_is_better``.
- Equivalence: two one-sided tests (TOST) of H0: |mean difference| >= delta
  (``statsmodels.stats.weightstats.ttost_paired`` against zeros, identical to the one-sample
  ``DescrStatsW.ttost_mean``), **also Holm-adjusted across the family**, so "equivalent" is a
  family-wise corrected claim just like "better"/"worse". Adjusted TOST p < level and not better/worse →
  ``equivalent``. A difference can be both significant and inside ±delta; it is then ``better``/``worse``.
- Otherwise ``inconclusive``, with the seeds a fixed-n design would need to decide at the observed spread
  (see ``seeds_needed``).

Degenerate comparisons: n < 2 has no t-test, so it is ``inconclusive`` (p-values NaN; it enters Holm as
p = 1, so it still counts in the family size). Zero spread (all differences identical, n >= 2) makes
the t statistic ±inf or 0/0, so it is decided by the numbers themselves: a nonzero mean gets superiority
p = 0 (``better``/``worse`` by its sign); a zero mean gets superiority p = 1, and TOST p = 0 when
|mean| < delta (so a zero mean is ``equivalent``), else 1. These p = 0 / 1 values go through Holm like any
other, so the family correction is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from surrogate_bench.stats.power import MIN_SEEDS, POWER, SEEDS_CAP, seeds_for, seeds_for_equivalence

ALPHA = 0.05
Word = Literal["better", "worse", "equivalent", "inconclusive"]
WORDS: tuple[Word, ...] = ("better", "worse", "equivalent", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """One comparison's verdict, its statistics and, when inconclusive, the seeds needed to decide.

    ``ci_low``/``ci_high``: two-sided (1 − alpha) paired-t interval of the mean difference (descriptive,
    not family-corrected). ``seeds_needed``: ``None`` when decided or n < 2, ``math.inf`` beyond
    ``SEEDS_CAP`` (shown as "> 10000"), else a total seed count. ``alpha_level``: the level the adjusted
    p-values were compared with (``alpha`` for a fixed design, a look's spent level in a sequential one).
    ``decided_at``: the seed count at which the verdict was reached (``None`` while inconclusive).
    """

    word: Word
    n: int
    diff: float
    ci_low: float
    ci_high: float
    sd: float
    p_superiority: float
    p_superiority_adjusted: float
    p_equivalence: float
    p_equivalence_adjusted: float
    seeds_needed: int | float | None
    delta: float
    alpha: float
    alpha_level: float = ALPHA
    decided_at: int | None = None

    @property
    def decided(self) -> bool:
        """Whether the verdict is one of better / worse / equivalent."""
        return self.word != "inconclusive"

    @property
    def seeds_needed_label(self) -> str:
        """``seeds_needed`` for a table: '' when not applicable, '> 10000' beyond the cap."""
        if self.seeds_needed is None:
            return ""
        return f"> {SEEDS_CAP}" if math.isinf(self.seeds_needed) else str(self.seeds_needed)


@dataclass(frozen=True)
class _Tests:
    """Unadjusted statistics of one comparison (internal)."""

    n: int
    diff: float
    sd: float
    ci_low: float
    ci_high: float
    p_superiority: float
    p_equivalence: float


def _as_differences(values: Sequence[float]) -> np.ndarray:
    """The differences as a finite 1-D float array (a NaN would silently change n, so it is an error)."""
    d = np.asarray(values, dtype=float)
    if d.ndim != 1 or not np.all(np.isfinite(d)):
        raise ValueError("paired differences must be a 1-D sequence of finite numbers")
    return d


def paired_tests(values: Sequence[float], delta: float, alpha: float = ALPHA) -> _Tests:
    """Mean, SD, (1 − alpha) t interval, superiority p (two-sided t) and TOST p of one comparison."""
    d = _as_differences(values)
    n = len(d)
    nan = math.nan
    if n < MIN_SEEDS:
        diff = float(d.mean()) if n else nan
        return _Tests(n, diff, nan, nan, nan, nan, nan)
    diff, sd = float(d.mean()), float(d.std(ddof=1))
    if np.ptp(d) == 0:  # zero spread: decided by the numbers themselves (module docstring)
        return _Tests(n, diff, 0.0, diff, diff, 0.0 if diff != 0 else 1.0, 0.0 if abs(diff) < delta else 1.0)
    low, high = stats.t.interval(1 - alpha, n - 1, loc=diff, scale=sd / math.sqrt(n))
    p_sup = float(stats.ttest_1samp(d, 0.0).pvalue)
    p_eq = float(ttost_paired(d, np.zeros(n), -delta, delta)[0])
    return _Tests(n, diff, sd, float(low), float(high), p_sup, p_eq)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels); NaN (no test) enters as 1, so it still counts in the family."""
    p = np.nan_to_num(np.asarray(pvalues, dtype=float), nan=1.0)
    if len(p) == 0:
        return p
    return multipletests(p, method="holm")[1]


def seeds_needed(diff: float, sd: float, delta: float, alpha: float, family_size: int,
                 power: float = POWER) -> int | float | None:
    """Seeds a fixed design needs for 80% power at alpha / family size (Bonferroni: conservative vs Holm).

    At the observed spread ``sd``: if |diff| >= delta, the power of the two-sided paired t-test to detect
    the observed |diff|; if |diff| < delta, the TOST power to show equivalence within ±delta with the true
    difference equal to the observed one. ``None`` when it cannot be computed (n < 2: no spread).
    """
    if not math.isfinite(sd) or not math.isfinite(diff):
        return None
    level = alpha / max(family_size, 1)
    if abs(diff) >= delta:
        return seeds_for(abs(diff), sd, level, power)
    return seeds_for_equivalence(diff, sd, delta, level, power)


def _word(p_sup_adj: float, p_eq_adj: float, diff: float, level: float, higher_is_better: bool) -> Word:
    """The verdict word from the adjusted p-values (superiority first, then equivalence)."""
    if p_sup_adj < level:
        return "better" if (diff > 0) == higher_is_better else "worse"
    if p_eq_adj < level:
        return "equivalent"
    return "inconclusive"


def decide_family(diffs: Mapping[str, Sequence[float]], delta: float, higher_is_better: bool = True,
                  alpha: float = ALPHA, alpha_level: float | None = None) -> dict[str, Verdict]:
    """Verdicts for a family of comparisons with the baseline, Holm-corrected across the family.

    ``diffs`` maps a comparison's name to its per-seed differences method − baseline; ``delta`` > 0 is
    the equivalence margin (in metric units); ``alpha`` the family-wise error rate (also the CI's and
    ``seeds_needed``'s level); ``alpha_level`` the level the adjusted p-values are compared with (a
    sequential design's spent level at this look; default ``alpha``).
    """
    if not delta > 0:
        raise ValueError(f"the equivalence margin delta must be > 0, got {delta}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    level = alpha if alpha_level is None else alpha_level
    if not 0 <= level <= alpha:
        raise ValueError(f"alpha_level must be in [0, alpha], got {alpha_level}")
    names = list(diffs)
    tests = [paired_tests(diffs[name], delta, alpha) for name in names]
    p_sup_adj = holm([t.p_superiority for t in tests])
    p_eq_adj = holm([t.p_equivalence for t in tests])
    out: dict[str, Verdict] = {}
    for i, (name, t) in enumerate(zip(names, tests)):
        sup_adj = math.nan if math.isnan(t.p_superiority) else float(p_sup_adj[i])
        eq_adj = math.nan if math.isnan(t.p_equivalence) else float(p_eq_adj[i])
        word: Word = "inconclusive" if t.n < MIN_SEEDS else _word(sup_adj, eq_adj, t.diff, level, higher_is_better)
        needed = None if word != "inconclusive" else seeds_needed(t.diff, t.sd, delta, alpha, len(names))
        out[name] = Verdict(word=word, n=t.n, diff=t.diff, ci_low=t.ci_low, ci_high=t.ci_high, sd=t.sd,
                            p_superiority=t.p_superiority, p_superiority_adjusted=sup_adj,
                            p_equivalence=t.p_equivalence, p_equivalence_adjusted=eq_adj,
                            seeds_needed=needed, delta=delta, alpha=alpha, alpha_level=level,
                            decided_at=None if word == "inconclusive" else t.n)
    return out
