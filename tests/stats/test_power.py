"""Power and seeds: detection against statsmodels' TTestPower, the TOST formula against Monte Carlo."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from surrogate_bench.stats.power import (SEEDS_CAP, detection_power, minimal_detectable_difference, seeds_for,
                                         seeds_for_equivalence, tost_power)


@pytest.mark.parametrize("sd, n, alpha", [(0.004, 5, 0.05), (0.01, 12, 0.05 / 3), (1.0, 3, 0.01)])
def test_minimal_detectable_difference_matches_ttestpower(sd: float, n: int, alpha: float) -> None:
    mdd = minimal_detectable_difference(sd, n, alpha)
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
    assert detection_power(mdd, sd, n, alpha) == pytest.approx(0.8, abs=1e-9)
    if TTestPower().power(float(effect), n, alpha, alternative="two-sided") == pytest.approx(0.8, abs=1e-6):
        assert mdd == pytest.approx(float(effect) * sd, rel=1e-5)  # where solve_power converges, the same


def test_minimal_detectable_difference_edges() -> None:
    assert math.isnan(minimal_detectable_difference(0.01, 1, 0.05))
    assert math.isnan(minimal_detectable_difference(math.nan, 5, 0.05))
    assert minimal_detectable_difference(0.0, 5, 0.05) == 0.0


@pytest.mark.parametrize("delta, sd, alpha", [(0.005, 0.004, 0.05), (0.001, 0.002, 0.05 / 4), (1.0, 1.0, 0.05)])
def test_seeds_for_is_the_smallest_n_with_80_percent_power(delta: float, sd: float, alpha: float) -> None:
    n = seeds_for(delta, sd, alpha)
    power = TTestPower()
    assert power.power(delta / sd, n, alpha, alternative="two-sided") >= 0.8
    assert power.power(delta / sd, n - 1, alpha, alternative="two-sided") < 0.8
    nobs = power.solve_power(effect_size=delta / sd, nobs=None, alpha=alpha, power=0.8, alternative="two-sided")
    assert n == math.ceil(float(nobs))


def test_seeds_for_cap_and_edges() -> None:
    assert seeds_for(1e-4, 1.0, 0.05) == math.inf  # ~ 8e8 seeds
    assert seeds_for(0.01, 0.0, 0.05) == 2
    assert seeds_for(1.0, 1e-6, 0.05) == 2  # the t-test needs two pairs
    assert SEEDS_CAP == 10_000
    with pytest.raises(ValueError):
        seeds_for(0.0, 1.0, 0.05)
    with pytest.raises(ValueError):
        seeds_for(1.0, -1.0, 0.05)


def test_detection_power_is_ttestpower_and_finite_where_it_is_nan() -> None:
    n = np.arange(2, 60)
    for effect in (0.3, 2.0, 6.0, 7.32):  # TTestPower is NaN for some n at the larger effects (nct.cdf)
        ours = detection_power(effect, 1.0, n, 0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            library = TTestPower().power(effect, n, 0.01, alternative="two-sided")
        finite = ~np.isnan(library)
        assert np.all((0 <= ours) & (ours <= 1))
        assert np.allclose(ours[finite], library[finite], atol=1e-12)
        assert np.all(np.diff(ours) >= -1e-12)  # power rises with n


def _tost_power_monte_carlo(diff: float, sd: float, n: int, delta: float, alpha: float,
                            reps: int, rng: np.random.Generator) -> float:
    """TOST rejection rate on simulated normal differences (the same two one-sided t-tests as ttost_paired)."""
    d = rng.normal(diff, sd, size=(reps, n))
    se = d.std(axis=1, ddof=1) / math.sqrt(n)
    c = stats.t.ppf(1 - alpha, n - 1)
    mean = d.mean(axis=1)
    return float(((mean + delta) / se > c).__and__((mean - delta) / se < -c).mean())


@pytest.mark.parametrize("diff, sd, n, delta, alpha", [
    (0.0, 1.0, 10, 1.0, 0.05),
    (0.25, 0.5, 6, 1.0, 0.05 / 3),
    (0.002, 0.004, 20, 0.005, 0.05 / 3),
    (-0.5, 1.0, 30, 1.0, 0.05),
])
def test_tost_power_against_monte_carlo(diff: float, sd: float, n: int, delta: float, alpha: float) -> None:
    reps = 40_000
    mc = _tost_power_monte_carlo(diff, sd, n, delta, alpha, reps, np.random.default_rng(7))
    formula = float(tost_power(diff, sd, n, delta, alpha))
    se = math.sqrt(max(mc * (1 - mc), 0.01) / reps)
    assert formula <= mc + 4 * se  # a lower bound of the exact power...
    assert formula >= mc - 4 * se - 0.03  # ...and close to it (within 0.03) at these sizes
    print(f"TOST power diff={diff} sd={sd} n={n}: formula {formula:.4f}, Monte Carlo {mc:.4f}")


def test_tost_power_formula_is_a_lower_bound_at_tiny_n() -> None:
    mc = _tost_power_monte_carlo(0.0, 1.0, 4, 1.0, 0.05, 40_000, np.random.default_rng(5))
    formula = float(tost_power(0.0, 1.0, 4, 1.0, 0.05))
    assert formula <= mc and mc > 0.15  # 0 against ~0.20: the formula is loose where power is low
    print(f"TOST power diff=0 sd=1 n=4: formula {formula:.4f}, Monte Carlo {mc:.4f}")


def test_seeds_for_equivalence_is_the_smallest_n_with_80_percent_tost_power() -> None:
    n = seeds_for_equivalence(0.001, 0.003, 0.005, 0.05 / 3)
    assert tost_power(0.001, 0.003, n, 0.005, 0.05 / 3) >= 0.8 > tost_power(0.001, 0.003, n - 1, 0.005, 0.05 / 3)
    mc = _tost_power_monte_carlo(0.001, 0.003, n, 0.005, 0.05 / 3, 20_000, np.random.default_rng(3))
    assert mc >= 0.8 - 4 * math.sqrt(0.16 / 20_000)  # the formula's n really has 80% power
    assert seeds_for_equivalence(0.005, 0.003, 0.005, 0.05) == math.inf  # on the margin: never
    assert seeds_for_equivalence(0.0049, 1.0, 0.005, 0.05) == math.inf  # beyond the cap
    assert seeds_for_equivalence(0.0, 0.0, 0.005, 0.05) == 2
