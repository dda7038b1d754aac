"""The result store: one JSON record per run or probe, written atomically, gathered with pandas."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import stat
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pandas as pd
from filelock import FileLock

from ..plugins.errors import DataUnavailable, SuiteError

RECORD_KINDS = ("run", "probe", "tune", "descent")
STATUSES = ("ok", "failed", "skipped")
REQUIRED = ("kind", "key", "status", "task", "method", "profile")
SEED_MAX = 2**63 - 1  # as plugins.contracts.SEED_MAX (not imported: reading records needs no torch)
DATA_UNAVAILABLE = "unavailable"  # as running.spec.DATA_UNAVAILABLE: the data fingerprint of missing data


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


MAX_READ_BYTES = 256 << 20  # a record, cache or outcome file is small; anything larger is not one


def read_regular(path: Path, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of the regular file at ``path``, opened without blocking: a FIFO, device or directory named
    like a record (which a plain read would hang on or stream forever) is an OSError, as is a file over
    ``limit`` bytes. A missing file is FileNotFoundError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB", str(path))
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(_clean(record), indent=1, sort_keys=True) + "\n").encode())


_NUMBER = (int, float)
# field -> (allowed types, required in every record of that kind, required when status is ok); extra fields are kept
_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool, bool]]] = {
    "common": {"kind": ((str,), True, True), "key": ((str,), True, True), "status": ((str,), True, True),
               "task": ((str,), True, True), "method": ((str,), True, True), "profile": ((str,), True, True),
               "reason": ((str,), False, False), "skip": ((str,), False, False), "metric_name": ((str,), False, True),
               "task_params": ((dict,), False, False), "method_params": ((dict,), False, False),
               "environment": ((dict,), False, False), "wall_time_s": (_NUMBER, False, False),
               "provenance": ((dict,), False, False)},
    "run": {"environment": ((dict,), False, True), "seed": ((int,), True, True), "test_metric": (_NUMBER, False, True),
            "best_val_metric": (_NUMBER, False, False), "final_val_metric": (_NUMBER, False, False),
            "higher_is_better": ((bool,), False, False), "epochs": ((int,), False, True),
            "history": ((list,), False, False), "profile_settings": ((dict,), False, False)},
    "probe": {"environment": ((dict,), False, True), "spearman": (_NUMBER, False, False), "spearman_ci_low": (_NUMBER, False, False),
              "spearman_ci_high": (_NUMBER, False, False), "kendall": (_NUMBER, False, False),
              "n_batches": ((int,), False, True), "points": ((list,), False, False)},
    "tune": {"seeds": ((list,), False, False), "trials": ((list,), False, True), "points": ((list,), False, False),
             "choice": ((dict,), False, False), "choice_val_metric": (_NUMBER, False, False)},
    "descent": {"improvement": (_NUMBER, False, True), "improvement_ci_low": (_NUMBER, False, False),
                "improvement_ci_high": (_NUMBER, False, False)},
}


def _number_or_none(value: Any) -> bool:
    return value is None or isinstance(value, _NUMBER) and not isinstance(value, bool)


def record_problem(rec: Any, expected_key: str | None = None, expect: Mapping[str, Any] | None = None) -> str | None:
    """Why ``rec`` is not a valid record (of ``expected_key`` and with the field values in ``expect``, when
    given), or None when it is.

    Checks the core fields and the types of the fields readers use; any other field is allowed. An ok run
    must carry a finite test metric (a missing metric is never reported as a result); numbers may be
    ``null`` (how non-finite values are stored) only where the record allows a missing value.
    """
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    if rec.get("kind") not in RECORD_KINDS:
        return f"kind {rec.get('kind')!r} is not one of {', '.join(RECORD_KINDS)}"
    if rec.get("status") not in STATUSES:
        return f"status {rec.get('status')!r} is not one of {', '.join(STATUSES)}"
    ok = rec["status"] == "ok"
    trial = rec["kind"] == "run" and rec.get("evaluate_test") is False  # a tuning trial has no test metric
    for name, (types, required, required_ok) in {**_FIELDS["common"], **_FIELDS[rec["kind"]]}.items():
        required_ok = required_ok and not (trial and name == "test_metric")
        value = rec.get(name)
        if value is None:
            if name not in rec and (required or (ok and required_ok)):
                return f"field {name!r} is missing"
            if required or (ok and required_ok):
                return f"field {name!r} is null"
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            return f"field {name!r} is {type(value).__name__}, expected {' or '.join(t.__name__ for t in types)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"field {name!r} is {value}"
    if rec["kind"] == "run" and not 0 <= rec["seed"] <= SEED_MAX:
        return "field 'seed' is outside [0, 2^63 - 1]"
    for i, item in enumerate(rec.get("history") or []):  # what curves are drawn from
        if not isinstance(item, dict) or not _number_or_none(item.get("val_metric")):
            return f"history entry {i} is not {{epoch, val_metric: number or null, ...}}"
    if rec["kind"] == "probe" and ok and rec.get("points") == []:
        return "field 'points' is empty"
    for i, item in enumerate(rec.get("points") or [] if rec["kind"] == "probe" else []):  # scatter plots
        if not (isinstance(item, list) and len(item) in (2, 3) and all(map(_number_or_none, item))):
            return f"points entry {i} is not [loss, metric] or [loss, metric, state] numbers"
    if ok and (rec.get("provenance") or {}).get("data_fingerprint") == DATA_UNAVAILABLE:
        return "an ok record whose data fingerprint is 'unavailable' (measured without its data files)"
    if rec["kind"] == "run" and ok and rec.get("history") is not None and len(rec["history"]) != rec["epochs"]:
        return f"it claims {rec['epochs']} epoch(s) but holds {len(rec['history'])} history entries"
    if rec["kind"] == "tune":
        problem = _tune_problem(rec, ok)
        if problem is not None:
            return problem
    if expected_key is not None and rec["key"] != expected_key:
        return f"its key {rec['key']!r} is not this run's key {expected_key!r} (another run's record?)"
    for name, value in (expect or {}).items():
        if rec.get(name) != value:
            return f"its {name} {rec.get(name)!r} is not this run's {value!r} (another run's record?)"
    return None


def _tune_problem(rec: dict[str, Any], ok: bool) -> str | None:
    """What a tune record's readers rely on: trials as objects, integer seeds, an ok choice among its points."""
    seeds = rec.get("seeds")
    if seeds is not None and not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return "field 'seeds' holds a non-integer"
    if seeds is not None and len(set(seeds)) != len(seeds):
        return "field 'seeds' repeats a seed (it would be counted twice)"
    for i, trial in enumerate(rec.get("trials") or []):
        if not (isinstance(trial, dict) and isinstance(trial.get("params"), dict) and trial.get("status") in STATUSES):
            return f"trials entry {i} is not {{params: object, status: ok|failed|skipped, ...}}"
    if ok and rec.get("points") is not None and rec.get("choice") not in rec["points"]:
        return "its choice is not one of its grid points"
    return None


