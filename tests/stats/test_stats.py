"""Leaderboard statistics against scipy on fixed numbers; dedupe by run key; the test-set bootstrap interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from surrogate_bench.reporting.cells import best_detectable, cells, dedupe_runs
from surrogate_bench.stats.seeds import Paired, paired_test, t_interval
from surrogate_bench.stats.bootstrap import bootstrap_interval
from surrogate_bench.taskkit.metrics import accuracy


def test_t_interval_matches_scipy() -> None:
    x = [0.61, 0.64, 0.58, 0.66]
    iv = t_interval(x)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert iv.n == 4 and iv.mean == pytest.approx(np.mean(x))
    assert iv.half_width == pytest.approx((high - low) / 2)
    assert iv.half_width == pytest.approx(3.182446305284263 * np.std(x, ddof=1) / 2)  # t_{0.975, 3}
    one = t_interval([0.5])
    assert one.n == 1 and math.isnan(one.half_width)
    assert t_interval([]).n == 0


def test_paired_test_matches_scipy_on_common_seeds() -> None:
    method = {0: 0.640, 1: 0.652, 2: 0.631, 5: 0.9}  # seed 5 has no baseline partner: left out
    base = {0: 0.625, 1: 0.641, 2: 0.618, 3: 0.2}
    res = paired_test(method, base)
    ref = sps.ttest_rel([0.640, 0.652, 0.631], [0.625, 0.641, 0.618])
    assert res.n == 3 and res.p == pytest.approx(ref.pvalue)
    assert res.diff == pytest.approx(np.mean([0.015, 0.011, 0.013]))
    assert res.detectable == (ref.pvalue < 0.05) and res.detectable


def test_paired_test_noise_is_not_detectable() -> None:
    res = paired_test({0: 0.64, 1: 0.60, 2: 0.66}, {0: 0.62, 1: 0.63, 2: 0.63})
    assert res.p == pytest.approx(sps.ttest_rel([0.64, 0.60, 0.66], [0.62, 0.63, 0.63]).pvalue)
    assert not res.detectable
    single = paired_test({0: 0.9}, {0: 0.1})
    assert single.n == 1 and not single.detectable  # one pair: never detectable
    assert not Paired(0.1, 0.001, 1).detectable and Paired(0.1, 0.001, 2).detectable


def _runs(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": "run", "key": k, "status": "ok", "profile": "quick", "task": t, "method": m,
                          "seed": s, "test_metric": v, "started": st} for k, t, m, s, v, st in rows])


def test_copies_of_one_record_count_once() -> None:
    rows = [("k0", "t", "ce", 0, 0.5, "2026-01-01"), ("k0", "t", "ce", 0, 0.5, "2026-01-01"),
            ("k0", "t", "ce", 0, 0.5, "2026-01-01"), ("k1", "t", "ce", 1, 0.7, "2026-01-01"),
            # same cell and seed under a different key (e.g. an older code version): the newest one counts
            ("old", "t", "ce", 1, 0.1, "2025-01-01")]
    df = dedupe_runs(_runs(rows))
    assert sorted(df["key"]) == ["k0", "k1"]
    assert dedupe_runs(df).equals(df)  # idempotent
    cell = cells(_runs(rows), {"t": "ce"})[("quick", "t", "ce")]
    assert cell.interval.n == 2 and cell.by_seed == {0: 0.5, 1: 0.7}


def test_cells_compare_with_baseline_and_bold_only_detectable() -> None:
    rows = []
    for s, (ce, uni, rel) in enumerate([(0.60, 0.70, 0.61), (0.62, 0.73, 0.60), (0.61, 0.71, 0.63)]):
        rows += [(f"c{s}", "t", "ce", s, ce, ""), (f"u{s}", "t", "uniloss", s, uni, ""), (f"r{s}", "t", "reloss", s, rel, "")]
    got = cells(_runs(rows), {"t": "ce"})
    uni = got[("quick", "t", "uniloss")]
    assert uni.vs_baseline is not None and uni.vs_baseline.detectable and uni.vs_baseline.diff > 0
    rel = got[("quick", "t", "reloss")]
    assert rel.vs_baseline is not None and not rel.vs_baseline.detectable
    assert got[("quick", "t", "ce")].vs_baseline is None  # the baseline itself
    task_cells = {k[2]: c for k, c in got.items()}
    assert best_detectable(task_cells, "ce", higher_is_better=True) == "uniloss"
    # the same means with one seed each: nothing is detectable, nothing is bold
    single = cells(_runs([r for r in rows if r[3] == 0]), {"t": "ce"})
    assert best_detectable({k[2]: c for k, c in single.items()}, "ce", True) is None
    # lower-is-better flips the direction: the best (lowest) mean is ce, not detectably below reloss
    assert best_detectable(task_cells, "ce", higher_is_better=False) is None


def test_grouping_keys_split_cells() -> None:
    rows = _runs([("a", "t", "ce", 0, 0.5, ""), ("b", "t", "ce", 0, 0.6, "")])
    rows["fingerprint"] = ["f1", "f2"]
    got = cells(rows, {"t": "ce"}, cell_keys=("profile", "task", "method", "fingerprint"))
    assert set(got) == {("quick", "t", "ce", "f1"), ("quick", "t", "ce", "f2")}


def test_bootstrap_interval_of_accuracy_matches_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    n = 2000
    labels = torch.randint(0, 10, (n,), generator=gen)
    logits = torch.randn(n, 10, generator=gen)
    right = torch.rand(n, generator=gen) < 0.6
    logits[right, labels[right]] += 10.0  # ~64% correct
    low, high = bootstrap_interval(accuracy, logits, labels, resamples=500)
    correct = (logits.argmax(1) == labels).double().numpy()
    ref = sps.bootstrap((correct,), np.mean, n_resamples=2000, method="percentile",
                        rng=np.random.default_rng(0)).confidence_interval
    p = correct.mean()
    normal = 1.959963984540054 * math.sqrt(p * (1 - p) / n)  # binomial normal approximation
    assert low < p < high
    assert low == pytest.approx(ref.low, abs=0.006) and high == pytest.approx(ref.high, abs=0.006)
    assert (high - low) / 2 == pytest.approx(normal, rel=0.1)
    assert bootstrap_interval(accuracy, logits, labels, resamples=50) == \
        bootstrap_interval(accuracy, logits, labels, resamples=50)  # deterministic
    assert bootstrap_interval(accuracy, logits[:1], labels[:1]) is None
