"""CLI output formatting."""

from __future__ import annotations


def test_summary_line_shows_a_zero_best_validation_metric() -> None:
    from surrogate_bench.reporting.console import summary_line

    rec = {"task": "t", "method": "m", "profile": "quick", "seed": 0, "status": "ok", "metric_name": "AP",
           "test_metric": 0.0, "best_val_metric": 0.0, "wall_time_s": 1.0}
    assert "best val 0.0000" in summary_line(rec)
    assert "best val nan" in summary_line({**rec, "best_val_metric": None})
