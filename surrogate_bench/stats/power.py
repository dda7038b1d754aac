"""Power and sample size of the paired t-test over seeds: detection (two-sided) and equivalence (TOST).

Every function works on the per-seed paired differences (method - baseline): ``sd`` is their standard
deviation, ``n`` the number of pairs. Detection power comes from ``statsmodels.stats.power.TTestPower``
(noncentral t, exact for normal differences). TOST power has no statsmodels function; ``tost_power`` is the
standard noncentral-t formula (see its docstring), checked against Monte Carlo in tests/stats/test_power.py.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

POWER = 0.8
SEEDS_CAP = 10_000
"""``seeds_for`` and ``seeds_for_equivalence`` search n up to this many seeds and return ``math.inf`` beyond."""

MIN_SEEDS = 2
"""The fewest pairs a t-test is defined for (one degree of freedom)."""


def detection_power(effect: float, sd: float, n: int | np.ndarray, alpha: float) -> float | np.ndarray:
    """Power of the two-sided paired t-test at level ``alpha`` to detect a true mean difference ``effect``."""
    if sd == 0:
        return np.where(np.asarray(n) >= MIN_SEEDS, 1.0 if effect != 0 else alpha, 0.0)
    return TTestPower().power(abs(effect) / sd, np.asarray(n, dtype=float), alpha, alternative="two-sided")


def tost_power(diff: float, sd: float, n: int | np.ndarray, delta: float, alpha: float) -> float | np.ndarray:
    """Power of TOST at level ``alpha`` to show equivalence within ±delta when the true difference is ``diff``.

    TOST rejects when T_low = (d̄ + δ)/(s/√n) > c and T_upp = (d̄ − δ)/(s/√n) < −c, c = t_{1−α, n−1}. Each of
    T_low, T_upp is noncentral t with n − 1 degrees of freedom and noncentrality (diff ± δ)·√n/σ, so
    P(both) ≥ P(T_upp < −c) − P(T_low ≤ c) (the standard formula; e.g. Phillips 1990, PowerTOST's "nct"
    method), clipped at 0. It ignores that both share s, so it is a slight *under*-estimate at small n
    (seeds needed from it err on the safe side) and converges to the exact power as n grows.
    """
    n_arr = np.asarray(n, dtype=float)
    df = np.maximum(n_arr - 1, 1)
    if sd == 0:
        return np.where(n_arr >= MIN_SEEDS, 1.0 if abs(diff) < delta else 0.0, 0.0)
    c = stats.t.ppf(1 - alpha, df)
    root_n = np.sqrt(n_arr) / sd
    power = stats.nct.cdf(-c, df, (diff - delta) * root_n) - stats.nct.cdf(c, df, (diff + delta) * root_n)
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
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.squeeze(effect)) * sd