def read_record(path: Path, expected_key: str | None = None, warn: Callable[[str], None] | None = None,
                expect: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The record at ``path``, or None when it is missing, unreadable, not a valid record (see
    :func:`record_problem`) or, with ``expected_key``, another run's; ``warn`` hears why (missing is silent).
    The one reader of records: reuse, summaries and reports all go through it."""
    try:
        rec = json.loads(read_regular(Path(path)))
    except (FileNotFoundError, NotADirectoryError):  # no record there (yet)
        return None
    except (OSError, ValueError, RecursionError) as exc:  # unreadable, truncated, not JSON, not UTF-8, too deep
        if warn:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            warn(f"{path}: not a readable JSON record ({why})")
        return None
    problem = record_problem(rec, expected_key, expect)
    if problem is not None:
        if warn:
            warn(f"{path}: {problem}")
        return None
    return rec


def warn_stderr(message: str) -> None:
    """Default warning channel of record readers: one line on stderr."""
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


def recorded(path: Path, force: bool, base: Callable[[], dict[str, Any]],
             skip_reason: str | None | Callable[[], str | None], work: Callable[[], dict[str, Any]],
             passthrough: tuple[type[BaseException], ...] = (), key: str | None = None,
             log: Callable[[str], None] = warn_stderr, expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One unit of work (a run, a probe) kept as the record at ``path``: an ok record is reused (``reused``
    marks it) unless ``force``; otherwise, under a per-path file lock (rechecked once held), the record
    ``base()`` gets ``skip_reason`` as an unsupported skip, or ``work()``'s results with status ok,
    a data skip (DataUnavailable) or a failure with its reason; then its wall time, and it is written
    atomically. Only a valid record of ``key`` (``base()["key"]`` when None) with the fields in ``expect``
    (task, method, ...) is reused. ``skip_reason`` may be
    a callable (a plugin's ``supports``), called inside the guard. Exceptions in ``passthrough`` propagate; an
    unwritable record, folder or lock is a SuiteError."""
    if key is None:
        key = base()["key"]

    warned: set[str] = set()

    def once(why: str) -> None:
        if why not in warned:
            warned.add(why)
            log(f"not reusing {why}")

    def reusable() -> dict[str, Any] | None:
        if force:
            return None
        rec = read_record(path, expected_key=key, warn=once, expect=expect)
        return {**rec, "reused": True} if rec and rec["status"] == "ok" else None

    if (done := reusable()) is not None:
        return done
    with record_lock(path):
        if (done := reusable()) is not None:  # another process may have finished it while we waited
            return done
        record = base()
        t0 = time.perf_counter()
        try:
            if callable(skip_reason):
                skip_reason = skip_reason()
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
        if record["status"] == "ok":  # never write an ok record the suite would then refuse to read back
            _refuse_invalid_ok(record, key, expect)
        try:
            write_record(path, record)
        except OSError as exc:  # results dir became unwritable / full: a whole-command error
            raise SuiteError(f"cannot write record {path}: {os_error_line(exc)}") from None
        return record


def _refuse_invalid_ok(record: dict[str, Any], key: str, expect: Mapping[str, Any] | None) -> None:
    """Turn an ok record that is not a valid record of ``key`` into a data skip (measured under the data
    fingerprint ``unavailable``: its data could not be fingerprinted) or a failure naming the problem."""
    if (record.get("provenance") or {}).get("data_fingerprint") == DATA_UNAVAILABLE:
        record.update(status="skipped", skip="data", reason=f"{record.get('task')}: its data files could not be "
                      "fingerprinted (missing or unreadable), so a result cannot be keyed to its data")
        return
    problem = record_problem(json.loads(json.dumps(_clean(record), default=str)), key, expect)
    if problem is not None:
        record.update(status="failed", reason=f"the result is not a valid record: {problem}")


@contextlib.contextmanager
def record_lock(path: Path) -> Iterator[None]:
    """Hold the per-record file lock; a folder or lock that cannot be made is one SuiteError line."""
    lock = Path(str(path) + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if lock.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(lock))
        handle = FileLock(str(lock))
        handle.acquire()
    except OSError as exc:
        raise SuiteError(f"cannot lock record {path}: {os_error_line(exc)}") from None
    try:
        yield
    finally:
        handle.release()


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: what failed and on which path(s)."""
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    return what + (f": {' -> '.join(str(p) for p in paths)}" if paths else "")


def check_writable(results_dir: Path) -> None:
    """Fail early, in one line, when the results directory cannot be written."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=results_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise SuiteError(f"results directory {results_dir} is not writable: {exc.strerror or exc}") from None


RECORD_FOLDERS = {"run": ("runs", "tuning"), "probe": ("probes",), "tune": ("tuning",), "descent": ("descent",)}  # tuning/: trials too
_NAME_KEY = re.compile(r"-([0-9a-f]{10})$")  # record file names end with the first 10 hex digits of the key


def iter_records(results_dir: Path, kind: str | None = None,
                 warn: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every valid record (of ``kind``) under ``results_dir``'s record folders, each key once.

    A malformed or foreign JSON file, one whose key is not the key its file name carries (a record copied
    onto another run's path) and a second copy of a key are skipped, each with a warning naming the file
    (default: one line on stderr, each once per process)."""
    warn = _warn_once if warn is None else warn
    seen: dict[tuple[str, str], Path] = {}
    folders = sorted({f for k in ([kind] if kind else RECORD_KINDS) for f in RECORD_FOLDERS.get(k, ())})
    for folder in folders:
        try:
            paths = sorted((Path(results_dir) / folder).glob("**/*.json"))
        except OSError as exc:
            raise SuiteError(f"cannot read records under {results_dir}: {os_error_line(exc)}") from None
        for path in paths:
            if path.name.startswith("."):
                continue  # a temp file of an atomic write in progress
            rec = read_record(path, warn=warn and (lambda why: warn(f"skipping {why}")))
            if rec is None or (kind is not None and rec["kind"] != kind):
                continue
            named = _NAME_KEY.search(path.stem)
            problem = None
            if named and not rec["key"].startswith(named.group(1)):
                problem = f"its key {rec['key'][:10]}... is not the one its file name carries ({named.group(1)})"
            elif (rec["kind"], rec["key"]) in seen:
                problem = f"a second copy of key {rec['key']} (first: {seen[rec['kind'], rec['key']]}); counted once"
            if problem:
                if warn:
                    warn(f"skipping {path}: {problem}")
                continue
            seen[rec["kind"], rec["key"]] = path
            yield rec


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """stderr, each distinct warning once per process (a report reads the folders once per record kind)."""
    if message not in _WARNED:
        _WARNED.add(message)
        warn_stderr(message)


def records_frame(results_dir: Path, kind: str = "run",
                  warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """All valid records of one kind as a flat DataFrame (one row per record, one per key)."""
    rows = list(iter_records(results_dir, kind, warn))
    if not rows:
        return pd.DataFrame(columns=[*REQUIRED, "seed", "test_metric"])
    return pd.json_normalize(rows, max_level=0)
