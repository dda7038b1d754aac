"""Results as data: every run (or probe) record as one row of a pandas DataFrame, and exports to CSV / Parquet.

``load(results_dir)`` reads the records through the store's reader and flattens every nested dict into
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


def load(results_dir: str | Path, kind: str = "run") -> pd.DataFrame:
    """All valid ``kind`` records (``run``, ``probe`` or ``tune``) under ``results_dir``: one row each, nested dicts
    flattened to ``parent.child`` columns; identity and metric columns first, then the rest sorted."""
    if kind not in RECORD_KINDS:
        raise SuiteError(f"unknown record kind {kind!r}: expected {' or '.join(RECORD_KINDS)}")
    nested = records_frame(Path(results_dir), kind)
    rows = [_flatten({k: v for k, v in rec.items() if not _missing(v)}) for rec in nested.to_dict("records")]
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


def export(results_dir: str | Path, out: str | Path, fmt: str | None = None, kind: str = "run",
           profiles: Iterable[str] | None = None) -> Path:
    """Write ``load(results_dir, kind)`` (optionally only some profiles) as CSV or Parquet; returns ``out``.
    The format is ``fmt``, else the file's suffix."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise SuiteError(f"unknown export format {fmt!r}: expected {' or '.join(FORMATS)}")
    frame = load(results_dir, kind)
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
