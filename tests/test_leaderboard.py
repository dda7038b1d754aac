"""Leaderboard for a fixed set of records: mean ± std with n, best in bold, notes for skipped runs."""

from __future__ import annotations

from pathlib import Path

from surrogate_bench.reporting.leaderboard import render, write
from surrogate_bench.running.store import write_record


def _rec(results: Path, task: str, method: str, seed: int, value: float | None, status: str = "ok", **kw) -> None:
    rec = {"kind": "run", "key": f"{task}{method}{seed}", "status": status, "task": task, "method": method,
           "profile": "quick", "seed": seed, "test_metric": value, "metric_name": "AP", "higher_is_better": True,
           "epochs": 3, "environment": {"device_name": "cpu (test)", "git_commit": "abcdef0123456"}, **kw}
    write_record(results / "runs" / f"{task}-{method}-{seed}.json", rec)


def test_leaderboard_fixed_records(tmp_path: Path) -> None:
    for seed, (a, b) in enumerate([(0.90, 0.95), (0.92, 0.97)]):
        _rec(tmp_path, "mnist-ap", "ce", seed, a)
        _rec(tmp_path, "mnist-ap", "uniloss", seed, b)
    _rec(tmp_path, "pose", "ce", 0, None, status="skipped", reason="ce needs class logits")
    md = render(tmp_path)
    assert "## Profile `quick`" in md and "mnist-ap (AP ↑)" in md
    assert "**0.9600 ± 0.0141 (n=2)**" in md  # uniloss best, in bold
    assert "0.9100 ± 0.0141 (n=2)" in md and "**0.9100" not in md
    assert "ce needs class logits" in md
    assert "cpu (test)" in md and "abcdef0123" in md
    out = write(tmp_path, tmp_path / "LB.md")
    assert out.read_text() == md
