"""Probes: rank statistics against scipy (ties, constant input), one shared pool reused across methods."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from surrogate_bench.reporting.leaderboard import write
from surrogate_bench.probes.probe import kendall, rank_stats, run_probe, spearman


@pytest.mark.parametrize("trial", range(10))
def test_rank_stats_match_scipy_with_ties(trial: int) -> None:
    rng = np.random.default_rng(trial)
    x = np.round(rng.normal(size=50), 1)  # many ties
    y = np.round(x * rng.uniform(-1, 1) + rng.normal(size=50), 1)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    res = rank_stats(x, y)
    assert res["spearman_ci_low"] <= res["spearman"] <= res["spearman_ci_high"]


def test_constant_input_is_nan_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = rank_stats(np.ones(20), np.arange(20.0))
    assert math.isnan(res["spearman"]) and math.isnan(res["kendall"]) and math.isnan(res["spearman_ci_low"])


def test_perfect_alignment_sign() -> None:
    loss = np.arange(30.0)
    assert spearman(loss, -loss) == -1.0 and kendall(loss, -loss) == -1.0


def test_pool_shared_and_reused_then_plotted(run_options) -> None:
    a = run_probe("mnist-ap", "ce", "smoke", run_options)
    pool_files = list((run_options.results_dir / "pools").glob("*.pt"))
    assert len(pool_files) == 1
    mtime = pool_files[0].stat().st_mtime_ns
    b = run_probe("mnist-ap", "uniloss", "smoke", run_options)  # another method: the same pool, not rebuilt
    assert a["status"] == b["status"] == "ok" and a["key"] != b["key"]
    assert a["pool_sha256"] == b["pool_sha256"] and pool_files[0].stat().st_mtime_ns == mtime
    assert a["n_batches"] == len(a["points"]) >= 20 and -1 <= a["spearman"] < 0
    # state-level statistics: the batches come from the pool's model states, the baseline is ce itself
    assert a["n_states"] == a["pool"]["states"] == len({p[2] for p in a["points"]}) >= 2
    assert a["spearman_ci_low"] <= a["spearman"] <= a["spearman_ci_high"] and -1 <= a["spearman_within"] <= 1
    assert a["baseline"] == "ce" and a["delta_spearman"] == 0 and b["delta_spearman"] == pytest.approx(
        b["spearman"] - a["spearman"])
    assert a["pool"]["metric_min"] < 0.2 and a["pool"]["metric_max"] > 0.8  # randomised targets spread the metric
    assert run_probe("mnist-ap", "ce", "smoke", run_options).get("reused")

    out = write(run_options.results_dir, run_options.results_dir / "LEADERBOARD.md", include_plumbing=True)
    md = out.read_text()
    assert "#### Spearman probe (`smoke`)" in md and "plots/smoke-mnist-ap-probe.png" in md
    assert "per-state AP on the clean val split" in md and a["pool_sha256"][:12] in md
    png = run_options.results_dir / "plots" / "smoke-mnist-ap-probe.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write(run_options.results_dir, out, include_plumbing=True).read_text() == md  # regenerating gives the same file


def test_corrupt_pool_is_rebuilt(run_options) -> None:
    run_probe("mnist-ap", "ce", "smoke", run_options)
    pool = next((run_options.results_dir / "pools").glob("*.pt"))
    pool.write_bytes(b"garbage")
    rec = run_probe("mnist-ap", "ce", "smoke", run_options, method_params={"label_smoothing": 0.1})
    assert rec["status"] == "ok" and pool.stat().st_size > 1000


def test_malformed_pool_is_rebuilt(run_options) -> None:
    """A readable file that is not a whole pool (an old construction, a truncated dict) is rebuilt, not used."""
    import torch

    from surrogate_bench.plugins.registry import get_task
    from surrogate_bench.probes.pool import pool_path
    from surrogate_bench.probes.setup import safe_data_fingerprint

    task = get_task("mnist-ap")
    path = pool_path(run_options.results_dir, task, "smoke", safe_data_fingerprint(task, run_options.data_root))
    path.parent.mkdir(parents=True)
    torch.save({"outputs": torch.zeros(3, 4, 2), "targets": torch.zeros(3, 4), "metric": torch.zeros(3)}, path)
    rec = run_probe("mnist-ap", "ce", "smoke", run_options)
    assert rec["status"] == "ok" and rec["pool"]["states"] >= 2 and "weights" in torch.load(path, weights_only=True)


def test_probe_keys_follow_code_and_data_fingerprints(run_options, monkeypatch) -> None:
    """A probe record is keyed like a run (code + data fingerprints) plus the probe package's sources, and
    stores the same provenance block: changing any of them gives a new key, never a reuse."""
    from surrogate_bench.plugins.registry import get_task, method_for
    from surrogate_bench.probes import setup
    from surrogate_bench.store.provenance import code_fingerprint

    task = get_task("mnist-ap")
    method = method_for(task, "ce")
    from surrogate_bench.probes.probe import probe_settings

    ident = setup.probe_identity("probe", task, method, "smoke", probe_settings(), run_options.data_root)
    assert ident.provenance["code_fingerprint"] == code_fingerprint(task, method)
    assert ident.provenance["data_fingerprint"] == ident.data_fingerprint not in ("unavailable", "undeclared")
    assert ident.provenance["probe_code_fingerprint"] == setup.probe_code_fingerprint()
    settings = probe_settings()
    assert setup.probe_identity("descent", task, method, "smoke", settings, run_options.data_root).key != ident.key
    missing = setup.probe_identity("probe", task, method, "smoke", settings, run_options.data_root / "nowhere")
    assert missing.data_fingerprint == "unavailable" and missing.key != ident.key
    monkeypatch.setattr(setup, "probe_code_fingerprint", lambda: "edited")
    assert setup.probe_identity("probe", task, method, "smoke", settings, run_options.data_root).key != ident.key
    monkeypatch.undo()
    monkeypatch.setattr(setup, "code_fingerprint", lambda t, m: "other-code")
    assert setup.probe_identity("probe", task, method, "smoke", settings, run_options.data_root).key != ident.key
    monkeypatch.undo()
    rec = run_probe("mnist-ap", "ce", "smoke", run_options)
    assert rec["key"] == ident.key and rec["provenance"]["data_fingerprint"] == ident.data_fingerprint
    assert rec["provenance"]["git_commit"] is None or len(rec["provenance"]["git_commit"]) == 40
