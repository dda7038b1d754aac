"""Results as data: every run (or probe) record as one row of a pandas DataFrame, and exports to CSV / Parquet.

``load()`` reads the records (of the user results folder, ``paths.results_dir()``, unless given one) through the store's reader and flattens every nested dict into
prefixed columns (``method_params.gain``, ``task_params.depth``, ``environment.torch``,
``profile_settings.lr``, and whatever provenance a record carries), so parameters and provenance are
plain columns to group and filter on. Lists (the per-epoch ``history``, probe ``points``) stay as
Python objects in the frame; an export writes them as JSON text. The leaderboard is built on this frame.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .plugins.errors import SuiteError
from .store.records import RECORD_KINDS, atomic_write_bytes, records_frame

FIRST = ("kind", "key", "status", "task", "method", "profile", "seed", "metric_name", "higher_is_better",
         "test_metric", "best_val_metric", "final_val_metric")
FORMATS = ("csv", "parquet")


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in record.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def load(results_dir: str | Path | None = None, kind: str = "run", *, include_skips: bool = False) -> pd.DataFrame:
    """All valid ``kind`` records (``run``, ``probe`` or ``tune``) under ``results_dir`` (default: the user results
    folder, ``$SURROGATE_BENCH_RESULTS`` or ``~/.local/share/surrogate_bench/results``, as the CLI): one row each,
    nested dicts flattened to ``parent.child`` columns; identity and metric columns first, then the rest sorted.
    Skip records (unsupported pairs, missing data) are left out unless ``include_skips``; a folder that does not
    exist is a one-line :class:`SuiteError`."""
    from .paths import results_dir as default_results_dir

    if kind not in RECORD_KINDS:
        raise SuiteError(f"unknown record kind {kind!r}: expected {' or '.join(RECORD_KINDS)}")
    folder = default_results_dir(results_dir)
    if not folder.is_dir():
        raise SuiteError(f"results directory {folder} does not exist" + ("" if results_dir is not None else
                         " (no runs yet? python -m surrogate_bench run ...; or pass the folder to load())"))
    nested = records_frame(folder, kind)
    records = nested.to_dict("records")
    if not include_skips:
        records = [rec for rec in records if rec.get("status") != "skipped"]
    rows = [_flatten({k: v for k, v in rec.items() if not _missing(v)}) for rec in records]
    frame = pd.DataFrame(rows)
    for col in ("kind", "key", "status", "task", "method", "profile", "seed", "test_metric"):
        if col not in frame:
            frame[col] = pd.Series(dtype=object)
    first = [c for c in FIRST if c in frame]
    return frame[first + sorted(c for c in frame if c not in first)].reset_index(drop=True)


def _missing(value: Any) -> bool:
    """A cell pandas filled in for a field this record does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def nested(frame: pd.DataFrame, prefix: str) -> list[dict[str, Any]]:
    """Per row, the dict a flattened ``prefix.*`` group came from (keys the row lacks are left out)."""
    cols = [c for c in frame.columns if c.startswith(prefix + ".")]
    out: list[dict[str, Any]] = []
    for values in frame[cols].itertuples(index=False, name=None) if cols else [()] * len(frame):
        out.append({c[len(prefix) + 1:]: v for c, v in zip(cols, values)
                    if not (isinstance(v, float) and math.isnan(v)) and v is not None})
    return out


