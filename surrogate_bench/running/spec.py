"""What a run is: its spec, its key over the code and data it reads, and the spec resolved once.

A run's key covers its settings and the fingerprints of the code and data that produce it
(:mod:`surrogate_bench.store.provenance`). :func:`resolve` builds the task and method *once* and binds
them to the key and record path; everything downstream (reuse lookup, training, the record) takes that
:class:`Resolved` instead of building them again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..plugins.contracts import Method, Profile, Task
from ..plugins.registry import get_task, method_for
from ..store.provenance import code_fingerprint, data_fingerprint

if TYPE_CHECKING:
    from .options import RunOptions

# The protocol a record was produced under: profiles, splits, metric definitions and record semantics.
# Results compare only within one version (cells of different versions are never pooled); it is part of
# every key, so a new version never reuses an old record. 1: records before 0.2.0 (no field); 2: 0.2.0.
PROTOCOL_VERSION = 2
DATA_UNAVAILABLE = "unavailable"  # the data fingerprint of a run whose data files are missing: never reused


@dataclass(frozen=True)
class Fingerprints:
    """What code and which data a run reads (see :mod:`surrogate_bench.store.provenance`)."""

    code: str
    data: str


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run."""

    task: str
    method: str
    profile: str = "quick"
    seed: int = 0
    task_params: tuple[tuple[str, Any], ...] = ()
    method_params: tuple[tuple[str, Any], ...] = ()
    evaluate_test: bool = True  # False: a tuning trial, which never loads or scores the test split
    profile_params: tuple[tuple[str, Any], ...] = ()  # profile settings replaced (--profile-param lr=0.01)

    def profile_of(self, task: Task) -> Profile:
        """The profile this run trains with: the task's named profile with ``profile_params`` applied."""
        base = task.profile(self.profile)
        return base.override(**dict(self.profile_params)) if self.profile_params else base

    def build(self) -> tuple[Task, Method]:
        """The task and method objects this spec names (validated parameters)."""
        task = get_task(self.task, **dict(self.task_params))
        return task, method_for(task, self.method, **dict(self.method_params))

    def fingerprints(self, data_root: Path, built: tuple[Task, Method] | None = None) -> Fingerprints:
        """Code and data fingerprints; the data one is ``unavailable`` when a data file is missing."""
        task, method = built or self.build()
        try:
            data = data_fingerprint(task, Path(data_root))
        except Exception:  # DataUnavailable, or a file that cannot be read
            data = DATA_UNAVAILABLE
        return Fingerprints(code_fingerprint(task, method), data)

    def identity(self, fp: Fingerprints, built: tuple[Task, Method] | None = None) -> dict[str, Any]:
        """The JSON object a key hashes: settings of task, method and profile, the seed, the fingerprints."""
        task, method = built or self.build()
        out = {
            "protocol_version": PROTOCOL_VERSION,
            "task": task.config(),
            "method": method.config(),
            "profile": self.profile,
            "profile_settings": self.profile_of(task).as_dict(),
            "seed": self.seed,
            "code_fingerprint": fp.code,
            "data_fingerprint": fp.data,
        }
        if not self.evaluate_test:
            out["evaluate_test"] = False
        if self.profile_params:
            out["profile_params"] = dict(self.profile_params)
        return out

    def key(self, fp: Fingerprints, built: tuple[Task, Method] | None = None) -> str:
        blob = json.dumps(self.identity(fp, built), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def expected_fields(self) -> dict[str, Any]:
        """The fields a record of this run must carry besides its key (checked before a record is reused)."""
        return {"kind": "run", "task": self.task, "method": self.method, "profile": self.profile, "seed": self.seed}

    def key_at(self, data_root: Path) -> str:
        """The key of this run on the data under ``data_root`` with the code as it is now."""
        built = self.build()
        return self.key(self.fingerprints(data_root, built), built)

    def record_path(self, results_dir: Path, key: str) -> Path:
        """``runs/<profile>/<task>/<method>-s<seed>-<key>.json``; tuning trials under ``tuning/.../trials``."""
        where = ("runs", self.profile, self.task) if self.evaluate_test else ("tuning", self.profile, self.task, "trials")
        return Path(results_dir).joinpath(*where) / f"{self.method}-s{self.seed}-{key[:10]}.json"

    def label(self) -> str:
        """``task/method/s<seed>`` for log lines (with any profile overrides)."""
        extra = "{" + ",".join(f"{k}={v}" for k, v in self.profile_params) + "}" if self.profile_params else ""
        return f"{self.task}/{self.method}{extra}/s{self.seed}"


@dataclass(frozen=True)
class Resolved:
    """A spec bound to the code and data it would read now: its task, method, key, record path, data fault."""

    spec: RunSpec
    task: Task
    method: Method
    fp: Fingerprints
    key: str
    path: Path
    data_error: Exception | None = None


def resolve(spec: RunSpec, opts: "RunOptions") -> Resolved:
    """Build the task and method once and fingerprint code and data *before* any reuse lookup. Missing
    data files: with ``download`` the task's loader fetches (or extracts) them first; otherwise (or if that
    fails) the key carries ``unavailable`` and the fault, so the record is a data skip, never a reuse."""
    from .data_cache import load_task_data

    task, method = spec.build()
    code = code_fingerprint(task, method)
    error: Exception | None = None
    try:
        data = data_fingerprint(task, Path(opts.data_root))
    except Exception as exc:  # DataUnavailable, or an unreadable file
        data, error = DATA_UNAVAILABLE, exc
    if error is not None and opts.download and not method.supports(task):
        try:
            load_task_data(task, opts.data_root, True)
            data, error = data_fingerprint(task, Path(opts.data_root)), None
        except Exception as exc:
            error = exc
    fp = Fingerprints(code, data)
    key = spec.key(fp, (task, method))
    return Resolved(spec, task, method, fp, key, spec.record_path(opts.results_dir, key), error)
