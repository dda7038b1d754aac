"""Facts about the machine and code a run record carries: versions, device, git commit; seeding."""

from __future__ import annotations

import functools
import platform
import random
import subprocess

import numpy as np
import torch

from .. import __version__
from ..paths import REPO_ROOT


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict:
    import torchvision

    return {
        "surrogate_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "host": platform.node(),
        "git_commit": git_commit(),
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
