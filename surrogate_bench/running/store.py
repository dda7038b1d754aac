"""The result store: one JSON record per run or probe, written atomically, gathered with pandas."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
from filelock import FileLock

from ..plugins.errors import DataUnavailable, SuiteError

RECORD_KINDS = ("run", "probe", "tune")
STATUSES = ("ok", "failed", "skipped")
REQUIRED = ("kind", "key", "status", "task", "method", "profile")


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are shared like any file written here
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN / inf become None so the file stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(_clean(record), indent=1, sort_keys=True) + "\n").encode())


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is missing, truncated or not a valid record."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED) or rec["status"] not in STATUSES:
        return None
    return rec


def recorded(path: Path, force: bool, base: Callable[[], dict[str, Any]], skip_reason: str | None,
             work: Callable[[], dict[str, Any]], passthrough: tuple[type[BaseException], ...] = (),
             key: str | None = None) -> dict[str, Any]:
    """One unit of work (a run, a probe) kept as the record at ``path``: an ok record is reused (``reused``
    marks it) unless ``force`` or (given ``key``) its stored key is another; otherwise, under a per-path file lock (rechecked once held), the record
    ``base()`` gets ``skip_reason`` as an unsupported skip, or ``work()``'s results with status ok,
    a data skip (DataUnavailable) or a failure with its reason; then its wall time, and it is written
    atomically. Exceptions in ``passthrough`` propagate; an unwritable record is a SuiteError."""
    def reusable() -> dict[str, Any] | None:
        rec = read_record(path)
        ok = rec is not None and rec["status"] == "ok" and (key is None or rec["key"] == key)
        return {**rec, "reused": True} if ok and not force else None

    if (done := reusable()) is not None:
        return done
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (done := reusable()) is not None:  # another process may have finished it while we waited
            return done
        record = base()
        t0 = time.perf_counter()
        try:
            if skip_reason:
                record.update(status="skipped", reason=skip_reason, skip="unsupported")
            else:
                record.update(work())
                record["status"] = "ok"
        except DataUnavailable as exc:
            record.update(status="skipped", reason=str(exc), skip="data")
        except (KeyboardInterrupt, *passthrough):
            raise
        except Exception as exc:
            record.update(status="failed", reason=f"{type(exc).__name__}: {exc}".strip(),
                          traceback=traceback.format_exc(limit=8))
        record["wall_time_s"] = round(time.perf_counter() - t0, 3)
        try:
            write_record(path, record)
        except OSError as exc:  # results dir became unwritable / full: a whole-command error
            raise SuiteError(f"cannot write record {path}: {exc.strerror or exc}") from None
        return record


def check_writable(results_dir: Path) -> None:
    """Fail early, in one line, when the results directory cannot be written."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=results_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise SuiteError(f"results directory {results_dir} is not writable: {exc.strerror or exc}") from None


def iter_records(results_dir: Path, kind: str | None = None) -> Iterator[dict[str, Any]]:
    for path in sorted(Path(results_dir).glob("**/*.json")):
        rec = read_record(path)
        if rec is not None and (kind is None or rec.get("kind") == kind):
            yield rec


def records_frame(results_dir: Path, kind: str = "run") -> pd.DataFrame:
    """All valid records of one kind as a flat DataFrame (one row per record)."""
    rows = list(iter_records(results_dir, kind))
    if not rows:
        return pd.DataFrame(columns=[*REQUIRED, "seed", "test_metric"])
    return pd.json_normalize(rows, max_level=0)
