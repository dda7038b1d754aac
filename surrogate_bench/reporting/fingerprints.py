"""Provenance in the leaderboard: runs of different code or data never share a cell silently; tune records.

Within one (profile, task, method label), when the runs carry more than one (code, data) fingerprint pair,
each pair becomes its own column: the label gets ``@<code[:6]>/<data[:6]>`` (``@no-provenance`` for records
written before fingerprints existed). One pair per cell leaves the label as it is. Only ok records count:
a skipped or failed record (e.g. a data skip fingerprinted ``unavailable``) never splits a cell, and keeps
the plain label. Within one protocol version (a ``protocol`` column, when present). Tuning trials (which
have no test metric) are dropped.
"""

from __future__ import annotations

import pandas as pd
from .labels import method_defaults


def fingerprint_pair(record_provenance: object) -> tuple[str, str] | None:
    """(code, data) fingerprints of a record's ``provenance`` block, or None when it has none."""
    if not isinstance(record_provenance, dict):
        return None
    code, data = record_provenance.get("code_fingerprint"), record_provenance.get("data_fingerprint")
    return (str(code), str(data)) if code and data else None


def tag(pair: tuple[str, str] | None) -> str:
    return "@no-provenance" if pair is None else f"@{pair[0][:6]}/{pair[1][:6]}"


def split_by_fingerprint(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (one row per record, ``method`` already labelled) with the method label split per
    fingerprint pair wherever a cell would otherwise mix them; tuning trials removed."""
    if runs.empty:
        return runs
    df = runs.copy()
    if "evaluate_test" in df:
        df = df[df["evaluate_test"].map(lambda v: v is not False)]
    prov = df["provenance"] if "provenance" in df else pd.Series([None] * len(df), index=df.index)
    pairs = prov.map(fingerprint_pair)
    protocol = df["protocol"] if "protocol" in df else pd.Series([None] * len(df), index=df.index)
    cell = list(zip(df["profile"], protocol, df["task"], df["method"]))
    ok = (df["status"] == "ok") if "status" in df else pd.Series(True, index=df.index)
    distinct: dict[tuple, set] = {}
    for c, p, good in zip(cell, pairs, ok):
        if good:  # a skip (e.g. data "unavailable") or a failure never splits a cell
            distinct.setdefault(c, set()).add(p)
    df["method"] = [m + tag(p) if good and len(distinct.get(c, ())) > 1 else m
                    for c, m, p, good in zip(cell, df["method"], pairs, ok)]
    return df


def tuning_table(tunes: pd.DataFrame) -> str:
    """One row per ok ``tune`` record: task, method, profile, budget x seeds, choice, its validation metric, and
    whether the published runs use the choice (the task's tuned default) or not (a diagnostic tune)."""
    if tunes.empty:
        return ""
    from tabulate import tabulate


    grid_tunes = tunes[tunes["status"] == "ok"]
    if "protocol" in grid_tunes:  # protocol tune records (a ``protocol`` dict) have their own table (tuning_budget)
        grid_tunes = grid_tunes[[not isinstance(v, dict) for v in grid_tunes["protocol"]]]
    rows = []
    for r in grid_tunes.itertuples():
        choice = ", ".join(f"{k}={v}" for k, v in sorted((r.choice or {}).items()))
        grid = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in sorted((r.grid or {}).items()))
        defaults = method_defaults(r.task, r.method)
        used = all(defaults.get(k, object()) == v for k, v in (r.choice or {}).items())
        rows.append([r.task, r.method, r.profile, grid, f"{r.budget} × seeds {','.join(map(str, r.seeds))}", choice,
                     f"{r.choice_val_metric:.4f}", "yes" if used else "no (diagnostic)", str(r.key)[:10]])
    if not rows:
        return ""
    return tabulate(sorted(rows), headers=["task", "method", "profile", "grid", "budget", "choice",
                                           "final val (mean)", "default now", "record key"], tablefmt="github")
