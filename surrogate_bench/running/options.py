"""How a run is asked to execute (where, with what limits) and the ways it may stop early."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass
class RunOptions:
    """Where a run reads and writes, on which device, and its limits; none of it is part of the key."""

    results_dir: Path
    data_root: Path
    device: torch.device
    force: bool = False
    download: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    # test hook: raise after this many epochs (simulates a crash between checkpoints)
    stop_after_epochs: int | None = None
    # also checkpoint inside an epoch when this many seconds passed since the last save (None: epoch ends only)
    checkpoint_every_s: float | None = 60.0
    # training step: auto (CUDA graph on CUDA, eager on CPU) | graph | compile | eager; None: $SURROGATE_BENCH_STEP_CAPTURE or auto
    step_capture: str | None = None
    # wall-clock deadline (time.time()): checkpoint and raise DeadlineReached once passed (--max-minutes)
    deadline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class DeadlineReached(RuntimeError):
    """``RunOptions.deadline`` passed: the run saved a checkpoint and stopped; the same command resumes it."""


class SimulatedCrash(RuntimeError):
    """Raised by the test hook ``stop_after_epochs`` to mimic a kill between epochs."""
