"""Family verdicts: statistics against scipy/statsmodels on fixed numbers, and one hand-built case per word."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from surrogate_bench.stats.power import seeds_for, seeds_for_equivalence
from surrogate_bench.stats.verdicts import WORDS, Verdict, decide_family, holm, paired_tests

BASELINE = np.array([0.612, 0.604, 0.618, 0.609, 0.615])
METHODS = {
    "up": np.array([0.631, 0.622, 0.640, 0.626, 0.633]),
    "same": np.array([0.613, 0.603, 0.619, 0.608, 0.616]),
    "noisy": np.array([0.640, 0.590, 0.630, 0.600, 0.626]),
}
DIFFS = {name: values - BASELINE for name, values in METHODS.items()}
DELTA = 0.005


def test_paired_statistics_match_scipy_and_statsmodels() -> None:
    for name, values in METHODS.items():
        d = values - BASELINE
        t = paired_tests(d, DELTA)
        assert t.n == 5 and t.diff == pytest.approx(d.mean()) and t.sd == pytest.approx(d.std(ddof=1))
        assert t.p_superiority == pytest.approx(stats.ttest_rel(values, BASELINE).pvalue, rel=1e-12)
        low, high = stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d))
        assert (t.ci_low, t.ci_high) == (pytest.approx(low), pytest.approx(high))
        # TOST: on the raw pairs, on the differences against zeros and the one-sample form agree
        on_pairs = ttost_paired(values, BASELINE, -DELTA, DELTA)[0]
        one_sample = DescrStatsW(d).ttost_mean(-DELTA, DELTA)[0]
        assert t.p_equivalence == pytest.approx(on_pairs, rel=1e-12) == pytest.approx(one_sample, rel=1e-12)
        # ... and it is the larger of the two one-sided scipy t-tests
        lower = stats.ttest_1samp(d, -DELTA, alternative="greater").pvalue
        upper = stats.ttest_1samp(d, DELTA, alternative="less").pvalue
        assert t.p_equivalence == pytest.approx(max(lower, upper), rel=1e-10)


def test_family_is_holm_adjusted_with_multipletests() -> None:
    verdicts = decide_family(DIFFS, DELTA)
    p_sup = [paired_tests(d, DELTA).p_superiority for d in DIFFS.values()]
    p_eq = [paired_tests(d, DELTA).p_equivalence for d in DIFFS.values()]
    for name, sup, eq in zip(DIFFS, multipletests(p_sup, method="holm")[1], multipletests(p_eq, method="holm")[1]):
        assert verdicts[name].p_superiority_adjusted == pytest.approx(sup)
        assert verdicts[name].p_equivalence_adjusted == pytest.approx(eq)
    assert {name: v.word for name, v in verdicts.items()} == {"up": "better", "same": "equivalent",
                                                              "noisy": "inconclusive"}
    assert all(isinstance(v, Verdict) and v.word in WORDS for v in verdicts.values())


def test_lower_is_better_flips_the_sign() -> None:
    assert decide_family(DIFFS, DELTA, higher_is_better=False)["up"].word == "worse"
    worse = {name: -d for name, d in DIFFS.items()}
    assert decide_family(worse, DELTA)["up"].word == "worse"
    assert decide_family(worse, DELTA, higher_is_better=False)["up"].word == "better"


def test_holm_can_undo_a_lone_significant_result() -> None:
    d = np.array([0.004, 0.001, 0.006, 0.002, 0.003])  # p ~ 0.01 alone
    alone = decide_family({"m": d}, 0.001)["m"]
    assert alone.word == "better"
    family = {"m": d, **{f"null{i}": np.array([0.01, -0.01, 0.02, -0.02, 0.0]) * (i + 1) for i in range(5)}}
    crowded = decide_family(family, 0.001)["m"]
    assert crowded.p_superiority == pytest.approx(alone.p_superiority)
    assert crowded.p_superiority_adjusted == pytest.approx(6 * alone.p_superiority)
    assert crowded.word == "inconclusive"


def test_a_lower_look_level_turns_a_verdict_inconclusive() -> None:
    v = decide_family(DIFFS, DELTA)["same"]
    assert v.word == "equivalent" and v.alpha_level == 0.05 and v.decided_at == 5
    tight = decide_family(DIFFS, DELTA, alpha_level=v.p_equivalence_adjusted / 2)["same"]
    assert tight.word == "inconclusive" and tight.decided_at is None and tight.alpha == 0.05
    with pytest.raises(ValueError):
        decide_family(DIFFS, DELTA, alpha_level=0.1)


def test_inconclusive_cells_say_how_many_seeds_would_decide() -> None:
    verdicts = decide_family(DIFFS, DELTA)
    noisy = verdicts["noisy"]
    assert noisy.word == "inconclusive" and abs(noisy.diff) >= DELTA
    assert noisy.seeds_needed == seeds_for(abs(noisy.diff), noisy.sd, 0.05 / 3)
    assert noisy.seeds_needed > 5
    assert verdicts["up"].seeds_needed is None and verdicts["up"].seeds_needed_label == ""
    # |mean| < delta: the seeds TOST needs to show equivalence at the observed difference and spread
    near = {"near": np.array([0.002, -0.006, 0.009, -0.004, 0.004])}
    v = decide_family(near, DELTA)["near"]
    assert v.word == "inconclusive" and abs(v.diff) < DELTA
    assert v.seeds_needed == seeds_for_equivalence(v.diff, v.sd, DELTA, 0.05)
    # a hopeless cell reports "> cap"
    far = decide_family({"far": 0.00499 + np.array([-0.02, 0.02, 0.01, -0.01, 0.0])}, DELTA)["far"]
    assert far.seeds_needed == math.inf and far.seeds_needed_label == "> 10000"


def test_degenerate_comparisons() -> None:
    verdicts = decide_family({"one": [0.01], "none": [], "flat_up": [0.002] * 3, "flat_zero": [0.0, 0.0],
                              "flat_far": [-0.01] * 2}, DELTA)
    assert verdicts["one"].word == "inconclusive" and math.isnan(verdicts["one"].p_superiority)
    assert verdicts["one"].seeds_needed is None and verdicts["one"].diff == 0.01
    assert verdicts["none"].word == "inconclusive" and verdicts["none"].n == 0 and math.isnan(verdicts["none"].diff)
    assert verdicts["flat_up"].word == "better" and verdicts["flat_up"].ci_low == verdicts["flat_up"].ci_high
    assert verdicts["flat_zero"].word == "equivalent" and verdicts["flat_zero"].p_superiority == 1.0
    assert verdicts["flat_far"].word == "worse" and verdicts["flat_far"].p_equivalence == 1.0
    assert decide_family({"zero_one": [0.0]}, DELTA)["zero_one"].word == "inconclusive"  # n >= 2 needed


def test_degenerate_comparisons_still_count_in_holm() -> None:
    assert list(holm([0.01, math.nan, 0.02])) == pytest.approx(list(multipletests([0.01, 1.0, 0.02], method="holm")[1]))
    d = np.array([0.004, 0.001, 0.006, 0.002, 0.003])
    with_single = decide_family({"m": d, "single": [0.5]}, 0.001)["m"]
    assert with_single.p_superiority_adjusted == pytest.approx(2 * with_single.p_superiority)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        decide_family(DIFFS, 0.0)
    with pytest.raises(ValueError):
        decide_family({"nan": [0.1, math.nan, 0.2]}, DELTA)
    with pytest.raises(ValueError):
        decide_family(DIFFS, DELTA, alpha=1.5)
    assert decide_family({}, DELTA) == {}
