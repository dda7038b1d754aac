"""Leaderboard cells from run records: one record per (cell, seed), intervals and paired tests per cell."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..stats.seeds import Interval, Paired, paired_test, t_interval

CELL_KEYS = ("profile", "task", "method")
"""Columns that make a leaderboard cell; pass more (e.g. a code/data fingerprint) to split cells further."""


def dedupe_runs(runs: pd.DataFrame, cell_keys: Sequence[str] = CELL_KEYS) -> pd.DataFrame:
    """One row per run key, then one per (cell, seed): the newest record (by ``started``) wins.

    Idempotent; rows without a key are kept as they are.
    """
    if runs.empty or "key" not in runs:
        return runs
    df = runs.copy()
    order = df["started"].fillna("") if "started" in df else pd.Series([""] * len(df), index=df.index)
    df = df.assign(_order=order.astype(str)).sort_values("_order", kind="stable")
    keyed = df[df["key"].notna()].drop_duplicates(subset=["key"], keep="last")
    df = pd.concat([keyed, df[df["key"].isna()]]).sort_values("_order", kind="stable")
    cols = [c for c in (*cell_keys, "seed") if c in df]
    ok = df["status"] == "ok"
    df = pd.concat([df[ok].drop_duplicates(subset=cols, keep="last"), df[~ok]])
    return df.drop(columns="_order").sort_index()


@dataclass(frozen=True)
class Cell:
    """One leaderboard cell: the interval over seeds, the per-seed values, and the test against the baseline
    (None for the baseline itself or when the task has none); ``test_ci`` is the test-set bootstrap interval
    when the cell is a single run that recorded one."""

    interval: Interval
    by_seed: dict[int, float]
    vs_baseline: Paired | None
    test_ci: tuple[float, float] | None = None


def cells(runs: pd.DataFrame, baseline_of: dict[str, str], cell_keys: Sequence[str] = CELL_KEYS,
          metric: str = "test_metric") -> dict[tuple, Cell]:
    """Every cell of the ok runs, keyed by the values of ``cell_keys`` (which must include "task" and
    "method"); ``baseline_of`` maps a task to its baseline method label."""
    keys = list(cell_keys)
    df = dedupe_runs(runs, keys)
    df = df[(df["status"] == "ok")].dropna(subset=[metric])
    by_seed: dict[tuple, dict[int, float]] = {}
    ci: dict[tuple, tuple[float, float] | None] = {}
    for group, gdf in df.groupby(keys, sort=True, dropna=False):
        group = group if isinstance(group, tuple) else (group,)
        by_seed[group] = {int(s): float(v) for s, v in zip(gdf["seed"], gdf[metric])}
        raw = gdf.iloc[0].get("test_metric_ci") if len(gdf) == 1 and "test_metric_ci" in gdf else None
        ci[group] = (float(raw[0]), float(raw[1])) if isinstance(raw, (list, tuple)) and len(raw) == 2 else None
    t_at, m_at = keys.index("task"), keys.index("method")
    out = {}
    for group, values in by_seed.items():
        base = baseline_of.get(group[t_at])
        base_group = tuple(base if i == m_at else g for i, g in enumerate(group)) if base else None
        vs = None
        if base_group is not None and base_group != group and base_group in by_seed:
            vs = paired_test(values, by_seed[base_group])
        out[group] = Cell(t_interval(list(values.values())), values, vs, ci[group])
    return out


def best_detectable(task_cells: dict[str, Cell], baseline: str | None, higher_is_better: bool) -> str | None:
    """The method to bold among one task's cells (method -> Cell), or None.

    The best mean is bolded only when its paired difference to the runner-up and to the baseline (when
    that is another method) are both detectable in its favour.
    """
    ranked = sorted(((c.interval.mean, m) for m, c in task_cells.items() if not math.isnan(c.interval.mean)),
                    reverse=higher_is_better)
    if len(ranked) < 2:
        return None
    best, runner_up = ranked[0][1], ranked[1][1]
    sign = 1.0 if higher_is_better else -1.0
    for other in {runner_up, baseline} - {best, None}:
        if other not in task_cells:
            continue
        test = paired_test(task_cells[best].by_seed, task_cells[other].by_seed)
        if not (test.detectable and sign * test.diff > 0):
            return None
    return best
