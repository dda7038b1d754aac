"""Live progress on stderr: a bar over a run's training steps (rate, ETA, loss) and one over a grid's runs.

The step bar is throttled: a step costs a counter increment and a clock read; the bar is redrawn, and
the loss read from the device (the only host-device sync it causes), at most every ``interval`` seconds.
Bars are off with ``--no-progress`` and automatically when stderr is not a terminal (logs, CI).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from torch import Tensor
from tqdm.auto import tqdm


def wanted(no_progress: bool = False, stream: Any = None) -> bool:
    """Progress bars are drawn unless asked not to, and only on a terminal."""
    stream = sys.stderr if stream is None else stream
    return not no_progress and bool(getattr(stream, "isatty", lambda: False)())


class StepBar:
    """One run's steps over all its epochs (so the ETA is the run's); ``step(losses, i)`` after every step."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool, interval: float = 0.5) -> None:
        self.enabled, self.interval = enabled, interval
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, leave=False,
                        dynamic_ncols=True, mininterval=interval)
        self.pending, self.last, self.epoch = 0, time.perf_counter(), ""

    def step(self, losses: Tensor, index: int) -> None:
        """Count a step; at most every ``interval`` s redraw and show ``losses[index]`` (one device read)."""
        if not self.enabled:
            return
        self.pending += 1
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.bar.set_postfix_str(f"{self.epoch}loss {float(losses[index]):.4f}", refresh=False)
            self.bar.update(self.pending)
            self.pending, self.last = 0, now

    def epoch_done(self, epoch: int, epochs: int, train_loss: float, val: float) -> None:
        """At an epoch end (the values are on the host already): flush the count, show the epoch's means."""
        if not self.enabled:
            return
        self.epoch = f"epoch {min(epoch + 1, epochs)}/{epochs} "
        self.bar.set_postfix_str(f"epoch {epoch}/{epochs} loss {train_loss:.4f} val {val:.4f}", refresh=False)
        self.bar.update(self.pending)
        self.pending = 0

    def close(self) -> None:
        self.bar.close()


class GridBar:
    """The runs of a grid (``run_done`` after each record); ``write`` prints a line above the bars."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled and total > 1
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
