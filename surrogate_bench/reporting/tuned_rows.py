"""Which run records are a method at its tuned setting, so the leaderboard shows them as their own arm.

A run is *tuned* when its settings are exactly the choice of the newest ``tune --protocol`` record of its
(profile, task, task parameters, method) applied to the defaults — what ``run --tuned`` trains: its profile
overrides equal the choice's (the lr), and its method parameters equal the method's defaults on that task
with the choice's knob on top. Such rows form the task's *tuned* family (compared with the tuned baseline,
Holm over that family), beside the family of the methods at their defaults.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .. import results
from ..launch.tune_protocol import newest_tune_records, protocol_tune_records
from .labels import method_defaults

TUNED_ARM = "tuned"


def _same(a: Any, b: Any) -> bool:
    """Parameter values equal as the run key sees them (an int and its float are the same number)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def _same_params(run: dict[str, Any], expected: dict[str, Any]) -> bool:
    return set(run) == set(expected) and all(_same(run[k], expected[k]) for k in expected)


def _canonical(params: dict[str, Any]) -> str:
    """Task parameters as one lookup key in which an integral float is its int: a frame that holds several
    tasks flattens a parameter only some of them have into a float column (``597`` reads back ``597.0``)."""
    return json.dumps({k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()},
                      sort_keys=True)


def canonical_keys(newest: dict[tuple, dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """``newest_tune_records`` keyed by :func:`_canonical` task parameters, as :func:`tune_record_of` looks up."""
    return {(prof, task, _canonical(json.loads(tp)), method): rec for (prof, task, tp, method), rec in newest.items()}


def tune_record_of(row: dict[str, Any], newest: dict[tuple, dict[str, Any]]) -> dict[str, Any] | None:
    """The protocol tune record whose choice ``row`` (a run record's fields) was trained at, or None.
    ``newest``: :func:`canonical_keys` of ``newest_tune_records``."""
    ident = (row.get("profile"), row.get("task"), _canonical(row.get("task_params") or {}), row.get("method"))
    rec = newest.get(ident)
    if rec is None:
        return None
    profile_params = row.get("profile_params") if isinstance(row.get("profile_params"), dict) else {}
    if not _same_params(profile_params, rec.get("choice_profile_params") or {}):
        return None
    expected = {**method_defaults(str(row["task"]), str(row["method"])), **(rec.get("choice_method_params") or {})}
    method_params = row.get("method_params") if isinstance(row.get("method_params"), dict) else {}
    return rec if _same_params(method_params, expected) else None


def mark_tuned(frame: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    """``frame`` (prepared run rows; ``method_name`` holds the plain method name) with ``arm`` ("tuned" or "")
    and ``tune_record`` (the citing record's path, or None)."""
    frame = frame.copy()
    newest = (canonical_keys(newest_tune_records(protocol_tune_records(Path(results_dir))))
              if Path(results_dir).is_dir() else {})
    arms, paths = [], []
    task_params = results.nested(frame, "task_params")
    method_params = results.nested(frame, "method_params")
    for i, (prof, task, method) in enumerate(zip(frame["profile"], frame["task"], frame["method_name"])):
        row = {"profile": prof, "task": task, "method": method, "task_params": task_params[i],
               "method_params": method_params[i], "profile_params": frame["profile_params"].iloc[i]
               if "profile_params" in frame else None}
        rec = tune_record_of(row, newest) if newest else None
        arms.append(TUNED_ARM if rec is not None else "")
        paths.append(rec.get("path") if rec is not None else None)
    frame["arm"] = arms
    frame["tune_record"] = paths
    return frame
