"""Facts about the machine a run record carries (device, threads, host); seeding; device choice."""

from __future__ import annotations

import platform
import random

import numpy as np
import torch

from .. import __version__


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict:
    """Where a record was produced: suite version, device, threads, host. The code's identity (git state,
    package versions, fingerprints) is the record's ``provenance`` block, kept once there."""
    return {
        "surrogate_bench": __version__,
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
    }


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy and random."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    from ..plugins.errors import SuiteError

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise SuiteError(f"bad --device {name!r}: expected cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SuiteError("--device cuda asked for, but CUDA is not available on this machine")
    return torch.device(name)
