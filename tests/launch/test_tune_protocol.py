"""`tune --protocol`: one declared budget (N Sobol points of lr + one knob, S seeds) for every method, on
validation only; the choice is the best mean final validation metric; ``tuned_spec`` applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from surrogate_bench.cli import main
from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.launch.tune_protocol import (TUNING_KNOBS, TuneProtocol, knob_of, trial_points, tune_protocol,
                                                  tuned_spec, unit_points)
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import get_task, method_for, registry
from surrogate_bench.reporting.tuning_budget import budget_line, load_protocol_records, tuned_label
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one
from surrogate_bench.store.records import read_record, record_problem

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
FILES = [PLUGINS / "tiny_ap_task.py", PLUGINS / "tiny_fast_task.py", PLUGINS / "no_test_split_task.py"]


@pytest.fixture(autouse=True)
def _plugins() -> None:
    load_plugins(FILES)


def _opts(results: Path) -> RunOptions:
    return RunOptions(results_dir=results, data_root=results, device=torch.device("cpu"), progress=False,
                      log=lambda m: None)


def _builds(task: str, method: str, **params) -> bool:
    try:
        method_for(get_task(task), method, **params)
        return True
    except SuiteError:  # unsupported on this task, or a value outside the method's domain
        return False


def test_every_knob_is_a_declared_parameter_and_its_range_is_valid() -> None:
    tasks = ("mnist-ap", "cifar10-acc", "synth-pose-pckh")
    for method in TUNING_KNOBS:
        knob = knob_of(method)
        assert knob["param"] in registry().get_class("method", method).params, method
        values = knob["choices"] if knob["scale"] == "choices" else [knob["low"], knob["high"]]
        for v in values:  # each end of the range passes the method's own domain check on a task it supports
            assert any(_builds(t, method, **{knob["param"]: v}) for t in tasks), (method, v)
    assert knob_of("ce") is None  # the baseline at its defaults: lr only


def test_the_same_points_for_every_method() -> None:
    p = TuneProtocol(n_trials=5, seeds=(0, 1), sampler_seed=3)
    ce, focal, hinge = (trial_points(p, 0.05, m) for m in ("ce", "focal", "hinge"))
    assert [x["lr"] for x in ce] == [x["lr"] for x in focal] == [x["lr"] for x in hinge]
    assert len(set(x["lr"] for x in ce)) == 5 and all(0.005 <= x["lr"] <= 0.15 for x in ce)
    assert all(set(x) == {"lr"} for x in ce) and all(set(x) == {"lr", "gamma"} for x in focal)
    assert unit_points(5, 3) == unit_points(5, 3) != unit_points(5, 4)  # seeded, reproducible
    assert trial_points(p, 0.05, "focal") == focal
    # the knob coordinate is shared too: focal's gamma and hinge's margin come from the same unit values
    g = [(x["gamma"] - 0.5) / 4.5 for x in focal]
    assert all(abs(a - b[1]) < 1e-3 for a, b in zip(g, unit_points(5, 3)))


def test_protocol_needs_two_seeds_and_counts_a_repeated_seed_once() -> None:
    assert TuneProtocol(seeds=(0, 1, 1, 0)).seeds == (0, 1)
    with pytest.raises(SuiteError, match="at least 2 seeds"):
        TuneProtocol(seeds=(3, 3))
    with pytest.raises(SuiteError, match="lr range"):
        TuneProtocol(lr_factors=(3.0, 0.1))
    assert TuneProtocol(halving=True, min_epochs=1, reduction_factor=3).rungs(7) == [1, 3]
    assert TuneProtocol().rungs(7) == []


def test_protocol_trials_validation_only_s_seeds_and_best_mean_choice(tmp_path: Path) -> None:
    """no-test-split raises on any read of the test split: every trial of every method stays ok."""
    protocol = TuneProtocol(n_trials=3, seeds=(0, 1, 1))
    recs = {m: tune_protocol("no-test-split", m, protocol, "smoke", _opts(tmp_path), command="tune --protocol")
            for m in ("ce", "focal")}
    for m, rec in recs.items():
        assert rec["status"] == "ok", rec.get("reason")
        assert record_problem(rec) is None
        assert rec["seeds"] == [0, 1] and rec["budget"] == 3 and rec["protocol"]["n_seeds"] == 2
        assert rec["sampler"]["name"] == "scipy.stats.qmc.Sobol" and rec["sampler"]["seed"] == 0
        assert len(rec["trials"]) == 3 * 2 and [t["status"] for t in rec["trials"]] == ["ok"] * 6
        for point in rec["points"]:
            assert sorted(t["seed"] for t in rec["trials"] if t["params"] == point) == [0, 1]
        means = [sum(t["final_val_metric"] for t in rec["trials"] if t["params"] == p) / 2 for p in rec["points"]]
        best = max(range(3), key=lambda i: (means[i], -i))
        assert rec["choice"] == rec["points"][best] and rec["choice_val_metric"] == pytest.approx(means[best])
        assert rec["choice_profile_params"] == {"lr": rec["choice"]["lr"]}
        for trial in rec["trials"]:
            run = read_record(tmp_path / trial["record"])
            assert run["evaluate_test"] is False and run["test_metric"] is None and run["n_test"] == 0
            assert run["profile_settings"]["lr"] == trial["params"]["lr"]
        stored = json.loads(Path(rec["path"]).read_text())
        assert stored["protocol"] == rec["protocol"] and stored["choice"] == rec["choice"]
    assert [p["lr"] for p in recs["ce"]["points"]] == [p["lr"] for p in recs["focal"]["points"]]
    again = tune_protocol("no-test-split", "ce", protocol, "smoke", _opts(tmp_path))
    assert all(t["reused"] for t in again["trials"]) and again["key"] == recs["ce"]["key"]


def test_tuned_spec_applies_lr_and_knob(tmp_path: Path) -> None:
    rec = tune_protocol("tiny-fast", "focal", TuneProtocol(n_trials=2), "smoke", _opts(tmp_path))
    base = RunSpec("tiny-fast", "focal", "smoke", 4)
    spec = tuned_spec(base, rec)
    assert dict(spec.method_params) == {"gamma": rec["choice"]["gamma"]}
    assert dict(spec.profile_params) == {"lr": rec["choice"]["lr"]} and spec.evaluate_test and spec.seed == 4
    task, _ = spec.build()
    assert spec.profile_of(task).lr == rec["choice"]["lr"]
    fp = base.fingerprints(tmp_path)
    assert spec.key(fp) != base.key(fp)  # the tuned row is a separate run from the default row
    with pytest.raises(SuiteError, match="method"):
        tuned_spec(RunSpec("tiny-fast", "ce", "smoke"), rec)
    grid_rec = {"kind": "tune", "status": "ok", "task": "tiny-fast", "method": "focal", "profile": "smoke",
                "choice": {"gamma": 1.0}}
    assert dict(tuned_spec(base, grid_rec).method_params) == {"gamma": 1.0}


def test_successive_halving_prunes_and_promoted_trials_equal_uninterrupted_runs(tmp_path: Path) -> None:
    """tiny-ap has 6 epochs: rungs at 2 and 4 (keep 1/2); a promoted trial's record is the one a plain run makes."""
    pytest.importorskip("optuna")  # the [dev] and [tune] extras install it
    protocol = TuneProtocol(n_trials=4, seeds=(0, 1), halving=True, min_epochs=2, reduction_factor=2)
    rec = tune_protocol("tiny-ap", "ce", protocol, "smoke", _opts(tmp_path))
    assert rec["status"] == "ok" and "SuccessiveHalvingPruner" in rec["sampler"]["pruner"]
    assert "pruned" in rec["point_status"] and rec["point_status"][0] == "ok"
    assert rec["choice"] in [p for p, s in zip(rec["points"], rec["point_status"]) if s == "ok"]
    pruned = [t for t in rec["trials"] if t["status"] == "skipped"]
    assert pruned and all(t["pruned_at_epoch"] in (2, 4) and len(t["val_history"]) == t["pruned_at_epoch"]
                          for t in pruned)
    done = next(t for t in rec["trials"] if t["status"] == "ok")
    plain = run_one(RunSpec("tiny-ap", "ce", "smoke", done["seed"], (), (), evaluate_test=False,
                            profile_params=(("lr", done["params"]["lr"]),)), _opts(tmp_path / "plain"))
    assert plain["key"] == done["key"] and plain["final_val_metric"] == pytest.approx(done["final_val_metric"])


