"""What executors hand back is checked, never believed: submitit result pickles are never unpickled (a fresh
folder per launch; the run's own JSON record instead), a dead worker's failed stub never replaces a good
record, a worker's record must be this run's, repeated specs run once, and every launcher stops in one line."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from surrogate_bench.launch import executors
from surrogate_bench.launch.executors import LaunchConfig, execute, load_plugins
from surrogate_bench.running.options import RunOptions
from surrogate_bench.running.runner import base_record
from surrogate_bench.running.spec import RunSpec, resolve
from surrogate_bench.store.records import read_record, write_record

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TINY, FAST, EXIT = (str(PLUGINS / n) for n in ("tiny_ap_task.py", "tiny_fast_task.py", "exit_method.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def _plugins() -> None:
    load_plugins([TINY, FAST, EXIT])


def _opts(tmp_path: Path, **kw) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", data_root=tmp_path, device=torch.device("cpu"),
                      progress=False, log=kw.pop("log", lambda m: None), **kw)


class _Evil:
    """Unpickling this creates ``marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder: Path, job_id: str, marker: Path) -> None:
    fake = {"kind": "run", "key": "0" * 20, "status": "ok", "test_metric": 1.0}
    (folder / f"{job_id}_0_result.pkl").write_bytes(pickle.dumps(("success", [_Evil(marker), fake])))


