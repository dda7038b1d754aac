"""Records read back are validated, and OS faults around them are one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_helpers import run_cli

from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.running.runner import RunSpec
from surrogate_bench.store.records import (
    read_record,
    record_problem,
)

pytestmark = pytest.mark.usefixtures("one_thread")


PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

TINY = str(PLUGINS / "tiny_ap_task.py")

def tiny(results: Path, *extra: str) -> list[str]:
    return ["--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile", "smoke", "--device", "cpu",
            "--no-progress", "--results-dir", str(results), "--data-root", str(results.parent), *extra]

def one_line_exit_2(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in out + err

def _one_record(results: Path) -> Path:
    (path,) = results.glob("runs/**/*.json")
    return path

@pytest.mark.parametrize("damage", ["metric null", "field missing", "wrong type", "other key", "other run copied",
                                    "seed edited"])
def test_damaged_or_foreign_record_is_not_reused(damage, capsys, tmp_path) -> None:
    results = tmp_path / "results"
    code, out, _ = run_cli(capsys, *tiny(results))
    assert code == 0 and "reused" not in out
    path = _one_record(results)
    rec = json.loads(path.read_text())
    if damage == "metric null":
        rec["test_metric"] = None  # how a NaN metric is stored
    elif damage == "field missing":
        del rec["seed"]
    elif damage == "wrong type":
        rec["test_metric"] = "0.9"
    elif damage == "other key":
        rec["key"] = "0" * 20
    elif damage == "seed edited":  # the key is right, the record says another seed
        rec["seed"] = 10**400
    else:  # another run's (seed 1) record copied onto this path
        code, _, _ = run_cli(capsys, *tiny(results, "--seeds", "1"))
        other = next(p for p in results.glob("runs/**/*.json") if p != path)
        rec = json.loads(other.read_text())
    path.write_text(json.dumps(rec))
    code, out, err = run_cli(capsys, *tiny(results))
    assert code == 0 and "Traceback" not in out + err, (out, err)
    assert "reused" not in out and " AP " in out, out  # rerun, not reused and not a crash in the summary
    assert f"not reusing {path}" in err, err
    fresh = read_record(path, RunSpec("tiny-ap", "ce", "smoke", 0).key_at(tmp_path))
    assert fresh is not None and fresh["seed"] == 0 and math.isfinite(fresh["test_metric"])

def test_record_problem_oracle() -> None:
    good = {"kind": "run", "key": "k", "status": "ok", "task": "t", "method": "m", "profile": "p", "seed": 0,
            "test_metric": 0.5, "epochs": 1, "environment": {}, "metric_name": "AP",
            "extra_field_of_a_newer_version": [1]}
    assert record_problem(good) is None and record_problem(good, "k") is None
    assert "not this run's key" in record_problem(good, "other")
    for field, value, expected in [("test_metric", None, "null"), ("seed", "0", "str"), ("seed", True, "bool"),
                                   ("status", "done", "status"), ("kind", "bench", "kind"),
                                   ("history", [{"val_metric": "x"}], "history entry 0"),
                                   ("environment", "cpu", "environment")]:
        assert expected in record_problem({**good, field: value}), (field, value)
    assert "missing" in record_problem({k: v for k, v in good.items() if k != "task"})
    assert record_problem(good, "k", {"task": "t", "seed": 0}) is None
    assert "its seed 0 is not this run's 1" in record_problem(good, "k", {"seed": 1})
    assert record_problem({**good, "status": "skipped", "test_metric": None}) is None
    assert "not a JSON object" in record_problem([good])

def test_lock_path_that_is_a_directory_is_one_line(capsys, tmp_path) -> None:
    results = tmp_path / "results"
    load_plugins([TINY])
    spec = RunSpec("tiny-ap", "ce", "smoke", 0)
    path = spec.record_path(results, spec.key_at(tmp_path))
    Path(str(path) + ".lock").mkdir(parents=True)
    one_line_exit_2(*run_cli(capsys, *tiny(results)), "cannot lock record")

def test_record_folder_blocked_by_a_file_is_one_line(capsys, tmp_path) -> None:
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    (results / "runs" / "smoke").write_text("a file where a folder goes")
    one_line_exit_2(*run_cli(capsys, *tiny(results)), "cannot lock record")
