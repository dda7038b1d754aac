"""A learned loss on disk: weights (.pt) + JSON sidecar with its sha256, built once under a file lock."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock

from ..plugins.errors import SuiteError
from ..store.records import atomic_write_bytes

BUILDS = {"count": 0}  # artifacts built in this process (tests check reuse with it)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def artifact_paths(artifacts_dir: Path, task_name: str, key: str) -> tuple[Path, Path]:
    stem = Path(artifacts_dir) / "reloss" / f"{task_name}-{key[:16]}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def read_artifact(weights: Path, sidecar: Path, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and sidecar of a cached artifact; ValueError/OSError when missing, mismatched or corrupted."""
    meta = json.loads(sidecar.read_text())
    if meta.get("key") != key:
        raise ValueError(f"{sidecar} is for another key")
    digest = sha256_file(weights)
    if digest != meta.get("sha256"):
        raise ValueError(f"sha256 of {weights} is {digest[:12]}..., sidecar says {str(meta.get('sha256'))[:12]}...")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} is not a state dict")
    return state, meta


def write_artifact(weights: Path, sidecar: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    """Weights first, then the sidecar naming their sha256 (a crash in between leaves no valid artifact)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    blob = buf.getvalue()
    atomic_write_bytes(weights, blob)
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest(), "weights": weights.name}
    atomic_write_bytes(sidecar, (json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n").encode())
    return meta


def load_or_build(artifacts_dir: Path, task_name: str, identity: dict[str, Any],
                  build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]],
                  log: Callable[[str], None]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The cached artifact for ``identity``, or a fresh one built (once, under a lock) and stored."""
    key = artifact_key(identity)
    weights, sidecar = artifact_paths(artifacts_dir, task_name, key)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(weights) + ".lock"):
        if sidecar.exists() or weights.exists():
            try:
                state, meta = read_artifact(weights, sidecar, key)
                log(f"reloss: reusing artifact {weights}")
                return state, {**meta, "path": str(weights), "reused": True}
            except Exception as exc:  # any unreadable or mismatched artifact is rebuilt
                log(f"reloss: artifact {weights} unusable ({str(exc).splitlines()[0]}); rebuilding")
        state, meta = build()
        BUILDS["count"] += 1
        meta = write_artifact(weights, sidecar, state, {"key": key, "identity": identity, **meta})
        log(f"reloss: built artifact {weights}")
        return state, {**meta, "path": str(weights), "reused": False}


def load_released(path: str, sha256: str) -> dict[str, torch.Tensor]:
    """Released weights from a local file whose sha256 is pinned; never downloads."""
    p = Path(path).expanduser()
    if not sha256:
        raise SuiteError(f"reloss weights {p}: set weights_sha256 to the file's pinned sha256")
    if not p.is_file():
        raise SuiteError(f"reloss weights file not found: {p} (download it yourself; the suite never does)")
    digest = sha256_file(p)
    if digest != sha256.lower():
        raise SuiteError(f"reloss weights {p}: sha256 {digest} does not match the pinned {sha256}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SuiteError(f"reloss weights {p}: unreadable as a torch state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SuiteError(f"reloss weights {p}: expected a state dict of tensors")
    return state
