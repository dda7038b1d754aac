"""Power and sample size of the paired t-test over seeds: detection (two-sided) and equivalence (TOST).

Every function works on the per-seed paired differences (method - baseline): ``sd`` is their standard
deviation, ``n`` the number of pairs. Detection power comes from ``statsmodels.stats.power.TTestPower``
(noncentral t, exact for normal differences). TOST power has no statsmodels function; ``tost_power`` is the
standard noncentral-t formula (see its docstring), checked against Monte Carlo in tests/stats/test_power.py.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.power import TTestPower

POWER = 0.8
SEEDS_CAP = 10_000
"""``seeds_for`` and ``seeds_for_equivalence`` search n up to this many seeds and return ``math.inf`` beyond."""

MIN_SEEDS = 2
"""The fewest pairs a t-test is defined for (one degree of freedom)."""


def _nct_below(x: np.ndarray, df: np.ndarray, ncp: np.ndarray) -> np.ndarray:
    """P(T < x) for noncentral t, as sf(−x; −ncp): scipy 1.17's ``nct.cdf`` returns NaN on wide ranges."""
    return stats.nct.sf(-x, df, -ncp)


def detection_power(effect: float, sd: float, n: int | np.ndarray, alpha: float) -> float | np.ndarray:
    """Power of the two-sided paired t-test at level ``alpha`` to detect a true mean difference ``effect``.

    ``TTestPower.power``; where it is NaN (it calls scipy's ``nct.cdf``, see ``_nct_below``) the same
    noncentral-t sum P(T > c) + P(T < −c) from ``nct.sf``.
    """
    n_arr = np.asarray(n, dtype=float)
    if sd == 0:
        return np.where(n_arr >= MIN_SEEDS, 1.0 if effect != 0 else alpha, 0.0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        power = np.asarray(TTestPower().power(abs(effect) / sd, n_arr, alpha, alternative="two-sided"), dtype=float)
        if np.isnan(power).any():
            df = n_arr - 1
            c = stats.t.isf(alpha / 2, df)
            ncp = abs(effect) / sd * np.sqrt(n_arr)
            power = np.where(np.isnan(power), stats.nct.sf(c, df, ncp) + _nct_below(-c, df, ncp), power)
    return power


def tost_power(diff: float, sd: float, n: int | np.ndarray, delta: float, alpha: float) -> float | np.ndarray:
    """Power of TOST at level ``alpha`` to show equivalence within ±delta when the true difference is ``diff``.

    TOST rejects when T_low = (d̄ + δ)/(s/√n) > c and T_upp = (d̄ − δ)/(s/√n) < −c, c = t_{1−α, n−1}. Each of
    T_low, T_upp is noncentral t with n − 1 degrees of freedom and noncentrality (diff ± δ)·√n/σ, so
    P(both) ≥ P(T_upp < −c) − P(T_low ≤ c) (the standard formula; e.g. Phillips 1990, PowerTOST's "nct"
    method), clipped at 0. It ignores that both share s, so it *under*-estimates the power: badly where
    the power is low at tiny n (n = 4, δ = σ: 0 against 0.20), hardly near 80% (within Monte Carlo error
    at n = 6 … 30 in tests/stats/test_power.py), so seeds needed from it err, if at all, on the safe side.
    """
    n_arr = np.asarray(n, dtype=float)
    df = np.maximum(n_arr - 1, 1)
    if sd == 0:
        return np.where(n_arr >= MIN_SEEDS, 1.0 if abs(diff) < delta else 0.0, 0.0)
    c = stats.t.ppf(1 - alpha, df)
    root_n = np.sqrt(n_arr) / sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        power = _nct_below(-c, df, (diff - delta) * root_n) - (1 - stats.nct.sf(c, df, (diff + delta) * root_n))
    return np.where(n_arr >= MIN_SEEDS, np.clip(power, 0.0, 1.0), 0.0)


def smallest_n(power_at: Callable[[np.ndarray], np.ndarray], target: float = POWER,
               cap: int = SEEDS_CAP) -> int | float:
    """Smallest n in [2, cap] with ``power_at(n) >= target`` (``math.inf`` if none), power rising with n.

    Doubling brackets the answer, then every n inside the bracket is evaluated at once, so the result is
    the exact smallest integer even where power is not quite monotone within the bracket.
    """
    low, high = MIN_SEEDS - 1, MIN_SEEDS
    while power_at(np.array([high]))[0] < target:
        if high >= cap:
            return math.inf
        low, high = high, min(2 * high, cap)
    candidates = np.arange(low + 1, high + 1)
    return int(candidates[np.argmax(power_at(candidates) >= target)])


def seeds_for(delta: float, sd: float, alpha: float, power: float = POWER) -> int | float:
    """Seeds (pairs) a two-sided paired t-test at ``alpha`` needs to detect a true difference ``delta``."""
    if not delta > 0 or not sd >= 0:
        raise ValueError(f"seeds_for needs delta > 0 and sd >= 0, got delta={delta}, sd={sd}")
    return smallest_n(lambda n: detection_power(delta, sd, n, alpha), power)


def seeds_for_equivalence(diff: float, sd: float, delta: float, alpha: float,
                          power: float = POWER) -> int | float:
    """Seeds TOST at ``alpha`` needs to show equivalence within ±delta when the true difference is ``diff``."""
    if not delta > 0 or not sd >= 0:
        raise ValueError(f"seeds_for_equivalence needs delta > 0 and sd >= 0, got delta={delta}, sd={sd}")
    if abs(diff) >= delta:
        return math.inf
    return smallest_n(lambda n: tost_power(diff, sd, n, delta, alpha), power)


def minimal_detectable_difference(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """Smallest true difference a two-sided paired t-test over ``n`` seeds detects with the given power."""
    if n < MIN_SEEDS or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    # TTestPower.solve_power stops short at tiny n (n = 3, alpha = 0.01: power 0.787, since its nct.cdf
    # is NaN there), so the root of detection_power is found with brentq; doubling brackets the effect.
    def gap(effect: float) -> float:
        return float(detection_power(effect, 1.0, n, alpha)) - power

    high = 1.0
    while gap(high) < 0:
        high *= 2
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-12)) * sd