def test_cli_protocol_writes_records_and_the_budget_line(tmp_path: Path, capsys) -> None:
    base = [*(x for f in FILES for x in ("--plugin", str(f))), "tune", "--task", "no-test-split", "--profile",
            "smoke", "--device", "cpu", "--no-progress", "--results-dir", str(tmp_path)]
    assert main([*base, "--protocol", "--method", "ce,hinge", "--trials", "2", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert sum(line.startswith("trial [lr=") for line in out) == 2 * 2 * 2
    assert any(line.startswith("trial [lr=") and ",margin=" in line for line in out)
    assert sum(line.startswith("tune no-test-split ") for line in out) == 2
    assert out[-1].startswith("tuned (validation only") and "2 trials × 2 seeds" in out[-1]
    recs = load_protocol_records(tmp_path, "smoke")
    assert sorted(r["method"] for r in recs) == ["ce", "hinge"]
    assert all(r["command"].startswith("python -m surrogate_bench tune --protocol") for r in recs)
    assert budget_line(recs) == out[-1] and "[0.1, 3]" in out[-1] and "halving off" in out[-1]
    assert tuned_label(recs[0]).startswith("tuned: 2 trials × 2 seeds, chosen val 0.")
    assert main([*base, "--protocol", "--method", "ce", "--seeds", "0"]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert main([*base, "--protocol", "--method", "ce", "--grid", "label_smoothing=0,1", "--budget", "2"]) == 2
    assert "drop --grid" in capsys.readouterr().err
    assert main([*base, "--method", "ce", "--grid", "label_smoothing=0,0.1"]) == 2
    assert "--budget" in capsys.readouterr().err


def test_budget_line_says_when_budgets_differ() -> None:
    def rec(method: str, n: int) -> dict:
        return {"kind": "tune", "status": "ok", "task": "t", "method": method, "profile": "quick",
                "protocol": TuneProtocol(n_trials=n).as_dict(), "choice_val_metric": 0.5}

    assert "DIFFERENT budgets" in budget_line([rec("ce", 8), rec("focal", 4)])
    assert budget_line([rec("ce", 8), rec("focal", 8)]).startswith("tuned (validation only")
    assert budget_line([]).startswith("tuned: no protocol tune records")
