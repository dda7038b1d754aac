"""bench --jobs: N concurrent training processes on one device, aggregate samples/s (CPU at a tiny size here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from surrogate_bench.cli import main
from surrogate_bench.bench.jobs import bench_jobs, table


@pytest.mark.slow
def test_bench_jobs_on_cpu(data_root: Path) -> None:
    """Spawns 1 then 2 processes training mnist-ap on a real batch."""
    rows = bench_jobs("mnist-ap", "ce", [1, 2], "cpu", data_root, profile="smoke", steps=5, warmup=1)
    assert [r["jobs"] for r in rows] == [1, 2]
    for r in rows:
        assert r["aggregate_samples_per_s"] > 0 and r["per_job_samples_per_s"] > 0 and r["step_capture"] == "eager"
        assert r["batch"] == 64 and r["steps_per_job"] == 5
        # aggregate = all samples over the common wall span, so never above the sum of the per-job rates
        assert r["aggregate_samples_per_s"] <= r["jobs"] * r["per_job_samples_per_s"] * 1.0001
    assert rows[0]["speedup_vs_1"] == pytest.approx(1.0)
    assert "aggregate samples/s" in table(rows)


@pytest.mark.slow
def test_bench_jobs_reports_a_worker_failure_in_one_line(tmp_path: Path) -> None:
    from surrogate_bench.plugins.errors import SuiteError

    with pytest.raises(SuiteError, match="reloss on mnist-ap: learned"):
        bench_jobs("mnist-ap", "reloss", [2], "cpu", tmp_path, profile="smoke", steps=2, warmup=1)


@pytest.mark.parametrize("jobs", ["0", "x", ""])
def test_bad_jobs_is_one_line(jobs: str, tmp_path: Path, capsys) -> None:
    code = main(["bench", "--task", "mnist-ap", "--method", "ce", "--device", "cpu", "--jobs", jobs,
                 "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--jobs" in err and len(err.strip().splitlines()) == 1, err
