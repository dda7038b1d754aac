"""--progress auto|bar|log|off: without a terminal, flushed log lines (label, step/total, loss, samples/s, ETA) at
epoch ends and at most every LOG_EVERY_S inside long epochs; the loss is read from the device only when printed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.running import progress
from surrogate_bench.running.progress import GridBar, StepBar, resolve_mode
from cli_helpers import run_cli

TINY = str(Path(__file__).resolve().parents[1] / "plugins" / "tiny_ap_task.py")


class _Loss:
    """A stand-in for the per-step loss tensor that counts device reads (``float``)."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, index: int) -> "_Loss":
        return self

    def __float__(self) -> float:
        self.reads += 1
        return 0.25


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_modes() -> None:
    assert resolve_mode("auto", io.StringIO()) == "log" and resolve_mode("auto", _Tty()) == "bar"
    assert resolve_mode(True) == "bar" and resolve_mode(False) == "off" and resolve_mode("off") == "off"
    with pytest.raises(SuiteError, match="did you mean 'bar'"):
        resolve_mode("baar")


def test_log_lines_carry_label_step_loss_rate_and_eta() -> None:
    out, loss = io.StringIO(), _Loss()
    progress.register_batch_size("t/m/s0", 32)
    bar = StepBar(100, 0, "t/m/s0", "log", stream=out, log_every=0.0, epoch_gap=0.0)
    bar.epoch = "epoch 1/2 "
    for i in range(50):
        bar.step(loss, i)
    lines = out.getvalue().splitlines()
    assert len(lines) == 50 and loss.reads == 50
    assert re.fullmatch(r"\[t/m/s0\] epoch 1/2 step 50/100 loss 0\.2500 \d+ samples/s ETA \d+:\d\d", lines[-1]), lines[-1]
    bar.epoch_done(1, 2, 0.3, 0.9)
    assert "epoch 1/2 done, loss 0.3000 val 0.9000" in out.getvalue().splitlines()[-1]
    n = len(out.getvalue().splitlines())
    bar.epoch_done(2, 2, 0.2, 0.95)  # the last epoch: the run's own result line follows
    assert len(out.getvalue().splitlines()) == n
    bar.close()


def test_log_mode_reads_the_loss_only_when_it_prints() -> None:
    out, loss = io.StringIO(), _Loss()
    bar = StepBar(1000, 0, "x", "log", stream=out, log_every=3600.0, epoch_gap=3600.0)
    for i in range(1000):
        bar.step(loss, i)
    bar.epoch_done(1, 3, 0.5, 0.7)  # shorter than the gap: coalesced
    assert loss.reads == 0 and out.getvalue() == "" and bar.done == 1000
    bar.close()
    unknown = StepBar(10, 0, "no-batch-size", "log", stream=out, log_every=0.0)
    unknown.step(loss, 0)
    assert "steps/s" in out.getvalue()


def test_off_and_grid_bar() -> None:
    loss = _Loss()
    bar = StepBar(10, 0, "x", "off")
    for i in range(10):
        bar.step(loss, i)
    bar.epoch_done(1, 1, 0.1, 0.2)
    assert loss.reads == 0
    assert not GridBar(5, "log").enabled and GridBar(5, "bar").enabled is True


def test_run_without_a_terminal_logs_epochs(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(progress, "LOG_EPOCH_GAP_S", 0.0)
    code, out, err = run_cli(capsys, "--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile",
                             "smoke", "--device", "cpu", "--results-dir", str(tmp_path / "r"), "--data-root",
                             str(tmp_path))  # capsys: stderr is no terminal, so auto -> log
    assert code == 0, err
    epochs = [ln for ln in err.splitlines() if ln.startswith("[tiny-ap/ce/s0] step ")]
    assert len(epochs) == 5 and "epoch 1/6 done" in epochs[0], err  # 6 epochs, the last one is the result line
    assert all("samples/s" in ln and "ETA" in ln for ln in epochs)
    code, _, err = run_cli(capsys, "--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile",
                           "smoke", "--seeds", "1", "--device", "cpu", "--results-dir", str(tmp_path / "r"),
                           "--data-root", str(tmp_path), "--no-progress")
    assert code == 0 and "[tiny-ap" not in err


def test_no_progress_is_an_alias_of_off() -> None:
    from surrogate_bench.cli import _merge_global_options, build_parser

    args = _merge_global_options(build_parser().parse_args(["run", "--all", "--no-progress"]))
    assert args.progress == "off"
    args = _merge_global_options(build_parser().parse_args(["--progress", "bar", "run", "--all"]))
    assert args.progress == "bar"
    args = _merge_global_options(build_parser().parse_args(["run", "--all", "--progress", "log"]))
    assert args.progress == "log"
