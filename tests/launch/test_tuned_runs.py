"""`run --tuned`: each pair trains at its newest protocol tune choice; the leaderboard shows those runs as a
separate tuned family (tuned baseline, Holm over it) citing the tune record, beside the rows at defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from surrogate_bench.cli import main
from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.launch.tune_protocol import newest_tune_records, protocol_tune_records
from surrogate_bench.reporting.families import families, prepare
from surrogate_bench.reporting.leaderboard import render
from surrogate_bench.store.records import iter_records

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
FILES = [PLUGINS / "tiny_ap_task.py", PLUGINS / "tiny_fast_task.py"]


@pytest.fixture(autouse=True)
def _plugins() -> None:
    load_plugins(FILES)


def _base(results: Path, command: str) -> list[str]:
    return [*(x for f in FILES for x in ("--plugin", str(f))), command, "--device", "cpu", "--no-progress",
            "--results-dir", str(results)]


def _tune(results: Path, methods: str) -> None:
    assert main([*_base(results, "tune"), "--protocol", "--task", "tiny-fast", "--method", methods, "--trials", "2",
                 "--seeds", "0,1", "--profile", "smoke"]) == 0


def _runs(results: Path) -> list[dict]:
    return [r for r in iter_records(results, "run") if r["status"] == "ok"]


def test_run_tuned_trains_the_choice_and_the_leaderboard_shows_a_tuned_family(tmp_path: Path, capsys) -> None:
    _tune(tmp_path, "ce,focal")
    tunes = {r["method"]: r for r in protocol_tune_records(tmp_path)}
    run = [*_base(tmp_path, "run"), "--task", "tiny-fast", "--method", "ce,focal", "--seeds", "0,1,2", "--profile",
           "smoke"]
    assert main(run) == 0  # at the defaults
    assert main([*run, "--tuned"]) == 0
    capsys.readouterr()
    tuned = [r for r in _runs(tmp_path) if r.get("profile_params") and r["evaluate_test"]]
    assert len(tuned) == 6 and all(r["evaluate_test"] and r["test_metric"] is not None for r in tuned)
    for r in tuned:  # the lr and the knob of the pair's tune choice, the other parameters at their defaults
        rec = tunes[r["method"]]
        assert r["profile_params"] == rec["choice_profile_params"]
        assert all(r["method_params"][k] == v for k, v in rec["choice_method_params"].items())
    fams = {(f.task, f.arm): f for f in families(prepare(tmp_path, include_plumbing=True))}
    default, arm = fams[("tiny-fast", "")], fams[("tiny-fast", "tuned")]
    assert set(default.rows) == {"ce", "focal"} and set(arm.rows) == {"ce", "focal"}
    assert arm.baseline == "ce" and arm.members == ["focal"] and arm.rows["focal"].n == 3
    assert arm.rows["focal"].tune_record == tunes["focal"]["path"] and default.rows["focal"].tune_record is None
    assert arm.rows["ce"].cell.by_seed != default.rows["ce"].cell.by_seed  # the tuned baseline is its own row
    page = render(tmp_path, include_plumbing=True)
    assert "`tiny-fast` **tuned**" in page and "| tiny-fast · tuned (" in page
    assert "tuned: 2 trials × 2 seeds, chosen val" in page and "Tuning budget, tuned (validation only" in page
    assert "## Tuning protocol (validation split only)" in page and "tuning/smoke/tiny-fast/focal-" in page
    assert "## Tuning (validation split only)" not in page  # the grid tunes' table: no protocol record in it


def test_run_tuned_without_a_tune_record_or_with_explicit_settings_is_one_line(tmp_path: Path, capsys) -> None:
    _tune(tmp_path, "ce")
    capsys.readouterr()
    run = [*_base(tmp_path, "run"), "--task", "tiny-fast", "--method", "ce,focal", "--profile", "smoke", "--tuned"]
    assert main(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no protocol tune record" in err[0] and "tiny-fast/focal" in err[0]
    assert "tiny-fast/ce" not in err[0]
    assert main([*run, "--profile-param", "lr=0.01"]) == 2
    assert "drop --grid/--method-param/--profile-param" in capsys.readouterr().err
    assert [r for r in _runs(tmp_path) if r["evaluate_test"]] == []  # nothing trained (only the trials)


def test_newest_tune_record_wins(tmp_path: Path) -> None:
    old = {"kind": "tune", "status": "ok", "profile": "smoke", "task": "t", "task_params": {}, "method": "m",
           "key": "b", "finished": "2026-01-01T00:00:00+0000"}
    new = {**old, "key": "a", "finished": "2026-02-01T00:00:00+0000"}
    assert newest_tune_records([old, new])[("smoke", "t", "{}", "m")]["key"] == "a"
    assert newest_tune_records([new, old])[("smoke", "t", "{}", "m")]["key"] == "a"


def test_seeds_auto_tuned_adds_the_tuned_baseline_and_its_own_decision_record(tmp_path: Path, capsys) -> None:
    _tune(tmp_path, "ce,focal")
    assert main([*_base(tmp_path, "run"), "--task", "tiny-fast", "--method", "focal", "--profile", "smoke", "--tuned",
                 "--seeds", "auto", "--min-seeds", "2", "--max-seeds", "2"]) == 0
    capsys.readouterr()
    path = tmp_path / "decisions" / "smoke" / "tiny-fast@tuned.json"
    rec = json.loads(path.read_text())
    assert rec["arm"] == "tuned" and rec["baseline"] == "ce" and rec["methods"] == ["ce", "focal"]
    assert not (tmp_path / "decisions" / "smoke" / "tiny-fast.json").exists()  # the defaults' record untouched
    tuned_ce = [r for r in _runs(tmp_path) if r["method"] == "ce" and r["evaluate_test"]]
    assert len(tuned_ce) == 2 and all(r.get("profile_params") for r in tuned_ce)
    arm = [f for f in families(prepare(tmp_path, include_plumbing=True)) if f.arm == "tuned"][0]
    assert arm.decision_path == path and arm.design is not None


def test_tuned_rows_are_found_beside_another_tasks_runs(tmp_path: Path, capsys) -> None:
    """A frame of two tasks flattens a task parameter only one has into a float column (597 -> 597.0): the
    tuned rows of that task must still match their tune record."""
    assert main([*_base(tmp_path, "tune"), "--protocol", "--task", "digits-ap", "--method", "ce", "--trials", "2",
                 "--seeds", "0,1", "--profile", "smoke"]) == 0
    run = [*_base(tmp_path, "run"), "--method", "ce", "--seeds", "0,1", "--profile", "smoke"]
    assert main([*run, "--task", "digits-ap", "--tuned"]) == 0
    assert main([*run, "--task", "tiny-ap"]) == 0  # tiny-ap has no test_size: the column gets NaN
    capsys.readouterr()
    prepared = prepare(tmp_path, include_plumbing=True)
    assert prepared.runs["task_params.test_size"].dtype.kind == "f"
    arms = {(f.task, f.arm) for f in families(prepared)}
    assert ("digits-ap", "tuned") in arms and ("tiny-ap", "") in arms


def test_a_tuned_baseline_worse_than_its_defaults_is_noted() -> None:
    """A tuned family whose tuned baseline tests below the default baseline says so (its "better" is weaker)."""
    from surrogate_bench.reporting.cells import Cell
    from surrogate_bench.reporting.families import Family, Row, _note_tuned_baselines
    from surrogate_bench.stats.seeds import Interval

    def fam(arm: str, mean: float, higher: bool = True) -> Family:
        row = Row("mse-heatmap", Cell(Interval(mean, 0.1, 3), {0: mean}, None), None, None, False, None, None)
        return Family("quick", 2, "synth-pose-pckh", "PCKh", higher, "mse-heatmap", 0.01, "task margin",
                      {"mse-heatmap": row}, notes=[], arm=arm)

    default, tuned = fam("", 0.59), fam("tuned", 0.46)
    _note_tuned_baselines([default, tuned])
    assert default.notes == [] and "tests worse than at its defaults (0.4600 vs 0.5900" in tuned.notes[0]
    default, tuned = fam("", 0.59, higher=False), fam("tuned", 0.46, higher=False)  # lower is better: no note
    _note_tuned_baselines([default, tuned])
    assert tuned.notes == []
    default, tuned = fam("", 0.59), fam("tuned", 0.585)  # within δ = 0.01: a tie, no note
    _note_tuned_baselines([default, tuned])
    assert tuned.notes == []
