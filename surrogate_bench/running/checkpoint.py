"""A run's checkpoint: the model, optimiser, schedule and RNG state written atomically, and read back only
when its structure and key fit this run (``torch.load(weights_only=True)``: no code is unpickled)."""

from __future__ import annotations

import copy
import io
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..store.records import atomic_write_bytes

CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str, "epoch": int, "model": dict, "optimizer": dict, "scheduler": dict, "rng": dict, "history": list,
    "train_time": (int, float), "seen": int}


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every RNG a run draws from (torch, CUDA, its generator, numpy, random) as tensors and lists."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "gen": gen.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": list(random.getstate()[1]) + [random.getstate()[0]],
    }


def set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["gen"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    r = state["random"]
    random.setstate((r[-1], tuple(r[:-1]), None))


def checkpoint_path(results_dir: Path, key: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{key}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a kill mid-save leaves the previous one)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def checkpoint_problem(state: Any, key: str) -> str | None:
    """Why a loaded checkpoint cannot resume the run ``key`` (None when its structure fits)."""
    if not isinstance(state, dict):
        return f"not a dict but {type(state).__name__}"
    for name, types in CHECKPOINT_FIELDS.items():
        if name not in state:
            return f"no {name!r}"
        if not isinstance(state[name], types) or isinstance(state[name], bool):
            return f"{name!r} is {type(state[name]).__name__}"
    if state["key"] != key:
        return "written for another run key"
    if len(state["history"]) != state["epoch"]:
        return f"claims {state['epoch']} epoch(s) done but holds {len(state['history'])} history entries"
    mid = state.get("mid_epoch")
    if mid is not None and not (isinstance(mid, dict) and isinstance(mid.get("step"), int)
                                and isinstance(mid.get("perm"), Tensor) and isinstance(mid.get("losses"), Tensor)):
        return "malformed 'mid_epoch'"
    return None


def load_checkpoint(path: Path, key: str, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The checkpoint for this key, or None if missing, unreadable, malformed or for another key (``log``
    hears why, except when it is missing)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        problem = f"unreadable ({type(exc).__name__})"
    else:
        problem = checkpoint_problem(state, key)
    if problem is not None:
        if log:
            log(f"ignoring checkpoint {path}: {problem}; starting from scratch")
        return None
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            gen: torch.Generator, epochs: int, steps_per_epoch: int, where: Path,
            log: Callable[[str], None]) -> dict[str, Any] | None:
    """Load a checkpoint into the run's objects; a checkpoint that loads but does not fit (other shapes,
    broken RNG state, progress out of range) is ignored, not fatal: the objects are put back as they were
    and None is returned. Otherwise: ``history``, ``epoch``, ``train_time``, ``seen`` and ``mid`` (the
    in-epoch position, or None)."""
    fresh = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "rng": rng_state(gen)})
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], gen)
        epoch, mid = int(state["epoch"]), state.get("mid_epoch")
        if not 0 <= epoch <= epochs or (mid and not 0 < int(mid["step"]) < steps_per_epoch):
            raise ValueError(f"epoch {epoch} / step {mid and mid['step']} out of range")
    except Exception as exc:
        log(f"ignoring checkpoint {where}: it does not fit this run ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); starting from scratch")
        model.load_state_dict(fresh["model"])
        optimizer.load_state_dict(fresh["optimizer"])
        scheduler.load_state_dict(fresh["scheduler"])
        set_rng_state(fresh["rng"], gen)
        return None
    return {"history": list(state["history"]), "epoch": epoch, "train_time": float(state["train_time"]),
            "seen": int(state["seen"]), "mid": mid}
