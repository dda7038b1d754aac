"""`tune`: a grid chosen on the validation split only, equal budgets, trials and choice kept as records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from surrogate_bench.cli import main
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import get_task
from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one
from surrogate_bench.store.records import read_record
from surrogate_bench.launch.tune import grid_points, parse_grid, tune

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
FILES = [PLUGINS / "tiny_ap_task.py", PLUGINS / "tiny_fast_task.py", PLUGINS / "no_test_split_task.py"]


@pytest.fixture(autouse=True)
def _plugins() -> None:
    load_plugins(FILES)


def _opts(results: Path) -> RunOptions:
    return RunOptions(results_dir=results, data_root=results, device=torch.device("cpu"), progress=False,
                      log=lambda m: None)


def test_the_guard_task_really_raises_on_test(tmp_path: Path) -> None:
    """An ordinary run of the guard task reads the test split, so it fails: the tune test below can fail."""
    rec = run_one(RunSpec("no-test-split", "ce", "smoke", 0), _opts(tmp_path))
    assert rec["status"] == "failed" and "test split was read" in rec["reason"]


def test_tune_never_reads_test_and_chooses_by_validation(tmp_path: Path) -> None:
    grid = parse_grid(["label_smoothing=0,0.3"], "ce")
    rec = tune("no-test-split", "ce", grid, "smoke", [0, 1], 2, _opts(tmp_path), command="tune ...")
    assert rec["status"] == "ok", rec.get("reason")
    assert [t["status"] for t in rec["trials"]] == ["ok"] * 4
    means = [sum(t["final_val_metric"] for t in rec["trials"] if t["params"] == p) / 2 for p in rec["points"]]
    assert rec["choice"] == rec["points"][max(range(2), key=lambda i: (means[i], -i))]
    assert rec["choice_val_metric"] == pytest.approx(max(means))
    stored = json.loads(Path(rec["path"]).read_text())
    assert stored["kind"] == "tune" and stored["choice"] == rec["choice"] and stored["budget"] == 2
    assert Path(rec["path"]).parent == tmp_path / "tuning" / "smoke" / "no-test-split"
    for trial in rec["trials"]:
        run = read_record(tmp_path / trial["record"])
        assert run["key"] == trial["key"] and run["test_metric"] is None and run["n_test"] == 0
        assert run["evaluate_test"] is False and run["method_params"]["label_smoothing"] == trial["params"][
            "label_smoothing"]
    again = tune("no-test-split", "ce", grid, "smoke", [0, 1], 2, _opts(tmp_path))
    assert all(t["reused"] for t in again["trials"]) and again["key"] == rec["key"]


def test_trials_and_runs_have_different_keys(tmp_path: Path) -> None:
    fp = RunSpec("tiny-fast", "ce").fingerprints(tmp_path)
    assert RunSpec("tiny-fast", "ce").key(fp) != RunSpec("tiny-fast", "ce", evaluate_test=False).key(fp)


def test_grid_budget_is_equal_for_every_method() -> None:
    grid = {"a": [1, 2, 3], "b": [1, 2]}
    assert len(grid_points(grid, 6)) == 6
    sub = grid_points(grid, 4)
    assert len(sub) == 4 and sub == grid_points(grid, 4)  # a fixed subsample
    with pytest.raises(SuiteError, match="fewer than --budget 7"):
        grid_points(grid, 7)
    with pytest.raises(SuiteError, match="no parameter 'gain'"):
        parse_grid(["gain=1,2"], "ce")
    with pytest.raises(SuiteError, match="expected float"):
        parse_grid(["label_smoothing=x"], "ce")
    assert parse_grid(["gain=1,10", "temperature=2"], "uniloss") == {"gain": [1.0, 10.0], "temperature": [2.0]}


def test_cli_tune(tmp_path: Path, capsys) -> None:
    base = ["--plugin", str(FILES[0]), "--plugin", str(FILES[1]), "--plugin", str(FILES[2]), "tune",
            "--task", "no-test-split", "--method", "ce", "--profile", "smoke", "--device", "cpu", "--no-progress",
            "--results-dir", str(tmp_path)]
    assert main([*base, "--grid", "label_smoothing=0,0.1", "--budget", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and out[0].startswith("trial [label_smoothing=0.0]") and "final val" in out[0]
    assert out[-1].startswith("tune no-test-split ce smoke: label_smoothing=") and "tuning/smoke" in out[-1]
    assert main([*base, "--grid", "label_smoothing=0,0.1", "--budget", "3"]) == 2
    assert "fewer than --budget 3" in capsys.readouterr().err
    assert main([*base, "--budget", "1"]) == 2
    assert "--grid" in capsys.readouterr().err


def test_cifar_defaults_cite_their_tune() -> None:
    """The CIFAR UniLoss defaults name the validation tune that sets them (a tune command, not a test table)."""
    for name in ("cifar10-acc", "cifar100-acc"):
        source = get_task(name).method_defaults_source["uniloss"]
        assert "surrogate_bench tune --task cifar10-acc --method uniloss" in source and "--budget" in source
