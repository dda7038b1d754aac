"""Probe statistics: the state (cluster) bootstrap against hand computations, within/between-state rho on
pools with known structure, paired differences, rank correlations against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from surrogate_bench.probes.stats import (cluster_mean, cluster_resamples, percentile_interval, rank_stats,
                                          rowwise_spearman)


def test_cluster_bootstrap_of_a_mean_by_hand() -> None:
    """Two states, batches [0.1, 0.3] and [0.5, 0.7, 0.9]: a resample draws (0,0), (0,1), (1,0) or (1,1),
    each with probability 1/4, so the 2.5% / 97.5% percentiles are the (0,0) and (1,1) means: 0.2 and 0.7.
    A batch bootstrap would give a much narrower interval around 0.5."""
    values = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    clusters = np.array([0, 0, 1, 1, 1])
    res = cluster_mean(values, clusters)
    assert res["mean"] == pytest.approx(0.5)
    assert res["ci_low"] == pytest.approx(0.2) and res["ci_high"] == pytest.approx(0.7)
    assert res["n_states"] == 2 and res["n_batches"] == 5


def test_cluster_bootstrap_replicates_match_a_loop() -> None:
    """Every replicate pools the batches of the drawn states (duplicates included), as a loop computes it."""
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(5), [3, 4, 2, 5, 4])
    loss, metric = rng.normal(size=len(clusters)), rng.normal(size=len(clusters))
    metric[clusters == 2] += 2
    idx = cluster_resamples(5, 200, seed=7)
    by_state = [np.flatnonzero(clusters == c) for c in range(5)]
    rho_loop, mean_loop = [], []
    for row in idx:
        take = np.concatenate([by_state[c] for c in row])
        rho_loop.append(stats.spearmanr(loss[take], metric[take]).statistic)
        mean_loop.append(metric[take].mean())
    res = rank_stats(loss, metric, clusters, n_resamples=200, seed=7)
    lo, hi = percentile_interval(np.asarray(rho_loop))
    assert res["spearman_ci_low"] == pytest.approx(lo, abs=1e-12)
    assert res["spearman_ci_high"] == pytest.approx(hi, abs=1e-12)
    m = cluster_mean(metric, clusters, n_resamples=200, seed=7)
    assert (m["ci_low"], m["ci_high"]) == pytest.approx(percentile_interval(np.asarray(mean_loop)), abs=1e-12)


def test_within_and_between_on_a_known_structure() -> None:
    """Inside every state the loss falls as the metric rises (rho_within = -1), while the state means rise
    together (rho_between = +1): the overall rho is dominated by the states and positive."""
    s, j = np.meshgrid(np.arange(6), np.arange(10), indexing="ij")
    metric = (s + 0.05 * j).ravel()
    loss = (10.0 * s - j).ravel()
    res = rank_stats(loss, metric, s.ravel())
    assert res["spearman_within"] == pytest.approx(-1.0)
    # every resample gives -1: a degenerate interval, labelled instead of printed as [-1, -1]
    assert math.isnan(res["spearman_within_ci_low"]) and math.isnan(res["spearman_within_ci_high"])
    assert res["spearman_within_ci_note"] == "too few states for an interval"
    assert res["spearman_between"] == pytest.approx(1.0)
    assert res["spearman"] > 0.8
    assert res["n_states"] == 6 and res["n_batches"] == 60


def test_within_state_mean_by_hand() -> None:
    """rho_within is the plain mean of scipy's rho inside each state."""
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(4), 12)
    loss = rng.normal(size=48)
    metric = -loss * np.repeat([0.2, 1.0, 3.0, 0.0], 12) + rng.normal(size=48)
    want = np.mean([stats.spearmanr(loss[clusters == c], metric[clusters == c]).statistic for c in range(4)])
    means = [(loss[clusters == c].mean(), metric[clusters == c].mean()) for c in range(4)]
    between = stats.spearmanr(*zip(*means)).statistic
    res = rank_stats(loss, metric, clusters)
    assert res["spearman_within"] == pytest.approx(want, abs=1e-12)
    assert res["spearman_between"] == pytest.approx(between, abs=1e-12)
    assert res["spearman"] == pytest.approx(stats.spearmanr(loss, metric).statistic, abs=1e-12)
    assert res["kendall"] == pytest.approx(stats.kendalltau(loss, metric).statistic, abs=1e-12)


