"""Kill -9 and resume: a SIGKILLed run continues from its last complete epoch and ends with the same record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.running.checkpoint import checkpoint_path
from surrogate_bench.running.options import SimulatedCrash
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one
from surrogate_bench.store.records import read_record

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "tiny_ap_task.py"
TASK, PROFILE = "tiny-ap", "smoke"  # synthetic data, 6 short epochs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def comparable(rec: dict) -> dict:
    """What must match between an interrupted and an uninterrupted run (everything but times)."""
    hist = [{k: h[k] for k in ("epoch", "train_loss", "val_metric", "lr")} for h in rec["history"]]
    return {"status": rec["status"], "test_metric": rec["test_metric"], "best_val_metric": rec["best_val_metric"],
            "final_val_metric": rec["final_val_metric"], "history": hist}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """tiny-ap generates its data; an empty folder will do."""
    return tmp_path


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory) -> dict:
    """An uninterrupted run in this process."""
    load_plugins([PLUGIN])
    opts = RunOptions(results_dir=tmp_path_factory.mktemp("ref"), data_root=tmp_path_factory.mktemp("data"),
                      device=torch.device("cpu"), progress=False, log=lambda m: None)
    rec = run_one(RunSpec(TASK, "ce", PROFILE, 0), opts)
    assert rec["status"] == "ok", rec.get("reason")
    assert len(rec["history"]) == 6
    return rec


def cli(results_dir: Path, data_root: Path) -> list[str]:
    return [sys.executable, "-m", "surrogate_bench", "--plugin", str(PLUGIN), "run", "--task", TASK,
            "--method", "ce", "--profile", PROFILE, "--task-param", "step_delay_ms=20", "--device", "cpu",
            "--checkpoint-every", "0.15",
            "--data-root", str(data_root), "--results-dir", str(results_dir), "--no-progress"]


def ckpt_position(path: Path) -> tuple[int, int]:
    """(complete epochs, steps into the next epoch) of a checkpoint; (0, 0) while it is being replaced."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return 0, 0
    return int(state["epoch"]), int((state.get("mid_epoch") or {}).get("step", 0))


