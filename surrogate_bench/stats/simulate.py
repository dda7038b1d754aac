"""Monte Carlo of the sequential verdicts: many sequences at once, vectorised in numpy.

``run_sequential`` applies exactly the rules of ``verdicts.decide_family`` and ``sequential.decide_at_look``
(paired t, TOST, Holm across the whole family at each look's spent level, decided stays decided) to an
array of simulated differences, one sequence per row, without a Python loop over sequences;
tests/stats/test_sequential.py checks it against those functions sequence by sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from surrogate_bench.stats.sequential import SequentialDesign
from surrogate_bench.stats.verdicts import WORDS

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = (WORDS.index(w) for w in ("better", "worse", "equivalent", "inconclusive"))


@dataclass(frozen=True)
class SequentialRun:
    """Per sequence and comparison: final word (index into ``WORDS``) and the look that decided it (0: none)."""

    words: np.ndarray
    decided_at: np.ndarray

    @property
    def seeds_used(self) -> np.ndarray:
        """Seeds each sequence ran: the last comparison's deciding look, or n_max if any stayed undecided."""
        return self.decided_at.max(axis=-1)


def draw_differences(rng: np.random.Generator, n_sequences: int, true_diffs: Sequence[float], sd: float,
                     n_max: int) -> np.ndarray:
    """Differences (sequences, comparisons, seeds) sharing the baseline's noise, as in a real family.

    Each seed's baseline and methods get independent N(0, sd²/2) noise, so every difference has SD ``sd``
    and two comparisons of the same family correlate with 0.5 through the common baseline.
    """
    m = len(true_diffs)
    noise = rng.normal(0.0, sd / np.sqrt(2), size=(n_sequences, m + 1, n_max))
    return np.asarray(true_diffs, dtype=float)[None, :, None] + noise[:, 1:, :] - noise[:, :1, :]


def holm_adjust(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (the same step-down as statsmodels' multipletests)."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    stepped = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(stepped, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def look_pvalues(d: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, superiority p (two-sided t) and TOST p along the last axis, zero spread as in verdicts.py."""
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / np.sqrt(n)
    flat = np.ptp(d, axis=-1) == 0
    se = np.where(flat, 1.0, se)
    p_sup = 2 * stats.t.sf(np.abs(mean) / se, n - 1)
    p_eq = np.maximum(stats.t.sf((mean + delta) / se, n - 1), stats.t.cdf((mean - delta) / se, n - 1))
    p_sup = np.where(flat, np.where(mean != 0, 0.0, 1.0), p_sup)
    p_eq = np.where(flat, np.where(np.abs(mean) < delta, 0.0, 1.0), p_eq)
    return mean, p_sup, p_eq


def run_sequential(design: SequentialDesign, diffs: np.ndarray, delta: float,
                   higher_is_better: bool = True) -> SequentialRun:
    """The sequential procedure on every sequence of ``diffs`` (sequences, comparisons, >= n_max seeds)."""
    shape = diffs.shape[:-1]
    words = np.full(shape, INCONCLUSIVE)
    decided_at = np.zeros(shape, dtype=int)
    for n in design.looks():
        level = design.level_at(n)
        mean, p_sup, p_eq = look_pvalues(diffs[..., :n], delta)
        sup, eq = holm_adjust(p_sup) < level, holm_adjust(p_eq) < level
        sign = np.where((mean > 0) == higher_is_better, BETTER, WORSE)
        now = np.where(sup, sign, np.where(eq, EQUIVALENT, INCONCLUSIVE))
        new = (words == INCONCLUSIVE) & (now != INCONCLUSIVE)
        words = np.where(new, now, words)
        decided_at = np.where(new, n, decided_at)
    decided_at = np.where(words == INCONCLUSIVE, design.n_max, decided_at)
    return SequentialRun(words, decided_at)


def error_rates(run: SequentialRun, true_diffs: Sequence[float], delta: float,
                higher_is_better: bool = True) -> dict[str, float]:
    """Family-wise rates of false better/worse and false equivalence, equivalence reached, mean seeds."""
    true = np.asarray(true_diffs, dtype=float)[None, :]
    truly_better = (true > 0) if higher_is_better else (true < 0)
    truly_worse = (true < 0) if higher_is_better else (true > 0)
    false_sup = ((run.words == BETTER) & ~truly_better) | ((run.words == WORSE) & ~truly_worse)
    false_eq = (run.words == EQUIVALENT) & (np.abs(true) >= delta)
    equivalent = run.words == EQUIVALENT
    return {
        "any_false_better_or_worse": float(false_sup.any(axis=-1).mean()),
        "any_false_equivalent": float(false_eq.any(axis=-1).mean()),
        "equivalent_per_comparison": float(equivalent.mean()),
        "all_equivalent": float(equivalent.all(axis=-1).mean()),
        "all_decided": float((run.words != INCONCLUSIVE).all(axis=-1).mean()),
        "mean_seeds": float(run.seeds_used.mean()),
    }
