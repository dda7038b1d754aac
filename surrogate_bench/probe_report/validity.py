"""Probe validity: does a probe statistic predict which loss trains better?

Per task, across methods: the Spearman correlation (scipy) between a probe statistic (Δρ overall, Δρ within
states, descent Δ at the chosen length) and the training verdict's paired difference vs the baseline — the
mean over the seeds both ran of (method − baseline) test metric, from the run records of the same profile
and protocol version as the probe records. The 95% interval is a bootstrap over methods (with
replacement) and, inside each drawn method, over its paired seeds (with replacement: the training
difference is re-averaged), so it carries both the few methods and the seed noise of the training Δ.

Signs: Δρ < 0 means the method's loss tracks the metric better than the baseline's, so a probe that
predicts training benefit has a **negative** correlation for Δρ and a **positive** one for descent Δ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..probes.stats import CONFIDENCE, percentile_interval, rowwise_spearman, spearman

N_VALIDITY_BOOTSTRAP = 2000
MIN_METHODS = 4  # fewer methods: no interval ("too few methods for an interval")
TOO_FEW_METHODS = "too few methods for an interval"

STATISTICS = (  # (record column, label, kind of record, the sign a predictive probe has)
    ("delta_spearman", "Δρ overall", "probe", -1),
    ("delta_spearman_within", "Δρ within states", "probe", -1),
    ("delta_improvement", "descent Δ", "descent", +1),
)


@dataclass
class Correlation:
    """One probe statistic against the training Δ across methods."""

    label: str
    expected: int  # the sign of a predictive probe
    rho: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_methods: int = 0
    note: str | None = None
    methods: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """"predicts" (interval excludes 0 on the predictive side), "reversed" (on the other side), "no"."""
        if math.isnan(self.ci_low) or math.isnan(self.ci_high):
            return "no"
        if self.expected * self.ci_low > 0 and self.expected * self.ci_high > 0:
            return "predicts"
        if self.ci_low * self.ci_high > 0:
            return "reversed"
        return "no"


def paired_differences(runs: pd.DataFrame, task: str, baseline: str) -> dict[str, np.ndarray]:
    """Per method label of ``task``: the per-seed differences method − baseline test metric over the seeds
    both ran (ok records with a test metric; one record per (method, seed): the runs are deduplicated)."""
    df = runs[(runs["task"] == task) & (runs["status"] == "ok")].dropna(subset=["test_metric"])
    if df.empty or baseline not in set(df["method"]):
        return {}
    by = {m: g.groupby("seed")["test_metric"].mean() for m, g in df.groupby("method")}
    base = by[baseline]
    out = {}
    for method, vals in by.items():
        common = sorted(set(vals.index) & set(base.index))
        if common:
            out[method] = np.asarray([float(vals[s]) - float(base[s]) for s in common])
    return out


def correlate(stat: dict[str, float], diffs: dict[str, np.ndarray], label: str, expected: int,
              n_resamples: int = N_VALIDITY_BOOTSTRAP, seed: int = 0) -> Correlation:
    """Spearman ρ across the methods that have both a finite statistic and paired training differences, with
    a bootstrap over methods and, within each, its seeds."""
    methods = sorted(m for m, v in stat.items() if m in diffs and v is not None and np.isfinite(v))
    out = Correlation(label, expected, n_methods=len(methods), methods=methods)
    if len(methods) < 3:
        out.note = TOO_FEW_METHODS
        if len(methods) == 2:
            out.rho = spearman(np.asarray([stat[m] for m in methods]), np.asarray([diffs[m].mean() for m in methods]))
        return out
    x = np.asarray([stat[m] for m in methods], float)
    y = np.asarray([diffs[m].mean() for m in methods], float)
    out.rho = spearman(x, y)
    if len(methods) < MIN_METHODS:
        out.note = TOO_FEW_METHODS
        return out
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(methods), size=(n_resamples, len(methods)))
    ys = np.empty(drawn.shape)
    for j, m in enumerate(methods):  # each method's training delta re-averaged over its resampled seeds
        d = diffs[m]
        ys[:, j] = d[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(1)
    boot = rowwise_spearman(x[drawn], np.take_along_axis(ys, drawn, axis=1))
    finite = boot[np.isfinite(boot)]
    if len(finite) == 0 or float(np.ptp(finite)) == 0.0:
        out.note = TOO_FEW_METHODS
        return out
    out.ci_low, out.ci_high = percentile_interval(boot, CONFIDENCE)
    return out


def statistic_of(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """method label -> the record's statistic (ok records; NaN when missing)."""
    if frame is None or frame.empty or column not in frame:
        return {}
    ok = frame[frame["status"] == "ok"]
    out = {}
    for m, v in zip(ok["method"], ok[column]):
        try:
            out[m] = float(v)
        except (TypeError, ValueError):
            out[m] = float("nan")
    return out


def task_validity(probes: pd.DataFrame, descents: pd.DataFrame | None, runs: pd.DataFrame, task: str,
                  baseline: str) -> list[Correlation]:
    """The three correlations of one task (the probe records of one group, the runs of its protocol)."""
    diffs = paired_differences(runs, task, baseline)
    out = []
    for column, label, kind, expected in STATISTICS:
        frame = probes if kind == "probe" else descents
        stat = statistic_of(frame, column)
        if kind == "probe" and baseline in stat:
            stat[baseline] = 0.0  # the baseline's own delta (exactly 0 by construction)
        out.append(correlate(stat, diffs, label, expected))
    return out


def fmt_corr(c: Correlation) -> str:
    if math.isnan(c.rho):
        return "—"
    cell = f"{c.rho:+.2f}"
    if c.note:
        return cell + f" ({c.note})"
    return cell + f" [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"


def sentence(task: str, corrs: list[Correlation], headline: str, protocol: int) -> str:
    """The task's one-sentence summary: the value probe's headline statistic, then the descent probe."""
    value = next((c for c in corrs if c.label == headline), corrs[0])
    descent = next((c for c in corrs if c.label == "descent Δ"), None)
    if value.n_methods < MIN_METHODS:
        head = (f"`{task}`: too few methods with both probe records and protocol-{protocol} training runs "
                f"({value.n_methods}; ρ = {fmt_corr(value)}) to say whether the value probe predicts training benefit")
    elif value.verdict == "predicts":
        head = (f"`{task}`: the value probe does predict training benefit here ({value.label}: ρ = {fmt_corr(value)}, "
                f"{value.n_methods} methods)")
    elif value.verdict == "reversed":
        head = (f"`{task}`: the value probe ranks methods *against* their training benefit here ({value.label}: "
                f"ρ = {fmt_corr(value)}, {value.n_methods} methods)")
    else:
        head = (f"`{task}`: the value probe does not predict training benefit here ({value.label}: "
                f"ρ = {fmt_corr(value)}, {value.n_methods} methods)")
    if descent is None or descent.n_methods < MIN_METHODS:
        tail = "; too few descent records at a chosen length to judge the descent probe"
    else:
        word = {"predicts": "does", "reversed": "ranks them against it", "no": "does not"}[descent.verdict]
        tail = f"; the descent probe {word} (ρ = {fmt_corr(descent)}, {descent.n_methods} methods)"
    return head + tail + "."


def expected_word(expected: int) -> str:
    return "ρ < 0" if expected < 0 else "ρ > 0"


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(f) else f"{f:+.4f}"