def for_export(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose list / dict cells are JSON text (CSV and Parquet hold scalars; ``json.loads`` restores) and
    whose missing cells in object columns are None (what Parquet gives back), so a Parquet file reads back equal."""
    out = frame.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (list, tuple, dict))).any():
            out[col] = out[col].map(lambda v: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v)
        if out[col].dtype == object:
            out[col] = out[col].where(out[col].notna(), None)
    return out


def export(results_dir: str | Path | None, out: str | Path, fmt: str | None = None, kind: str = "run",
           profiles: Iterable[str] | None = None, include_skips: bool = False) -> Path:
    """Write ``load(results_dir, kind, include_skips=...)`` (optionally only some profiles) as CSV or Parquet;
    returns ``out``.
    The format is ``fmt``, else the file's suffix."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise SuiteError(f"unknown export format {fmt!r}: expected {' or '.join(FORMATS)}")
    frame = load(results_dir, kind, include_skips=include_skips)
    if profiles:
        frame = frame[frame["profile"].isin(list(profiles))]
    frame = for_export(frame)
    buf = io.BytesIO()
    try:
        if fmt == "csv":
            buf.write(frame.to_csv(index=False).encode())
        else:
            frame.to_parquet(buf, index=False)
        atomic_write_bytes(out, buf.getvalue())  # never a half-written file
    except OSError as exc:
        raise SuiteError(f"cannot write {out}: {exc.strerror or exc}") from None
    except ImportError as exc:  # no parquet engine
        raise SuiteError(f"parquet export needs pyarrow: pip install pyarrow ({exc})") from None
    return out


# -- stale records ---------------------------------------------------------------------------------------------
def parse_age(value: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` or a bare number of days -> seconds."""
    text = str(value).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        seconds = float(number) * (scale or 86400.0)
    except ValueError:
        raise SuiteError(f"bad --older-than {value!r}: expected an age like 7d, 12h, 30m or a number of days") from None
    if not seconds >= 0:
        raise SuiteError(f"bad --older-than {value!r}: expected a non-negative age")
    return seconds


def stale_records(results_dir: str | Path | None = None, data_root: str | Path | None = None, *,
                  older_than_s: float | None = None, keep_failed: bool = False,
                  warn=None) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The run records under ``results_dir`` that no longer stand for a result of the current code, each with why:
    skip records, failed records (unless ``keep_failed``), and records whose key is not the key the current code
    and the data under ``data_root`` give their spec (a code fingerprint, data fingerprint or protocol that
    changed). Returns (stale, kept-with-a-note): a record whose task or method is not installed, or whose data are
    not found under ``data_root``, cannot be checked and is kept. ``older_than_s``: only records started (or, without
    that field, written) longer ago than this are considered."""
    import time

    from .paths import data_root as default_data_root, results_dir as default_results_dir
    from .store.records import read_record

    folder = default_results_dir(results_dir)
    if not folder.is_dir():
        raise SuiteError(f"results directory {folder} does not exist")
    root = default_data_root(data_root)
    now = time.time()
    stale: list[tuple[Path, str]] = []
    kept: list[tuple[Path, str]] = []
    current: dict[str, Any] = {}  # spec identity -> (key, code fp, data fp) or a reason it cannot be checked
    for sub in ("runs", "tuning"):
        for path in sorted((folder / sub).glob("**/*.json")):
            if path.name.startswith("."):
                continue
            rec = read_record(path, warn=warn)
            if rec is None or rec.get("kind") != "run":
                continue
            if older_than_s is not None and now - _started(rec, path) < older_than_s:
                continue
            if rec["status"] == "skipped":
                stale.append((path, f"skip ({rec.get('skip') or 'skipped'}): {_short(rec.get('reason'))}"))
                continue
            if rec["status"] == "failed":
                if not keep_failed:
                    stale.append((path, f"failed: {_short(rec.get('reason'))}"))
                continue
            why, note = _fingerprint_problem(rec, root, current)
            if why:
                stale.append((path, why))
            elif note:
                kept.append((path, note))
    return stale, kept


def _started(rec: dict[str, Any], path: Path) -> float:
    import time

    try:
        return time.mktime(time.strptime(str(rec.get("started"))[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return path.stat().st_mtime


def _short(reason: Any, width: int = 100) -> str:
    text = " ".join(str(reason or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _fingerprint_problem(rec: dict[str, Any], root: Path, cache: dict[str, Any]) -> tuple[str | None, str | None]:
    """(why the record is stale, None) or (None, why it could not be checked) or (None, None) when current."""
    from .running.spec import DATA_UNAVAILABLE, PROTOCOL_VERSION, RunSpec
    from .store.provenance import code_fingerprint, data_fingerprint

    if rec.get("protocol_version", 1) != PROTOCOL_VERSION:
        return f"protocol version {rec.get('protocol_version', 1)}, the current one is {PROTOCOL_VERSION}", None
    spec = RunSpec(rec["task"], rec["method"], rec["profile"], int(rec["seed"]),
                   tuple(sorted((rec.get("task_params") or {}).items())),
                   tuple(sorted((rec.get("method_params") or {}).items())),
                   evaluate_test=rec.get("evaluate_test") is not False,
                   profile_params=tuple(sorted((rec.get("profile_params") or {}).items())))
    ident = json.dumps([spec.task, spec.method, spec.profile, spec.seed, spec.task_params, spec.method_params,
                        spec.evaluate_test, spec.profile_params], default=str)
    if ident not in cache:
        try:
            task, method = spec.build()
            code = code_fingerprint(task, method)
            try:
                data = data_fingerprint(task, root)
            except Exception:
                data = DATA_UNAVAILABLE
            cache[ident] = (code, data, spec.key(_fp(code, data), (task, method)))
        except SuiteError as exc:  # a plugin not installed here, or parameters it no longer accepts
            cache[ident] = f"kept, cannot check: {_short(exc)}"
        except Exception as exc:  # a plugin that breaks on build
            cache[ident] = f"kept, cannot check: {type(exc).__name__}: {_short(exc)}"
    state = cache[ident]
    if isinstance(state, str):
        return None, state
    code, data, key = state
    prov = rec.get("provenance") or {}
    if prov.get("code_fingerprint") not in (None, code):
        return "code fingerprint differs from the current code's (a plugin or training-path file changed)", None
    if data == DATA_UNAVAILABLE:
        return None, f"kept, cannot check its data: not found under {root} (pass --data-root)"
    if prov.get("data_fingerprint") not in (None, data):
        return f"data fingerprint differs from the data under {root}", None
    if rec["key"] != key:
        return "its key is not the one the current code gives its spec (settings or defaults changed)", None
    return None, None


def _fp(code: str, data: str):
    from .running.spec import Fingerprints

    return Fingerprints(code, data)
