"""Probe validity: the correlation between a probe statistic and the training Δ on fixed numbers against scipy,
its bootstrap over methods and seeds, the per-task sentence, and a leaderboard section that never pools probe
records of different probe-code fingerprints or protocol versions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from surrogate_bench.probe_report import validity as pv

# fixed numbers: five methods' delta rho and their per-seed training differences (method - baseline)
DELTA_RHO = {"ce": 0.0, "a": -0.20, "b": -0.05, "c": 0.10, "d": 0.30}
TRAIN = {"ce": [0.0, 0.0, 0.0], "a": [0.010, 0.012, 0.008], "b": [0.004, 0.001, 0.003],
         "c": [-0.002, 0.001, -0.004], "d": [-0.020, -0.015, -0.025]}


def _runs() -> pd.DataFrame:
    rows = [{"task": "t", "method": m, "seed": s, "status": "ok", "test_metric": 0.9 + d, "profile": "quick",
             "protocol": 2} for m, ds in TRAIN.items() for s, d in enumerate(ds)]
    rows.append({"task": "t", "method": "e", "seed": 7, "status": "ok", "test_metric": 0.5, "profile": "quick",
                 "protocol": 2})  # no common seed with the baseline: no paired difference
    return pd.DataFrame(rows)


def test_paired_differences_are_over_common_seeds() -> None:
    diffs = pv.paired_differences(_runs(), "t", "ce")
    assert set(diffs) == set(TRAIN)
    for m, ds in TRAIN.items():
        assert diffs[m] == pytest.approx(ds)


def test_correlation_on_fixed_numbers_matches_scipy() -> None:
    diffs = pv.paired_differences(_runs(), "t", "ce")
    c = pv.correlate(DELTA_RHO, diffs, "Δρ overall", -1)
    methods = sorted(DELTA_RHO)
    want = stats.spearmanr([DELTA_RHO[m] for m in methods], [np.mean(TRAIN[m]) for m in methods]).statistic
    assert c.rho == pytest.approx(want, abs=1e-12) and c.rho == pytest.approx(-1.0)
    assert c.n_methods == 5 and c.methods == methods and c.note is None
    assert c.ci_low <= c.rho <= c.ci_high <= 1 and c.ci_low >= -1
    assert c.verdict in ("predicts", "no")  # a perfect -1 on five methods; the interval decides the word
    # the bootstrap by hand: methods with replacement, then each drawn method's seeds with replacement
    rng = np.random.default_rng(0)
    n = 400
    drawn = rng.integers(0, 5, size=(n, 5))
    ys = np.empty((n, 5))
    for j, m in enumerate(methods):
        d = np.asarray(TRAIN[m])
        ys[:, j] = d[rng.integers(0, 3, size=(n, 3))].mean(1)
    x = np.asarray([DELTA_RHO[m] for m in methods])
    loop = []
    for b in range(n):
        xb, yb = x[drawn[b]], ys[b, drawn[b]]
        loop.append(stats.spearmanr(xb, yb).statistic if np.ptp(xb) and np.ptp(yb) else np.nan)
    c400 = pv.correlate(DELTA_RHO, diffs, "Δρ overall", -1, n_resamples=n, seed=0)
    lo, hi = np.nanquantile(loop, [0.025, 0.975])
    assert (c400.ci_low, c400.ci_high) == pytest.approx((lo, hi), abs=1e-12)


def test_reversed_and_unrelated_probes_and_few_methods() -> None:
    diffs = pv.paired_differences(_runs(), "t", "ce")
    flipped = pv.correlate({m: -v for m, v in DELTA_RHO.items()}, diffs, "Δρ overall", -1, seed=1)
    assert flipped.rho == pytest.approx(1.0) and flipped.verdict in ("reversed", "no")
    # a descent delta that rises with the training delta predicts it (positive sign expected)
    descent = pv.correlate({m: float(np.mean(v)) * 2 for m, v in TRAIN.items()}, diffs, "descent Δ", +1)
    assert descent.rho == pytest.approx(1.0)
    few = pv.correlate({"ce": 0.0, "a": 0.1, "b": 0.2}, diffs, "Δρ overall", -1)
    assert few.n_methods == 3 and few.note == pv.TOO_FEW_METHODS and math.isnan(few.ci_low)
    assert few.rho == pytest.approx(stats.spearmanr([0.0, 0.1, 0.2], [0.0, np.mean(TRAIN["a"]),
                                                                       np.mean(TRAIN["b"])]).statistic)


def test_sentence_says_whether_the_value_probe_predicts() -> None:
    no = pv.Correlation("Δρ within states", -1, rho=0.1, ci_low=-0.5, ci_high=0.6, n_methods=12)
    yes = pv.Correlation("Δρ within states", -1, rho=-0.8, ci_low=-0.95, ci_high=-0.4, n_methods=12)
    d = pv.Correlation("descent Δ", +1, rho=0.2, ci_low=-0.4, ci_high=0.7, n_methods=12)
    assert "the value probe does not predict training benefit here" in pv.sentence("t", [no, d], "Δρ within states", 2)
    s = pv.sentence("t", [yes, d], "Δρ within states", 2)
    assert "does predict training benefit here (Δρ within states: ρ = -0.80 [-0.95, -0.40], 12 methods)" in s
    assert "the descent probe does not (ρ = +0.20" in s


def _probe(method: str, delta: float, fp: str, proto: int | None, **extra) -> dict:
    rec = {"kind": "probe", "key": (method + fp + str(proto)).ljust(20, "0")[:20], "status": "ok", "task": "mnist-ap",
           "profile": "quick", "method": method, "method_params": {}, "metric_name": "AP", "environment": {},
           "baseline": "ce", "spearman": -0.5 + delta, "spearman_within": -0.6 + delta, "delta_spearman": delta,
           "delta_spearman_within": delta, "kendall": -0.4, "n_batches": 4, "pool_sha256": fp * 8,
           "points": [[0.1, 0.9, 0], [0.2, 0.5, 0], [0.3, 0.8, 1], [0.2, 0.4, 1]],
           "provenance": {"probe_code_fingerprint": fp * 8}, **extra}
    if proto is not None:
        rec.update(protocol_version=proto, probe_version=3, probe_code_fingerprint=fp * 8)
    return rec


def test_leaderboard_validity_table_and_groups_never_pooled(tmp_path) -> None:
    """Current records (protocol 2, one probe-code fingerprint) with protocol-2 runs give the validity table;
    records of another fingerprint or of protocol 1 for the same task are counted and left out, never mixed."""
    from surrogate_bench.reporting.leaderboard import render
    from surrogate_bench.probe_report.section import current, group_of
    from surrogate_bench.store.records import write_record

    methods = {"ce": 0.0, "focal": -0.2, "poly1": -0.05, "hinge": 0.1, "ce-ls": 0.3}
    for m, d in methods.items():
        write_record(tmp_path / f"probes/quick/mnist-ap/{m}-new0000000.json", _probe(m, d, "ab", 2))
        write_record(tmp_path / f"probes/quick/mnist-ap/{m}-old0000000.json", _probe(m, 0.9, "cd", None))
    write_record(tmp_path / "probes/quick/mnist-ap/focal-oth0000000.json", _probe("focal", 0.5, "ef", 2,
                                                                                   probe_version=3))
    frame = pd.DataFrame([_probe(m, d, "ab", 2) for m, d in methods.items()]
                         + [_probe("focal", 0.9, "cd", None), _probe("focal", 0.5, "ef", 2)])
    cur = current(frame)
    assert {group_of(r) for _, r in cur.iterrows()} == {(2, "ab" * 8)} and len(cur) == 5
    assert cur.attrs["left_out"][("quick", "mnist-ap")] == 2
    md = render(tmp_path)  # no run records: the table says so
    assert "no protocol-2 `quick` run records of this task yet" in md
    assert "+0.900" not in md and "+0.500" not in md  # the other groups' deltas never appear
    assert "6 `mnist-ap` probe records of an earlier probe code or protocol version left out" in md

