"""Probe pools from three baseline runs: states of seeds 0, 1, 2, two-stage (run, then state) resamples, and
degenerate intervals labelled instead of printed as [-1, -1]."""

from __future__ import annotations

import math

import numpy as np
import pytest

from surrogate_bench.probes.stats import (TOO_FEW, cluster_mean, cluster_resamples, rank_stats,
                                          state_variance_share)


def test_two_stage_resamples_draw_runs_then_states_within_them() -> None:
    runs = np.repeat([0, 1, 2], 4)  # 12 states, 4 per run
    idx = cluster_resamples(12, 500, seed=3, runs=runs)
    assert idx.shape == (500, 12)
    blocks = runs[idx].reshape(500, 3, 4)
    assert (blocks == blocks[:, :, :1]).all()  # each block of 4 slots draws states of one run
    assert len(np.unique(blocks[:, :, 0])) == 3
    assert (blocks[:, :, 0] == blocks[:, :1, 0]).all(axis=1).mean() > 0.05  # whole resamples of a single run occur


def test_run_clustered_interval_covers_run_to_run_variance() -> None:
    """Three runs whose state means differ by run: the run-then-state interval is wider than the state one."""
    rng = np.random.default_rng(0)
    runs_of_state = np.repeat([0, 1, 2], 8)
    offset = np.array([-1.0, 0.0, 1.0])[runs_of_state]
    clusters = np.repeat(np.arange(24), 5)
    values = offset[clusters] + 0.1 * rng.normal(size=len(clusters))
    per_batch_run = runs_of_state[clusters]
    flat = cluster_mean(values, clusters)
    two = cluster_mean(values, clusters, runs=per_batch_run)
    assert two["n_runs"] == 3 and flat["n_runs"] == 1
    assert two["ci_high"] - two["ci_low"] > 1.5 * (flat["ci_high"] - flat["ci_low"])


def test_degenerate_intervals_are_labelled() -> None:
    few = rank_stats(np.arange(12.0), -np.arange(12.0) + np.tile([0, 0.5, 0.2, 0.1], 3), np.repeat(np.arange(3), 4))
    assert few["n_states"] == 3 and math.isnan(few["spearman_ci_low"]) and few["spearman_ci_note"] == TOO_FEW
    # monotone state means on 6 states: every resample's between-state rho is -1 -> labelled, not [-1, -1]
    s, j = np.meshgrid(np.arange(6), np.arange(10), indexing="ij")
    rng = np.random.default_rng(1)
    loss = (10.0 * s + rng.normal(size=s.shape)).ravel()
    metric = (-s + 0.01 * rng.normal(size=s.shape)).ravel()
    res = rank_stats(loss, metric, s.ravel())
    assert res["spearman_between"] == pytest.approx(-1.0) and res["spearman_between_ci_note"] == TOO_FEW
    assert math.isnan(res["spearman_between_ci_low"]) and not math.isnan(res["spearman_ci_low"])
    assert cluster_mean(np.arange(6.0), np.repeat([0, 1], 3), min_states=5)["ci_note"] == TOO_FEW


def test_old_records_degenerate_interval_reads_too_few_states() -> None:
    from surrogate_bench.probe_report.section import _ci

    assert _ci({"x": -1.0, "x_ci_low": -1.0, "x_ci_high": -1.0}, "x") == "-1.000 (too few states for an interval)"
    assert _ci({"x": -0.5, "x_ci_note": TOO_FEW}, "x") == "-0.500 (too few states for an interval)"
    assert _ci({"x": -0.5, "x_ci_low": -0.6, "x_ci_high": -0.4}, "x") == "-0.500 [-0.600, -0.400]"


def test_state_variance_share_by_hand() -> None:
    metric = np.array([1.0, 3.0, 5.0, 7.0])
    clusters = np.array([0, 0, 1, 1])  # state means 2 and 6, grand mean 4: between SS 16, total SS 20
    assert state_variance_share(metric, clusters) == pytest.approx(0.8)


def test_pool_spans_three_baseline_seeds(run_options) -> None:
    """The smoke pool: states of the seeds 0, 1, 2 baseline runs (numbered run by run), the probe's intervals
    resample runs then states, and the record names the pool file's size, sha256 and how to rebuild it."""
    import torch

    from surrogate_bench.probes.pool import POOL_SEEDS, STATES
    from surrogate_bench.probes.probe import run_probe

    rec = run_probe("mnist-ap", "ce", "smoke", run_options)
    assert rec["status"] == "ok" and tuple(rec["pool"]["runs"]) == POOL_SEEDS == (0, 1, 2)
    per_run = rec["pool"]["states"] // 3
    assert 2 <= per_run <= STATES and rec["pool"]["state_run"] == [0] * per_run + [1] * per_run + [2] * per_run
    assert rec["pool"]["state_step"][:per_run] == rec["pool"]["state_step"][per_run:2 * per_run]
    assert rec["n_runs"] == 3 and rec["n_states"] == rec["pool"]["states"]
    assert len({p[2] for p in rec["points"]}) == rec["pool"]["states"]
    assert rec["protocol_version"] == 2 and rec["probe_version"] == 3
    assert rec["probe_code_fingerprint"] == rec["provenance"]["probe_code_fingerprint"]
    assert 0 <= rec["state_variance_share"] <= 1 and rec["headline"] in ("spearman", "spearman_within")
    pool = next((run_options.results_dir / "pools").glob("*.pt"))
    assert rec["pool_file"]["bytes"] == pool.stat().st_size and rec["pool_file"]["sha256"] == rec["pool_sha256"]
    assert "probe --task mnist-ap" in rec["pool_file"]["regenerate"]
    state = torch.load(pool, weights_only=True)
    assert state["state_run"].tolist() == rec["pool"]["state_run"]
    # different seeds train different models: the runs' final states differ
    w = state["weights"]
    assert not torch.equal(w[per_run - 1][next(iter(w[0]))], w[2 * per_run - 1][next(iter(w[0]))])
