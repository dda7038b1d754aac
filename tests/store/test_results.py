"""Results as data: one flat row per record, CSV / Parquet exports that round-trip through pandas, and the
leaderboard built on the same frame (smoke left out unless asked for)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from surrogate_bench.plugins.errors import SuiteError

from surrogate_bench import results
from surrogate_bench.cli import main
from surrogate_bench.reporting.leaderboard import render
from surrogate_bench.store.records import write_record


def _rec(root: Path, task: str, method: str, seed: int, value: float | None, profile: str = "quick", **kw) -> None:
    rec = {"kind": "run", "key": f"{task}-{method}-{seed}-{profile}", "status": "ok", "task": task, "method": method,
           "profile": profile, "seed": seed, "test_metric": value, "metric_name": "AP", "higher_is_better": True,
           "epochs": 2, "method_params": {"temperature": 1.0, "gain": 2.0 + seed},
           "task_params": {"joints": [9], "val_size": 100},
           "environment": {"device_name": "cpu (test)", "git_commit": "abcdef0123456", "torch": "2.x"},
           "provenance": {"data": {"sha256": "d" * 8}, "code": "c" * 8},  # any nested provenance is flattened
           "history": [{"epoch": 1, "val_metric": 0.5}, {"epoch": 2, "val_metric": 0.6}], **kw}
    write_record(root / "runs" / profile / task / f"{method}-s{seed}.json", rec)


@pytest.fixture
def records(tmp_path: Path) -> Path:
    for seed in (0, 1):
        _rec(tmp_path, "mnist-ap", "uniloss", seed, 0.9 + seed / 100)
        _rec(tmp_path, "mnist-ap", "ce", seed, 0.8)
    _rec(tmp_path, "mnist-ap", "ce", 0, 0.1172, profile="smoke", artifact={"reused": False})  # bool or missing
    _rec(tmp_path, "pose", "ce", 0, None, status="skipped", reason="ce needs class logits", skip="unsupported")
    return tmp_path


def test_load_one_flat_row_per_run(records: Path) -> None:
    assert len(results.load(records)) == 5  # the skip record is left out by default
    frame = results.load(records, include_skips=True)
    assert len(frame) == 6 and list(frame.columns[:7]) == ["kind", "key", "status", "task", "method", "profile", "seed"]
    for col in ("method_params.gain", "task_params.val_size", "environment.git_commit", "provenance.data.sha256",
                "provenance.code"):
        assert col in frame, col
    row = frame[(frame["method"] == "uniloss") & (frame["seed"] == 1)].iloc[0]
    assert row["method_params.gain"] == 3.0 and row["task_params.joints"] == [9] and len(row["history"]) == 2
    assert frame.groupby("method")["test_metric"].mean().round(4).to_dict() == {"ce": 0.5724, "uniloss": 0.905}  # (0.8 + 0.8 + 0.1172) / 3; None is NaN
    assert results.nested(frame, "method_params")[0] == {"gain": 2.0, "temperature": 1.0}
    with pytest.raises(SuiteError, match="nothing-here"):
        results.load(records / "nothing-here")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_round_trips_through_pandas(records: Path, tmp_path: Path, fmt: str, capsys) -> None:
    out = tmp_path / f"runs.{fmt}"
    assert main(["export", "--results-dir", str(records), "--format", fmt, "--out", str(out)]) == 0
    back = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    expected = results.for_export(results.load(records))
    if fmt == "parquet":
        pd.testing.assert_frame_equal(back, expected)
    else:  # CSV has one missing value (NaN) and no types: compare values
        pd.testing.assert_frame_equal(back, expected.mask(expected.isna()), check_dtype=False)
    assert json.loads(back.loc[0, "history"])[1]["val_metric"] == 0.6


def test_export_to_stdout_and_bad_format(records: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", "--results-dir", str(records), "--out", "-", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kind,key,status,task,method,profile,seed") and len(out.strip().splitlines()) == 2
    assert main(["export", "--results-dir", str(records), "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "unknown export format 'xlsx'" in capsys.readouterr().err


def test_leaderboard_from_the_frame_leaves_out_smoke(records: Path) -> None:
    md = render(records)
    assert "## Profile `quick`" in md and "## Profile `smoke`" not in md and "0.1172" not in md
    assert "1 smoke-profile (plumbing-only) record left out (`--include-smoke` shows them)" in md  # counted
    assert "uniloss[gain=2.0]" in md or "uniloss[gain=3.0]" in md  # labels from the flattened method_params
    assert "cpu (test)" in md and "abcdef0123" in md
    shown = render(records, include_plumbing=True)
    assert "## Profile `smoke`" in shown and "**Plumbing only:**" in shown and "0.1172" in shown


def test_a_smoke_only_results_dir_says_why_the_leaderboard_is_empty(tmp_path: Path) -> None:
    _rec(tmp_path, "mnist-ap", "ce", 0, 0.1172, profile="smoke")
    assert "the 1 records here are plumbing-only" in render(tmp_path)
    assert "No records yet." in render(tmp_path / "empty")
