"""What every probe shares: its identity (a key and a provenance block from the same code and data
fingerprints as a training run, plus the probe's own sources) and its set-up (the task's data at the
profile, the task's shared pool, the method's prepared artifact)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..plugins.contracts import Method, PrepareContext, Profile, Task, TaskData
from ..plugins.errors import DataUnavailable
from ..plugins.registry import method_for
from ..store.provenance import code_fingerprint, data_fingerprint, provenance, source_digest
from ..running.data_cache import load_task_data
from ..running.options import RunOptions
from ..running.spec import DATA_UNAVAILABLE
from .pool import ProbePool, baseline_method, load_or_build_pool

PROBES_ROOT = Path(__file__).resolve().parent


def probe_code_fingerprint() -> str:
    """sha256 over the probe package's sources: a probe record is redone when the probe's code changes."""
    parts = [(p.name, source_digest(p)) for p in sorted(PROBES_ROOT.glob("*.py"))]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def safe_data_fingerprint(task: Task, data_root: Path, download: bool = False) -> str:
    """The task's data fingerprint, ``unavailable`` when a file is missing or unreadable (the record is then a
    data skip, never an ok record, never reused). With ``download``, the task's loader first fetches or
    extracts missing files, as for a run."""
    try:
        return data_fingerprint(task, Path(data_root))
    except Exception:  # DataUnavailable, or an unreadable file
        if not download:
            return DATA_UNAVAILABLE
    try:
        load_task_data(task, data_root, True)
        return data_fingerprint(task, Path(data_root))
    except Exception:
        return DATA_UNAVAILABLE


def data_unavailable(task: Task, data_root: Path) -> DataUnavailable:
    """Why the task's data could not be fingerprinted, as the data skip of a probe keyed ``unavailable``."""
    try:
        data_fingerprint(task, Path(data_root))
    except DataUnavailable as exc:
        return exc
    except Exception as exc:
        return DataUnavailable(f"{task.name}: its data files cannot be fingerprinted ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})")
    return DataUnavailable(f"{task.name}: its data files could not be fingerprinted when the probe was keyed; "
                           "run it again")


@dataclass(frozen=True)
class ProbeIdentity:
    """A probe record's key and the provenance it stores."""

    key: str
    data_fingerprint: str
    provenance: dict[str, Any]


def probe_identity(kind: str, task: Task, method: Method, profile: str, settings: dict[str, Any],
                   data_root: Path, download: bool = False) -> ProbeIdentity:
    """Key over (kind, task/method configs, profile, the probe's settings, code/data/probe-code fingerprints)."""
    code, probe_code = code_fingerprint(task, method), probe_code_fingerprint()
    data = safe_data_fingerprint(task, data_root, download)
    blob = json.dumps({"kind": kind, "task": task.config(), "method": method.config(), "profile": profile,
                       "settings": settings, "code_fingerprint": code, "data_fingerprint": data,
                       "probe_code_fingerprint": probe_code}, sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:20]
    return ProbeIdentity(key, data, {**provenance(task, method, code, data), "probe_code_fingerprint": probe_code})


def pool_file(task_name: str, profile: str, pool: ProbePool) -> dict[str, Any]:
    """What a record says about the pool file it read (not committed when large): name, size, sha256 and the
    command that rebuilds it (any probe of the task builds the pool; the same code and data give the same
    file on CPU)."""
    return {"bytes": int(pool.nbytes), "sha256": pool.digest,
            "regenerate": f"python -m surrogate_bench probe --task {task_name} --method ce --profile {profile} "
                          f"--threads 1 --results-dir results --data-root ../shared/data"}


def is_baseline(task: Task, method: Method, method_name: str) -> bool:
    """The method *is* the task's baseline loss at its default (tuned) parameters."""
    base = baseline_method(task)
    return method_name == base and method.p == method_for(task, base).p


@dataclass
class ProbeSetup:
    """The task's data at the profile, its shared pool and the method's prepared artifact."""

    profile: Profile
    data: TaskData
    pool: ProbePool
    artifact: Any


def prepare_probe(task: Task, method: Method, profile_name: str, opts: RunOptions, data_fp: str,
                  log: Callable[[str], None] | None = None) -> ProbeSetup:
    """The probe's data, pool and artifact; a probe keyed on ``unavailable`` data is a data skip (no pool is
    built or read for data that could not be fingerprinted)."""
    if data_fp == DATA_UNAVAILABLE:
        raise data_unavailable(task, opts.data_root)
    prof = task.profile(profile_name)
    data = load_task_data(task, opts.data_root, opts.download).limit(prof).to(opts.device)
    pool = load_or_build_pool(task, data, profile_name, opts.device, opts.results_dir, log or opts.log, data_fp=data_fp)
    ctx = PrepareContext(data=data, device=opts.device, profile=prof, profile_name=profile_name, seed=0,
                         artifacts_dir=Path(opts.results_dir) / "artifacts", log=log or opts.log)
    return ProbeSetup(prof, data, pool, method.prepare(task, ctx))
