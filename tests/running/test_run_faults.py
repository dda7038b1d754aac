"""Faults inside a run become its failed record; malformed checkpoints and empty splits are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.plugins.registry import get_task
from surrogate_bench.running import runner
from surrogate_bench.running.checkpoint import checkpoint_path
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one
from surrogate_bench.store.records import (
    read_record,
)

pytestmark = pytest.mark.usefixtures("one_thread")


PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

TINY = str(PLUGINS / "tiny_ap_task.py")

RAISING = str(PLUGINS / "raising_supports.py")

def tiny(results: Path, *extra: str) -> list[str]:
    return ["--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile", "smoke", "--device", "cpu",
            "--no-progress", "--results-dir", str(results), "--data-root", str(results.parent), *extra]

def _one_record(results: Path) -> Path:
    (path,) = results.glob("runs/**/*.json")
    return path

def test_undefined_test_metric_is_a_failed_run_and_the_rerun_prints_one_line(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "score", lambda *a, **k: float("nan"))  # e.g. a test split without positives
    results = tmp_path / "results"
    for _ in range(2):
        code, out, err = run_cli(capsys, *tiny(results))
        assert code == 1 and "failed: UndefinedMetric" in out and "Traceback" not in out + err, (out, err)
    assert read_record(_one_record(results))["status"] == "failed"

def test_supports_that_raises_is_a_failed_record_and_the_grid_goes_on(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, "--plugin", RAISING, *tiny(tmp_path / "results", "--method",
                                                                 "test-supports-raises,ce"))
    assert code == 1 and "Traceback" not in out + err, (out, err)
    lines = out.splitlines()  # (repeated --method options accumulate: ce, then the raising method)
    assert len(lines) == 2 and any("failed: RuntimeError: deliberate failure in supports()" in ln for ln in lines)
    assert any(" AP " in ln for ln in lines), out  # the grid goes on

@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("content", ["no model", "wrong types", "not a dict", "other shapes"])
def test_malformed_checkpoint_is_ignored(content, force, tmp_path) -> None:
    load_plugins([TINY])
    logs: list[str] = []
    opts = RunOptions(results_dir=tmp_path / "results", data_root=tmp_path, device=torch.device("cpu"),
                      progress=False, log=logs.append, force=force)
    spec = RunSpec("tiny-ap", "ce", "smoke", 0)
    key = spec.key_at(tmp_path)
    state = {"no model": {"key": key, "epoch": 2},
             "wrong types": {"key": key, "epoch": "2", "model": {}, "optimizer": {}, "scheduler": {},
                             "rng": {}, "history": [], "train_time": 1.0, "seen": 3},
             "not a dict": [1, 2, 3],
             "other shapes": {"key": key, "epoch": 2, "model": {"0.weight": torch.zeros(3)},
                              "optimizer": {}, "scheduler": {}, "rng": {}, "history": [], "train_time": 1.0,
                              "seen": 3}}[content]
    path = checkpoint_path(opts.results_dir, key)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    rec = run_one(spec, opts)
    assert rec["status"] == "ok", rec.get("reason")
    assert force or any("ignoring checkpoint" in m for m in logs), logs
    assert not any(m.startswith("resuming") for m in logs)

def test_empty_split_from_any_task_is_named(tmp_path) -> None:
    from surrogate_bench.plugins.contracts import Split, TaskData
    from surrogate_bench.plugins.errors import DataCorrupt

    empty = Split(torch.zeros(0, 28, 28), torch.zeros(0))
    some = Split(torch.zeros(4, 28, 28), torch.zeros(4))
    with pytest.raises(DataCorrupt, match="empty train split"):
        runner.check_nonempty(get_task("mnist-ap"), TaskData(empty, some, some))
    runner.check_nonempty(get_task("mnist-ap"), TaskData(some, empty, some))  # no validation split is allowed