def test_paired_difference() -> None:
    """Against itself the paired delta is exactly 0 in every resample; a loss that is minus the metric beats
    a noisy one, with an interval below 0."""
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(8), 10)
    metric = rng.uniform(size=80)
    noisy = -metric + rng.normal(scale=0.5, size=80)
    same = rank_stats(noisy, metric, clusters, baseline=noisy)
    for name in ("spearman", "spearman_within", "spearman_between"):
        assert same[f"delta_{name}"] == 0 and same[f"delta_{name}_ci_low"] == same[f"delta_{name}_ci_high"] == 0
    better = rank_stats(-metric, metric, clusters, baseline=noisy)
    assert better["delta_spearman"] == pytest.approx(-1 - stats.spearmanr(noisy, metric).statistic)
    assert better["delta_spearman_ci_high"] < 0 and better["delta_spearman_within_ci_high"] < 0


@pytest.mark.parametrize("trial", range(5))
def test_rowwise_spearman_matches_scipy_with_padding(trial: int) -> None:
    rng = np.random.default_rng(trial)
    x = np.round(rng.normal(size=(6, 30)), 1)
    y = np.round(x * rng.uniform(-1, 1, size=(6, 1)) + rng.normal(size=(6, 30)), 1)
    lengths = rng.integers(3, 31, size=6)
    for r, n in enumerate(lengths):
        x[r, n:] = np.nan
    got = rowwise_spearman(x, y)
    for r, n in enumerate(lengths):
        assert got[r] == pytest.approx(stats.spearmanr(x[r, :n], y[r, :n]).statistic, abs=1e-12)


def test_degenerate_pools_are_nan_not_errors() -> None:
    one_state = rank_stats(np.arange(10.0), -np.arange(10.0), np.zeros(10))
    assert one_state["spearman"] == pytest.approx(-1) and math.isnan(one_state["spearman_ci_low"])
    constant = rank_stats(np.ones(12), np.arange(12.0), np.repeat(np.arange(3), 4))
    assert math.isnan(constant["spearman"]) and math.isnan(constant["spearman_within"])
    empty = cluster_mean(np.array([np.nan]), np.array([0]))
    assert math.isnan(empty["mean"]) and empty["n_batches"] == 0


def test_probe_section_renders_old_and_new_records(tmp_path) -> None:
    """An old-construction record (no pool summary, no within-state statistics) renders with "—" cells and
    a note; a newer record of the same method replaces it; a descent record gets its own table."""
    from surrogate_bench.reporting.leaderboard import render
    from surrogate_bench.store.records import write_record

    base = {"kind": "probe", "status": "ok", "task": "mnist-ap", "profile": "quick", "metric_name": "AP", "environment": {},
            "method_params": {}, "points": [[0.1, 0.9], [0.2, 0.5]], "kendall": -0.5, "n_batches": 2}
    write_record(tmp_path / "probes/quick/mnist-ap/ce-aaaaaaaaaa.json",
                 {**base, "key": "a" * 20, "method": "ce", "spearman": -0.6, "spearman_ci_low": -0.7,
                  "spearman_ci_high": -0.5, "pool_sha256": "1" * 64})
    old_only = render(tmp_path)
    assert "earlier construction" in old_only and "| -0.600 [-0.700, -0.500] | —" in old_only
    pool = {"construction": 2, "baseline": "ce", "states": 2, "state_step": [5, 10], "total_steps": 10,
            "state_metric": [0.61, 0.93], "batches_per_state": [1, 1], "batch_size": 128, "split": "val",
            "metric_min": 0.1, "metric_max": 0.95}
    write_record(tmp_path / "probes/quick/mnist-ap/ce-bbbbbbbbbb.json",
                 {**base, "key": "b" * 20, "method": "ce", "spearman": -0.4, "spearman_ci_low": -0.6,
                  "spearman_ci_high": -0.2, "spearman_within": -0.3, "baseline": "ce", "pool": pool,
                  "pool_sha256": "2" * 64, "points": [[0.1, 0.9, 0], [0.2, 0.5, 1]]})
    write_record(tmp_path / "descent/quick/mnist-ap/ce-cccccccccc.json",
                 {**base, "kind": "descent", "key": "c" * 20, "method": "ce", "baseline": "ce", "improvement": 0.012,
                  "improvement_ci_low": 0.004, "improvement_ci_high": 0.02, "fd_cosine": 0.1, "n_states": 2})
    md = render(tmp_path)
    assert "earlier construction" not in md and "-0.700" not in md and "| -0.300 " in md
    assert "per-state AP on the clean val split **0.610–0.930**" in md and "-0.400 [-0.600, -0.200]" in md
    # an earlier descent record (no held-out halves, no length choice): its mean over lengths is not shown
    assert "#### Descent probe (`quick`)" in md and "+0.0120" not in md and "— (earlier probe)" in md
    assert "records of the earlier descent probe" in md