def start_and_kill(cmd: list[str], ckpt_dir: Path, log: Path) -> tuple[int, int]:
    """Start the command, SIGKILL it at a random moment after its first checkpoint; where it had got to."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list(ckpt_dir.glob("*.pt")):
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 1.0))  # "at any moment": mid-step, mid-save, between epochs
        assert proc.poll() is None, f"run ended before it could be killed: {log.read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return ckpt_position(next(ckpt_dir.glob("*.pt")))


def test_kill9_then_resume_equals_uninterrupted(reference, data_root, tmp_path) -> None:
    results = tmp_path / "results"
    cmd, ckpt_dir = cli(results, data_root), results / "checkpoints"
    epochs, step = start_and_kill(cmd, ckpt_dir, tmp_path / "kill.log")
    assert (epochs, step) != (0, 0) and epochs < 6
    assert not list((results / "runs").glob("**/*.json")), "a killed run must not leave a record"
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    where = f"from epoch {epochs}/6" + (f", step {step}" if step else "")
    assert f"resuming {TASK}/ce seed 0 {where}\n" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    records = list((results / "runs").glob("**/*.json"))
    assert len(records) == 1
    rec = read_record(records[0])
    assert rec is not None and comparable(rec) == comparable(reference)
    assert not list(ckpt_dir.glob("*.pt")), "the checkpoint of a finished run is removed"


def test_truncated_record_is_rerun(reference, data_root, tmp_path) -> None:
    results = tmp_path / "results"
    spec = RunSpec(TASK, "ce", PROFILE, 0)
    path = spec.record_path(results, spec.key_at(data_root))
    path.parent.mkdir(parents=True)
    blob = json.dumps({k: v for k, v in reference.items() if k != "reused"}, indent=1)
    path.write_text(blob[: len(blob) // 2])  # a half-written record (not atomic: e.g. copied by hand)
    assert read_record(path) is None
    opts = RunOptions(results_dir=results, data_root=data_root, device=torch.device("cpu"), progress=False,
                      log=lambda m: None)
    rec = run_one(spec, opts)
    assert not rec.get("reused") and comparable(rec) == comparable(reference)
    assert comparable(read_record(path)) == comparable(reference)
    assert path.stat().st_mode & 0o044 == 0o044 & ~_umask(), "records are readable like any other file written here"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other-key"])
def test_bad_checkpoint_means_fresh_start(damage, reference, data_root, tmp_path) -> None:
    results = tmp_path / "results"
    spec = RunSpec(TASK, "ce", PROFILE, 0)
    logs: list[str] = []
    opts = RunOptions(results_dir=results, data_root=data_root, device=torch.device("cpu"), progress=False,
                      log=logs.append)
    ckpt = checkpoint_path(results, spec.key_at(data_root))
    if damage == "garbage":
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"\x80\x04 not a checkpoint" * 100)
        (ckpt.parent / f".{ckpt.name}.x1y2.tmp").write_bytes(b"half a checkpoint")  # a kill during a save
    else:  # a real checkpoint after 2 epochs, then damaged or filed under another key
        other = RunSpec(TASK, "ce", PROFILE, 1) if damage == "other-key" else spec
        with pytest.raises(SimulatedCrash):
            run_one(other, RunOptions(**{**opts.__dict__, "stop_after_epochs": 2}))
        src = checkpoint_path(results, other.key_at(data_root))
        data = src.read_bytes()
        src.unlink()
        ckpt.write_bytes(data[: len(data) // 2] if damage == "truncated" else data)
    rec = run_one(spec, opts)
    assert any("ignoring checkpoint" in m for m in logs), logs
    assert not any(m.startswith("resuming") for m in logs)
    assert comparable(rec) == comparable(reference)
    assert not list(ckpt.parent.glob("*.tmp")), "stale partial checkpoints are cleaned up"


def test_resume_in_process_after_simulated_crash(reference, data_root, tmp_path) -> None:
    """The checkpoint hook path (crash between epochs) resumes to the identical record."""
    logs: list[str] = []
    opts = RunOptions(results_dir=tmp_path, data_root=data_root, device=torch.device("cpu"), progress=False,
                      log=logs.append)
    spec = RunSpec(TASK, "ce", PROFILE, 0)
    with pytest.raises(SimulatedCrash):
        run_one(spec, RunOptions(**{**opts.__dict__, "stop_after_epochs": 3}))
    assert read_record(spec.record_path(tmp_path, spec.key_at(data_root))) is None
    rec = run_one(spec, opts)
    assert any("from epoch 3/6" in m for m in logs)
    assert comparable(rec) == comparable(reference)


def test_resume_inside_an_epoch_after_interrupt(reference, data_root, tmp_path, monkeypatch) -> None:
    """Checkpoints inside an epoch (every step here): Ctrl-C at epoch 2 step 4 resumes at step 3, same record."""
    logs: list[str] = []
    opts = RunOptions(results_dir=tmp_path, data_root=data_root, device=torch.device("cpu"), progress=False,
                      log=logs.append, checkpoint_every_s=0.0)
    spec = RunSpec(TASK, "ce", PROFILE, 0)
    cls, calls = type(spec.build()[0]), [0]
    original = cls.inputs

    def interrupted(self, x, *, train, generator=None):
        calls[0] += train
        if train and calls[0] == 16 + 4:
            raise KeyboardInterrupt
        return original(self, x, train=train, generator=generator)

    monkeypatch.setattr(cls, "inputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_one(spec, opts)
    monkeypatch.setattr(cls, "inputs", original)
    assert read_record(spec.record_path(tmp_path, spec.key_at(data_root))) is None
    rec = run_one(spec, opts)
    assert f"resuming {TASK}/ce seed 0 from epoch 1/6, step 3" in logs
    assert comparable(rec) == comparable(reference)
