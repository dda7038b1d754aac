"""Live progress on stderr: a bar over a run's training steps (rate, ETA, loss) and one over a grid's runs,
or -- without a terminal -- plain log lines that reach a job log (nohup, Slurm, submitit).

Modes (``--progress``, carried by ``RunOptions.progress``): ``bar`` (tqdm), ``log`` (lines), ``off``, and ``auto``
(``bar`` on a terminal, else ``log``). ``True`` / ``False`` still mean ``bar`` / ``off`` (the 0.1 booleans).

Both are throttled: a step costs a counter increment and a clock read; the bar is redrawn, and the loss read
from the device (the only host-device sync progress causes), at most every ``interval`` seconds. A log line
is written at an epoch's end (epochs shorter than :data:`LOG_EPOCH_GAP_S` are coalesced, so a seconds-long
run does not print twenty lines) and at most every :data:`LOG_EVERY_S` seconds inside a long epoch: run label,
epoch, step/total, loss, samples/s (steps/s when the batch size is unknown), ETA; each line is flushed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from torch import Tensor
from tqdm.auto import tqdm

MODES = ("auto", "bar", "log", "off")
LOG_EVERY_S = 30.0  # inside an epoch: at most one log line per this many seconds
LOG_EPOCH_GAP_S = 5.0  # at an epoch's end: a line unless the previous one is more recent than this
# run label (``task/method/s<seed>``, as the runner names a run) -> its batch size, registered by the launcher
# before a grid runs so log lines can say samples/s (the runner passes StepBar no batch size)
BATCH_SIZES: dict[str, int] = {}


def wanted(no_progress: bool = False, stream: Any = None) -> bool:
    """Progress bars are drawn unless asked not to, and only on a terminal."""
    stream = sys.stderr if stream is None else stream
    return not no_progress and _isatty(stream)


def _isatty(stream: Any) -> bool:
    try:
        return bool(getattr(stream, "isatty", lambda: False)())
    except (OSError, ValueError):  # a closed stream
        return False


def resolve_mode(mode: Any = "auto", stream: Any = None) -> str:
    """``bar``, ``log`` or ``off`` for a ``--progress`` value (``auto``: bar on a terminal, else log) or a bool."""
    if mode is True:
        return "bar"
    if mode is False or mode is None:
        return "off"
    mode = str(mode).lower()
    if mode not in MODES:
        from ..plugins.errors import SuiteError
        from ..plugins.suggest import did_you_mean

        raise SuiteError(f"bad --progress {mode!r}{did_you_mean(mode, MODES)}: expected one of {', '.join(MODES)}")
    if mode == "auto":
        return "bar" if _isatty(sys.stderr if stream is None else stream) else "log"
    return mode


def register_batch_size(label: str, batch_size: int) -> None:
    """Let the log lines of run ``label`` say samples/s."""
    BATCH_SIZES[label] = int(batch_size)


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StepBar:
    """One run's steps over all its epochs (so the ETA is the run's); ``step(losses, i)`` after every step.

    ``enabled`` is a mode (``bar`` / ``log`` / ``off`` / ``auto``) or a bool (True: bar)."""

    def __init__(self, total: int, initial: int, desc: str, enabled: Any, interval: float = 0.5,
                 stream: Any = None, log_every: float | None = None, epoch_gap: float | None = None) -> None:
        self.mode = resolve_mode(enabled)
        self.enabled = self.mode != "off"
        self.interval = interval
        self.log_every = LOG_EVERY_S if log_every is None else log_every
        self.epoch_gap = LOG_EPOCH_GAP_S if epoch_gap is None else epoch_gap
        self.total, self.desc, self.stream = total, desc, stream
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=self.mode != "bar", leave=False,
                        dynamic_ncols=True, mininterval=interval)
        self.pending, self.last, self.epoch = 0, time.perf_counter(), ""
        self.done, self.start_done, self.t0 = initial, initial, self.last  # log mode: steps done, and since when
        self.last_line = self.t0
        self.batch_size = BATCH_SIZES.get(desc)

    def step(self, losses: Tensor, index: int) -> None:
        """Count a step; at most every ``interval`` s redraw and show ``losses[index]`` (one device read)."""
        if not self.enabled:
            return
        self.pending += 1
        now = time.perf_counter()
        if self.mode == "log":
            if now - self.last_line >= self.log_every:
                self._line(now, f"loss {float(losses[index]):.4f}")
            return
        if now - self.last >= self.interval:
            self.bar.set_postfix_str(f"{self.epoch}loss {float(losses[index]):.4f}", refresh=False)
            self.bar.update(self.pending)
            self.pending, self.last = 0, now

    def epoch_done(self, epoch: int, epochs: int, train_loss: float, val: float) -> None:
        """At an epoch end (the values are on the host already): flush the count, show the epoch's means."""
        if not self.enabled:
            return
        if self.mode == "log":
            now = time.perf_counter()
            note = f"epoch {epoch}/{epochs} done, loss {train_loss:.4f} val {val:.4f}"
            self.epoch = f"epoch {min(epoch + 1, epochs)}/{epochs} "
            if now - self.last_line >= self.epoch_gap and epoch < epochs:
                self._line(now, note, with_epoch=False)
            else:
                self._count()
            return
        self.epoch = f"epoch {min(epoch + 1, epochs)}/{epochs} "
        self.bar.set_postfix_str(f"epoch {epoch}/{epochs} loss {train_loss:.4f} val {val:.4f}", refresh=False)
        self.bar.update(self.pending)
        self.pending = 0

    def _count(self) -> None:
        self.done += self.pending
        self.pending = 0

    def _line(self, now: float, what: str, with_epoch: bool = True) -> None:
        """One flushed log line: label, [epoch,] step/total, ``what`` (loss), rate, ETA."""
        self._count()
        elapsed = now - self.t0
        steps = self.done - self.start_done
        rate = steps / elapsed if elapsed > 0 else float("nan")
        if self.batch_size:
            speed = f"{rate * self.batch_size:.0f} samples/s"
        else:
            speed = f"{rate:.1f} steps/s"
        eta = (self.total - self.done) / rate if rate and rate == rate else float("nan")
        epoch = self.epoch if with_epoch else ""
        line = (f"[{self.desc}] {epoch}step {self.done}/{self.total} {what} {speed} ETA {_clock(eta)}")
        stream = self.stream or sys.stderr
        try:
            print(line, file=stream, flush=True)
        except (OSError, ValueError):  # a closed log: progress is never worth failing a run for
            pass
        self.last_line = now

    def close(self) -> None:
        self.bar.close()


class GridBar:
    """The runs of a grid (``run_done`` after each record); ``write`` prints a line above the bars.

    ``enabled`` is a mode or a bool as for :class:`StepBar`; only ``bar`` draws (the lines are printed anyway)."""

    def __init__(self, total: int, enabled: Any) -> None:
        self.enabled = resolve_mode(enabled) == "bar" and total > 1
        self.bar = tqdm(total=total, desc="grid", unit="run", disable=not self.enabled, dynamic_ncols=True)

    def run_done(self, line: str) -> None:
        self.write(line)
        self.bar.update(1)

    def write(self, line: str) -> None:
        if self.enabled:
            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()
