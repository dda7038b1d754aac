"""Workers stop with their parent; Ctrl-C during start-up is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

TINY = str(PLUGINS / "tiny_ap_task.py")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

def tiny(results: Path, *extra: str) -> list[str]:
    return ["--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile", "smoke", "--device", "cpu",
            "--no-progress", "--results-dir", str(results), "--data-root", str(results.parent), *extra]

def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_workers_stop_with_the_parent(sig, tmp_path) -> None:
    cmd = [sys.executable, "-m", "surrogate_bench", *tiny(tmp_path / "results", "--seeds", "0,1", "--jobs", "2",
                                                          "--task-param", "step_delay_ms=200")]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline:  # wait until both workers run
            workers = [p for p in _children(parent.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
            if len(workers) == 2 and list((tmp_path / "results").glob("checkpoints/*.pt")):
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the workers did not start"
        parent.send_signal(sig)
        out, err = parent.communicate(timeout=60)
        if sig != signal.SIGKILL:
            assert parent.returncode == 128 + sig and "Traceback" not in err, (parent.returncode, err)
            assert err.strip().splitlines()[-1] in ("interrupted", "terminated"), err
        deadline = time.monotonic() + 30
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), "a worker outlived its parent"
        assert not list((tmp_path / "results").glob("runs/**/*.json")), "no record written after the parent left"
    finally:
        parent.kill()
        parent.wait()

_SIGINT_AT_IMPORT = """
import os, runpy, signal, sys
where = sys.argv[1]
class SigintAt:  # a real SIGINT, sent by the process itself the moment `where` starts importing
    def find_spec(self, name, path=None, target=None):
        if name == where:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, SigintAt())
sys.argv = ["surrogate_bench", "list"]
runpy.run_module("surrogate_bench", run_name="__main__", alter_sys=True)
"""

@pytest.mark.parametrize("where", ["torch", "torch.nn", "torch.optim", "surrogate_bench.plugins.registry"])
def test_ctrl_c_while_importing_torch_is_one_line(where) -> None:
    """SIGINT at the start of torch's import, inside it (torch.nn, torch.optim) and in the suite's own imports.

    The process sends the signal to itself when the import of ``where`` begins, so where it lands does not
    depend on how loaded the machine is (the earlier version polled /proc/<pid>/maps from outside and slept,
    which a busy machine could turn into an interrupt somewhere else, or into a timeout)."""
    proc = subprocess.run([sys.executable, "-c", _SIGINT_AT_IMPORT, where], capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 130 and proc.stderr == "interrupted\n", (proc.returncode, proc.stderr)
