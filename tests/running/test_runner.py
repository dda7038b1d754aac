"""Runner and store: keys, reuse of finished runs, failed runs recorded, records valid and atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from surrogate_bench.cli import main
from surrogate_bench.running.runner import RunSpec, run_one
from surrogate_bench.store.records import read_record

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def test_key_depends_on_everything() -> None:
    base = RunSpec("mnist-ap", "ce", "smoke", 0)
    variants = [RunSpec("mnist-ap", "ce", "quick", 0), RunSpec("mnist-ap", "ce", "smoke", 1),
                RunSpec("mnist-ap", "ce", "smoke", 0, method_params=(("label_smoothing", 0.1),))]
    fp = base.fingerprints(Path("."))
    assert len({base.key(fp), *(v.key(fp) for v in variants)}) == 4
    assert base.key(fp) == RunSpec("mnist-ap", "ce", "smoke", 0).key(fp)


def test_record_and_reuse(run_options) -> None:
    spec = RunSpec("mnist-ap", "ce", "smoke", 0)
    rec = run_one(spec, run_options)
    assert rec["status"] == "ok" and 0.5 < rec["test_metric"] <= 1.0
    for field in ("key", "task", "method", "task_params", "method_params", "profile", "seed", "best_val_metric",
                  "history", "wall_time_s", "train_samples_per_s", "environment"):
        assert field in rec
    assert rec["provenance"]["package_versions"]["torch"] and rec["environment"]["device_name"]
    assert rec["environment"]["threads"] >= 1 and "git_commit" not in rec["environment"]  # one block each
    key = spec.key_at(run_options.data_root)
    path = spec.record_path(run_options.results_dir, key)
    mtime = path.stat().st_mtime_ns
    again = run_one(spec, run_options)
    assert again.get("reused") and path.stat().st_mtime_ns == mtime  # nothing retrained or rewritten
    assert not list(path.parent.glob("*.tmp"))
    assert not (run_options.results_dir / "checkpoints" / f"{key}.pt").exists()


def test_truncated_record_is_not_finished(run_options) -> None:
    spec = RunSpec("mnist-ap", "ce", "smoke", 0)
    path = spec.record_path(run_options.results_dir, spec.key_at(run_options.data_root))
    path.parent.mkdir(parents=True)
    path.write_text('{"kind": "run", "key": "')
    assert read_record(path) is None
    assert not run_one(spec, run_options).get("reused")
    assert read_record(path)["status"] == "ok"


def test_failed_run_does_not_stop_grid(data_root: Path, results_dir: Path, capsys) -> None:
    code = main(["--plugin", str(PLUGINS / "failing_method.py"), "run", "--task", "mnist-ap",
                 "--method", "test-always-fails,ce", "--profile", "smoke", "--data-root", str(data_root),
                 "--results-dir", str(results_dir), "--device", "cpu", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "failed: ValueError: deliberate failure" in out and "AP " in out
    recs = [json.loads(p.read_text()) for p in results_dir.glob("runs/**/*.json")]
    assert sorted(r["status"] for r in recs) == ["failed", "ok"]
    failed = next(r for r in recs if r["status"] == "failed")
    assert "deliberate failure" in failed["reason"] and "traceback" in failed


def test_missing_data_is_skipped_with_hint(tmp_path: Path, results_dir: Path) -> None:
    import torch

    from surrogate_bench.running.runner import RunOptions

    empty = tmp_path / "empty"
    empty.mkdir()
    opts = RunOptions(results_dir=results_dir, data_root=empty, device=torch.device("cpu"), progress=False)
    rec = run_one(RunSpec("mnist-ap", "ce", "smoke", 0), opts)
    assert rec["status"] == "skipped"
    assert "MNIST not found" in rec["reason"] and "train-images-idx3-ubyte.gz" in rec["reason"]


@pytest.mark.parametrize("argv,needle", [
    (["run", "--task", "nope", "--method", "ce"], "unknown task 'nope'"),
    (["run", "--task", "mnist-ap"], "pass --all, or both --task and --method"),
    (["run", "--task", "mnist-ap", "--method", "ce", "--seeds", "a"], "bad --seeds"),
    (["run", "--task", "mnist-ap", "--method", "ce", "--profile", "huge"], "no profile 'huge'"),
    (["run", "--task", "mnist-ap", "--method", "ce", "--method-param", "x=1"], "unknown method parameter 'x'"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_errors_are_one_line_exit_2(argv, needle, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
