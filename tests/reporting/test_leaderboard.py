"""Leaderboard for a fixed set of records: mean ± t interval with n, paired difference with its interval, the
verdict (bold only a corrected better), notes for skipped runs."""

from __future__ import annotations

from pathlib import Path

from surrogate_bench.reporting.leaderboard import render, write
from surrogate_bench.store.records import write_record


def _rec(results: Path, task: str, method: str, seed: int, value: float | None, status: str = "ok", **kw) -> None:
    rec = {"kind": "run", "key": f"{task}{method}{seed}", "status": status, "task": task, "method": method,
           "profile": "quick", "seed": seed, "test_metric": value, "metric_name": "AP", "higher_is_better": True,
           "epochs": 3, "environment": {"device_name": "cpu (test)", "git_commit": "abcdef0123456"}, **kw}
    write_record(results / "runs" / f"{task}-{method}-{seed}.json", rec)


def flat(md: str) -> str:
    """The page with runs of spaces collapsed (table columns are padded to their widest cell)."""
    return " ".join(md.split())


def test_leaderboard_fixed_records(tmp_path: Path) -> None:
    for seed, (a, b) in enumerate([(0.90, 0.95), (0.92, 0.97)]):
        _rec(tmp_path, "mnist-ap", "ce", seed, a)
        _rec(tmp_path, "mnist-ap", "uniloss", seed, b)
    _rec(tmp_path, "pose", "ce", 0, None, status="skipped", reason="ce needs class logits")
    md = flat(render(tmp_path))
    assert "## Profile `quick`: early training (quick profile)" in md and "mnist-ap (AP ↑, δ=0.001)" in md
    # t_{0.975, 1} x std / sqrt(2) = 12.7062 x 0.01414 / 1.4142 = 0.1271; constant +0.05 over 2 seeds: zero spread,
    # decided by the numbers (superiority p = 0): a corrected better
    assert "| **0.9600 ± 0.1271 (n=2)** | +0.0500 [+0.0500, +0.0500] (n=2) | **better** (Holm p<0.001) |" in md
    assert "| 0.9100 ± 0.1271 (n=2) | baseline" in md and "**0.9100" not in md
    assert "2 seed(s) per cell" in md
    assert "ce needs class logits" in md
    assert "cpu (test)" in md and "abcdef0123" in md
    out = write(tmp_path, tmp_path / "LB.md")
    assert out.read_text() == render(tmp_path, tmp_path / "plots", tmp_path)
    assert "![quick-mnist-ap-verdicts](plots/quick-mnist-ap-verdicts.png)" in out.read_text()


def test_interval_column_and_verdicts(tmp_path: Path) -> None:
    """Three seeds: t intervals, paired verdicts, bold only for a detectable lead; single runs show the
    test-set bootstrap interval; copies of a record count once."""
    for seed, (ce, uni, rel) in enumerate([(0.60, 0.70, 0.61), (0.62, 0.73, 0.60), (0.61, 0.71, 0.63)]):
        _rec(tmp_path, "mnist-ap", "ce", seed, ce)
        _rec(tmp_path, "mnist-ap", "uniloss", seed, uni)
        _rec(tmp_path, "mnist-ap", "reloss", seed, rel)
    for copy in range(3):  # three files holding one record (same key): one seed, not three
        rec = {"kind": "run", "key": "cifar-ce-0", "status": "ok", "task": "cifar10-acc", "method": "ce",
               "profile": "quick", "seed": 0, "test_metric": 0.64, "test_metric_ci": [0.6306, 0.6494],
               "metric_name": "accuracy", "higher_is_better": True, "epochs": 3,
               "environment": {"device_name": "cpu (test)", "git_commit": "abcdef0123456"}}
        write_record(tmp_path / "runs" / f"copy{copy}.json", rec)
    md = flat(render(tmp_path))
    # uniloss: mean 0.7133, sd 0.01528, t_{.975,2} = 4.3027 -> 0.0379; paired vs ce: diffs .10 .11 .10, p = 0.0010,
    # Holm over the family of 2: 0.0021 -> better; reloss: diffs .01 -.02 .02, p = 0.81 -> inconclusive, not bold
    assert "| **0.7133 ± 0.0379 (n=3)** | +0.1033 [+0.0890, +0.1177] (n=3) | **better** (Holm p=0.002) |" in md
    assert "| 0.6133 ± 0.0379 (n=3) | +0.0033 [-0.0484, +0.0550] (n=3) | inconclusive (needs ~" in md
    assert "| 0.6100 ± 0.0248 (n=3) | baseline" in md
    assert "| 0.6400 (n=1; test-set 95% [0.6306, 0.6494]) | baseline" in md
    assert "family of 2 compared with `ce` (`reloss`, `uniloss`); δ = 0.001" in md
    assert "1–3 seed(s) per cell" in md
