"""CLI for humans: global options anywhere, suggestions, a listing with parameters, a quiet closed pipe,
smoke marked plumbing only, optional profiles, and progress bars that cost nothing per step."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from surrogate_bench.cli import main
from surrogate_bench.reporting.console import summary_line
from surrogate_bench.paths import REPO_ROOT
from cli_helpers import run_cli

TINY = str(REPO_ROOT / "tests" / "plugins" / "tiny_ap_task.py")


@pytest.fixture
def fresh_registry():
    from surrogate_bench.plugins import registry

    old = registry._REGISTRY
    registry._REGISTRY = None
    yield
    registry._REGISTRY = old


def test_global_options_before_or_after_the_subcommand(capsys, fresh_registry) -> None:
    code, out, _ = run_cli(capsys, "list", "--plugin", TINY)
    assert code == 0 and "tiny-ap" in out
    from surrogate_bench.cli import _merge_global_options, build_parser

    args = _merge_global_options(build_parser().parse_args(["--plugin", "a.py", "--no-progress", "list", "--plugin",
                                                            "b.py"]))
    assert args.plugin == ["a.py", "b.py"] and args.no_progress
    args = _merge_global_options(build_parser().parse_args(["run", "--all", "--no-progress"]))
    assert args.plugin == [] and args.no_progress


@pytest.mark.parametrize("argv,hint", [
    (["run", "--task", "mnist-ap", "--method", "unilos"], "did you mean 'uniloss'?"),
    (["run", "--task", "mnist_ap", "--method", "ce"], "did you mean 'mnist-ap'?"),
    (["run", "--task", "mnist-ap", "--method", "uniloss", "--method-param", "temprature=2"],
     "did you mean 'temperature'?"),
    (["run", "--task", "mnist-ap", "--method", "ce", "--profile", "quik"], "did you mean 'quick'?"),
])
def test_misspelled_names_get_the_nearest_ones(capsys, argv: list[str], hint: str) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and hint in err and len(err.strip().splitlines()) == 1


def test_list_shows_parameters_defaults_profiles_and_supported_tasks(capsys) -> None:
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "temperature=1.0" in out.split("\n  uniloss")[1] and "n_good=16" in out
    assert "tuned:    uniloss gain=10.0, temperature=2.0" in out
    assert "profiles: smoke (plumbing only), quick, paper" in out
    supports = {line.split(":", 1)[1].strip() for line in out.splitlines() if "supports:" in line}
    assert any("mnist-ap" in s and "synth-pose-pckh" not in s for s in supports)  # ce
    assert any("synth-pose-pckh" in s and "mnist-ap" not in s for s in supports)  # mse-heatmap


class _ClosedPipe(io.StringIO):
    """stdout whose reader has gone: every write raises BrokenPipeError; its fd is a pipe we own."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        return self.fd


def test_a_closed_pipe_stops_the_listing_quietly(monkeypatch, capsys) -> None:
    import os

    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", _ClosedPipe(write_end))
    try:
        assert main(["list"]) == 141
    finally:
        os.close(read_end)
        os.close(write_end)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_list_into_a_closed_pipe_is_quiet() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "surrogate_bench", "list"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line (as `| head` after its lines)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_smoke_is_marked_plumbing_only() -> None:
    rec = {"task": "t", "method": "m", "seed": 0, "status": "ok", "metric_name": "AP", "test_metric": 0.5,
           "best_val_metric": 0.5, "wall_time_s": 1.0}
    assert "plumbing only" in summary_line({**rec, "profile": "smoke"})
    assert "plumbing only" not in summary_line({**rec, "profile": "quick"})


def test_a_grid_leaves_out_a_task_without_the_profile(tmp_path: Path, capsys, fresh_registry) -> None:
    """Only smoke is required: a quick grid skips a smoke-only task with a note; alone it is an error."""
    from surrogate_bench.plugins.registry import load_plugin
    from surrogate_bench.launch.grid import build_specs

    plugin = tmp_path / "smoke_only.py"
    plugin.write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("tiny", {TINY!r})
        tiny = importlib.util.module_from_spec(spec); spec.loader.exec_module(tiny)
        from surrogate_bench.plugins.contracts import Profile
        class SmokeOnly(tiny.TinyAP):
            name = "smoke-only"
            profiles = {{"smoke": Profile(epochs=1, batch_size=64)}}
    """))
    load_plugin(plugin)
    specs = build_specs(["smoke-only", "mnist-ap"], ["ce"], "quick", [0], {}, {})
    assert [s.task for s in specs] == ["mnist-ap"]
    assert "smoke-only declares no profile 'quick'" in capsys.readouterr().err
    from surrogate_bench.plugins.errors import SuiteError

    with pytest.raises(SuiteError, match="has no profile 'quick'"):
        build_specs(["smoke-only"], ["ce"], "quick", [0], {}, {})


class _Loss:
    """A stand-in for the per-step loss tensor that counts device reads (``float``)."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, index: int) -> "_Loss":
        return self

    def __float__(self) -> float:
        self.reads += 1
        return 0.5


def test_step_bar_reads_the_loss_only_at_the_throttle_interval() -> None:
    from surrogate_bench.running.progress import StepBar, wanted

    loss = _Loss()
    quiet = StepBar(1000, 0, "x", enabled=False)
    for i in range(1000):
        quiet.step(loss, i)
    slow = StepBar(1000, 0, "x", enabled=True, interval=3600.0)
    slow.bar.fp = io.StringIO()
    for i in range(1000):
        slow.step(loss, i)
    assert loss.reads == 0 and slow.pending == 1000
    slow.epoch_done(1, 2, 0.5, 0.7)
    assert slow.bar.n == 1000 and slow.pending == 0
    every = StepBar(10, 0, "x", enabled=True, interval=0.0)
    every.bar.fp = io.StringIO()
    for i in range(10):
        every.step(loss, i)
    assert loss.reads == 10 and every.bar.n == 10
    for bar in (quiet, slow, every):
        bar.close()
    assert not wanted(stream=io.StringIO()) and not wanted(no_progress=True)
