"""--max-minutes: a run past its deadline checkpoints and stops (no record); the same command resumes it to the
record an uninterrupted run writes (the 10-minute-per-command GPU windows)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from surrogate_bench.cli import main
from surrogate_bench.launch.executors import LaunchConfig, execute, load_plugins
from surrogate_bench.running.checkpoint import checkpoint_path
from surrogate_bench.running.options import DeadlineReached, RunOptions
from surrogate_bench.running.runner import RunSpec, run_one

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "tiny_ap_task.py"
TASK = "tiny-ap"  # synthetic, 6 epochs of 16 steps


def comparable(rec: dict) -> dict:
    hist = [{k: h[k] for k in ("epoch", "train_loss", "val_metric", "lr")} for h in rec["history"]]
    return {"test_metric": rec["test_metric"], "history": hist}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    load_plugins([PLUGIN])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def options(tmp_path: Path, **kw) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", data_root=tmp_path, device=torch.device("cpu"),
                      progress=False, log=lambda m: None, **kw)


def test_deadline_checkpoints_mid_epoch_and_resumes_to_the_same_record(tmp_path: Path) -> None:
    spec = RunSpec(TASK, "ce", "smoke", 0)
    ref = run_one(spec, options(tmp_path / "ref"))
    opts = options(tmp_path, deadline=time.time() - 1)  # already past: stop after the first step
    with pytest.raises(DeadlineReached, match="epoch 1, step 1; checkpointed"):
        run_one(spec, opts)
    key = spec.key_at(opts.data_root)
    assert not spec.record_path(opts.results_dir, key).exists()
    state = torch.load(checkpoint_path(opts.results_dir, key), weights_only=True)
    assert state["epoch"] == 0 and state["mid_epoch"]["step"] == 1
    rec = run_one(spec, dataclasses.replace(opts, deadline=None))
    assert rec["status"] == "ok" and comparable(rec) == comparable(ref)
    assert rec["step_capture"] == "eager"


def test_sequential_grid_stops_before_starting_more(tmp_path: Path) -> None:
    specs = [RunSpec(TASK, "ce", "smoke", s) for s in (0, 1)]
    opts = options(tmp_path, deadline=time.time() - 1)
    with pytest.raises(DeadlineReached, match="2 run\\(s\\) not started"):
        list(execute(specs, opts, LaunchConfig()))


def test_cli_max_minutes_exits_3_then_resumes(tmp_path: Path, capsys, monkeypatch) -> None:
    argv = ["--plugin", str(PLUGIN), "run", "--task", TASK, "--method", "ce", "--profile", "smoke", "--device", "cpu",
            "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "results"), "--no-progress"]
    real_time = time.time
    calls = {"n": 0}

    def clock() -> float:  # the first call sets the deadline; every later one is past it
        calls["n"] += 1
        return real_time() + (0 if calls["n"] == 1 else 3600)

    monkeypatch.setattr(time, "time", clock)
    assert main([*argv, "--max-minutes", "5"]) == 3
    err = capsys.readouterr().err
    assert "stopped at --max-minutes 5" in err and "run the same command again to resume" in err
    assert list((tmp_path / "results" / "checkpoints").glob("*.pt")) == []  # stopped before starting: nothing
    monkeypatch.setattr(time, "time", real_time)
    assert main([*argv, "--max-minutes", "30"]) == 0
    assert "tiny-ap" in capsys.readouterr().out


def test_process_pool_starts_nothing_past_the_deadline(tmp_path: Path) -> None:
    specs = [RunSpec(TASK, "ce", "smoke", s) for s in (0, 1)]
    opts = options(tmp_path, deadline=time.time() - 1)
    with pytest.raises(DeadlineReached, match="0 run\\(s\\) checkpointed, 2 not started"):
        list(execute(specs, opts, LaunchConfig(jobs=2, device="cpu", plugins=(str(PLUGIN),))))


@pytest.mark.slow
def test_worker_processes_checkpoint_at_the_deadline_and_resume(tmp_path: Path) -> None:
    """Two workers on one device, cut mid-run: both checkpoint; the rerun ends with the uninterrupted records."""
    specs = [RunSpec(TASK, "ce", "smoke", s, (("step_delay_ms", 150),)) for s in (0, 1)]  # >= 14 s each
    refs = {s.seed: run_one(s, options(tmp_path / "ref")) for s in specs}
    cfg = LaunchConfig(jobs=2, device="cpu", plugins=(str(PLUGIN),))
    opts = options(tmp_path)
    with pytest.raises(DeadlineReached, match="2 run\\(s\\) checkpointed, 0 not started"):
        list(execute(specs, dataclasses.replace(opts, deadline=time.time() + 8), cfg))
    assert len(list((opts.results_dir / "checkpoints").glob("*.pt"))) == 2
    recs = {r["seed"]: r for r in execute(specs, opts, cfg)}
    assert all(comparable(recs[s]) == comparable(refs[s]) for s in refs)