def test_submitit_local_never_unpickles_a_result_and_a_dead_job_gets_a_failed_record(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    import submitit.local.local as sl

    marker = tmp_path / "UNPICKLED"
    stale = tmp_path / "results" / "submitit"
    stale.mkdir(parents=True)
    first = int(Path("/proc/sys/kernel/ns_last_pid").read_text()) if Path("/proc/sys/kernel/ns_last_pid").exists() else 1
    for pid in range(first, first + 200):  # an old launch's files under every job id likely to come next
        _plant(stale, str(pid), marker)
    real = sl.start_controller

    def planting(folder, *args, **kw):  # a stale result of this very job id inside the launch's folder
        proc = real(folder, *args, **kw)
        _plant(Path(folder), str(proc.pid), marker)
        return proc

    monkeypatch.setattr(sl, "start_controller", planting)
    spec = RunSpec("tiny-fast", "exit-now", "smoke", 0)
    opts = _opts(tmp_path)
    cfg = LaunchConfig(launcher="submitit-local", jobs=1, device="cpu", plugins=(TINY, FAST, EXIT), poll_s=0.2)
    recs = list(execute([spec], opts, cfg))
    assert not marker.exists(), "a result pickle was unpickled"
    assert len(recs) == 1 and recs[0]["status"] == "failed", recs
    assert "ended without writing its record" in recs[0]["reason"] and "log:" in recs[0]["reason"]
    r = resolve(spec, opts)
    on_disk = read_record(r.path, r.key, expect=spec.expected_fields())
    assert on_disk is not None and on_disk["status"] == "failed"
    launches = [p for p in stale.iterdir() if p.is_dir()]
    assert len(launches) == 1 and launches[0].name.count("-") >= 3  # <time>-<pid>-<random>, fresh per launch


def _ok_record(spec: RunSpec, opts: RunOptions) -> Path:
    r = resolve(spec, opts)
    rec = {**base_record(spec, r.key, r.task, r.method, opts, r.fp), "status": "ok", "test_metric": 0.5,
           "epochs": 1, "history": [{"epoch": 1, "val_metric": 0.5}]}
    write_record(r.path, rec)
    assert read_record(r.path, r.key, expect=spec.expected_fields()) is not None
    return r.path


def test_jobs_force_with_a_killed_worker_keeps_the_good_record(tmp_path):
    opts = _opts(tmp_path, force=True)
    specs = [RunSpec("tiny-fast", "exit-now", "smoke", s) for s in (0, 1)]
    good = _ok_record(specs[0], opts)
    before = good.read_bytes()
    recs = list(execute(specs, opts, LaunchConfig(jobs=2, device="cpu", plugins=(TINY, FAST, EXIT))))
    assert [r["status"] for r in recs] == ["failed", "failed"]
    kept = [r for r in recs if r["seed"] == 0][0]
    assert "the earlier ok record" in kept["reason"] and "is kept" in kept["reason"]
    assert good.read_bytes() == before, "the parent replaced a good record with a failed stub"
    other = resolve(specs[1], opts)
    assert read_record(other.path, other.key)["status"] == "failed"  # none was there: the stub is written


def test_a_worker_record_that_is_not_this_runs_is_refused(tmp_path):
    r = resolve(RunSpec("tiny-fast", "ce", "smoke", 0), _opts(tmp_path))
    foreign = {"kind": "run", "key": "f" * 20, "status": "ok", "task": "tiny-fast", "method": "ce",
               "profile": "smoke", "seed": 0, "metric_name": "ap", "environment": {}, "test_metric": 1.0,
               "epochs": 1}
    kind, why = executors._checked(("record", foreign), r)
    assert kind == "lost" and "not this run's" in why
    assert executors._checked(("record", [1, 2]), r)[0] == "lost"
    assert executors._checked("garbage", r)[0] == "died"


def test_repeated_specs_run_once_sequentially_with_one_note(tmp_path):
    logs: list[str] = []
    opts = _opts(tmp_path, log=logs.append)
    spec = RunSpec("tiny-fast", "ce", "smoke", 0)
    recs = list(execute([spec, spec, RunSpec("tiny-fast", "ce", "smoke", 1), spec], opts, LaunchConfig(device="cpu")))
    assert [r["seed"] for r in recs] == [0, 1] and not any(r.get("reused") for r in recs)
    notes = [m for m in logs if "repeated" in m]
    assert len(notes) == 1 and "2 repeated" in notes[0] and "tiny-fast/ce/s0" in notes[0], logs


def _alive_under(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (a submitit controller or job of this test)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "group-SIGINT"])
def test_stopping_a_submitit_local_run_is_one_line(how, tmp_path):
    pytest.importorskip("submitit")
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "surrogate_bench", "--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce",
           "--profile", "smoke", "--seeds", "0", "--device", "cpu", "--no-progress", "--launcher", "submitit-local",
           "--task-param", "step_delay_ms=150", "--results-dir", str(results), "--data-root", str(tmp_path)]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not list(results.glob("checkpoints/*.pt")):
            time.sleep(0.3)
        assert list(results.glob("checkpoints/*.pt")), "the job did not start training"
        if how == "group-SIGINT":  # a terminal's Ctrl-C reaches the whole process group
            os.killpg(parent.pid, signal.SIGINT)
        else:
            parent.send_signal(getattr(signal, how))
        out, err = parent.communicate(timeout=60)
        sig = signal.SIGTERM if how == "SIGTERM" else signal.SIGINT
        assert parent.returncode == 128 + sig, (parent.returncode, err)
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("plan: ")]  # the CLI's opening line
        assert "Traceback" not in err and lines == ["terminated" if how == "SIGTERM" else "interrupted"], err
        deadline = time.monotonic() + 30
        while _alive_under(results) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not _alive_under(results), "a submitit job outlived its parent"
        assert not list(results.glob("runs/**/*.json")), "no record is written for a stopped run"
    finally:
        with pytest.MonkeyPatch.context():
            try:
                os.killpg(parent.pid, signal.SIGKILL)
            except OSError:
                pass
        parent.wait()


def test_a_submitit_local_job_stopped_at_the_deadline_says_so_in_its_own_file(tmp_path):
    """The job's non-record outcomes (a deadline, a whole-command error) come back as a JSON file of this launch,
    not as a result pickle: the command stops with exit 3 and no failed stub is written for the checkpointed run."""
    pytest.importorskip("submitit")
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "surrogate_bench", "--plugin", TINY, "run", "--task", "tiny-ap",
                           "--method", "ce", "--profile", "smoke", "--seeds", "0", "--device", "cpu", "--no-progress",
                           "--launcher", "submitit-local", "--max-minutes", "0.1", "--task-param", "step_delay_ms=100",
                           "--results-dir", str(results), "--data-root", str(tmp_path)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert "1 run(s) checkpointed" in done.stderr.strip().splitlines()[-1]
    assert not list(results.glob("runs/**/*.json")) and list(results.glob("checkpoints/*.pt"))
