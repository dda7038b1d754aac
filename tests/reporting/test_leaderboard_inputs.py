"""The leaderboard (and bench) survive any results folder and unwritable outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from surrogate_bench.store.records import (
    iter_records,
    write_record,
)

pytestmark = pytest.mark.usefixtures("one_thread")


PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

TINY = str(PLUGINS / "tiny_ap_task.py")

def one_line_exit_2(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in out + err

def test_leaderboard_and_bench_outputs_that_cannot_be_written(capsys, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (tmp_path / "results").mkdir()
    one_line_exit_2(*run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path / "results"),
                             "--out", str(blocker / "LB.md")), str(blocker))
    one_line_exit_2(*run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path / "results"),
                             "--out", str(tmp_path / ("x" * 300 + ".md"))), "too long")
    code, out, err = run_cli(capsys, "--plugin", TINY, "bench", "--task", "tiny-ap", "--method", "ce", "--profile",
                             "smoke", "--steps", "1", "--device", "cpu", "--data-root", str(tmp_path),
                             "--json", str(blocker / "bench.json"))
    one_line_exit_2(code, "", err, str(blocker))

def _run_rec(key: str, seed: int, value) -> dict:
    return {"kind": "run", "key": key, "status": "ok", "task": "mnist-ap", "method": "ce", "profile": "quick",
            "seed": seed, "test_metric": value, "metric_name": "AP", "higher_is_better": True, "epochs": 3,
            "environment": {"device_name": "cpu (test)"}}

def test_leaderboard_skips_malformed_foreign_wrong_typed_and_duplicate_records(capsys, tmp_path) -> None:
    runs = tmp_path / "runs" / "quick" / "mnist-ap"
    write_record(runs / "ce-s0-aaaaaaaaaa.json", _run_rec("aaaaaaaaaa0000000000", 0, 0.5))
    write_record(runs / "ce-s1-bbbbbbbbbb.json", _run_rec("bbbbbbbbbb0000000000", 1, 0.7))
    (runs / "copy-of-s1.json").write_text((runs / "ce-s1-bbbbbbbbbb.json").read_text())  # a duplicate of one key
    bad = {"truncated.json": '{"kind": "run", "key"', "foreign.json": '{"hello": "world"}', "list.json": "[1, 2]",
           "binary.json": "\udcff"}
    for name, text in bad.items():
        (runs / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    write_record(runs / "typed.json", {**_run_rec("cccccccccc0000000000", 2, "high"), "seed": 2})
    write_record(runs / "env.json", {**_run_rec("dddddddddd0000000000", 3, 0.6), "environment": "cpu"})
    write_record(runs / "ce-s4-eeeeeeeeee.json", _run_rec("ffffffffff0000000000", 4, 0.6))  # key != file name
    code, out, err = run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path))
    assert code == 0 and "Traceback" not in out + err, err
    for name in [*bad, "typed.json", "env.json", "copy-of-s1.json", "ce-s4-eeeeeeeeee.json"]:
        assert f"warning: skipping {runs / name}" in err, (name, err)
    md = (tmp_path / "LEADERBOARD.md").read_text()
    assert "0.6000 ± 1.2706 (n=2)" in md, md  # 95% t interval: 0.1414 / sqrt(2) x t(0.975, 1)  # seeds 0 and 1, the duplicate counted once
    assert len(list(iter_records(tmp_path, "run", warn=None))) == 2
