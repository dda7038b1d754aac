"""The descent probe's figure: each method's per-length curve (report half) with the chosen length marked, and
the paired difference to the baseline at the chosen length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.plots import PNG_META, plt  # the renderer's matplotlib (Agg backend) and PNG metadata


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def descent_curves(descents: pd.DataFrame, task: str, out: Path) -> Path | None:
    """Left: mean metric change per step length (log axis), one line per method, the chosen length dashed.
    Right: Δ vs the baseline at the chosen length with its 95% interval (none when no length helps)."""
    df = descents[(descents["task"] == task) & (descents["status"] == "ok")].sort_values("method")
    if df.empty:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 3.0 + 1.2 * len(df)), 3.4))
    chosen = None
    for rec in df.itertuples():
        sizes = getattr(rec, "by_step_size", None)
        if not isinstance(sizes, list) or not sizes:
            continue
        x = [100 * _f(b.get("size")) for b in sizes]
        y = [_f(b.get("improvement")) for b in sizes]
        base = rec.method == getattr(rec, "baseline", None)
        left.plot(x, y, marker="o", ms=3, lw=2.2 if base else 1.0, color="black" if base else None,
                  label=rec.method + (" (baseline)" if base else ""))
        ch = getattr(rec, "length_choice", None)
        if isinstance(ch, dict) and ch.get("chosen_size") is not None:
            chosen = 100 * float(ch["chosen_size"])
    left.axhline(0, color="grey", lw=0.6)
    left.set_xscale("log")
    left.set_xlabel("step length, % of ‖θ‖", fontsize=8)
    left.set_ylabel(f"{df.iloc[0]['metric_name']} change (report half)", fontsize=8)
    if chosen is not None:
        left.axvline(chosen, color="tab:red", ls="--", lw=0.8)
    left.tick_params(labelsize=7)
    left.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    names = list(df["method"])
    xs = np.arange(len(names))
    mean = np.asarray([_f(v) for v in df.get("delta_improvement", [np.nan] * len(df))])
    lo = np.asarray([_f(v) for v in df.get("delta_improvement_ci_low", [np.nan] * len(df))])
    hi = np.asarray([_f(v) for v in df.get("delta_improvement_ci_high", [np.nan] * len(df))])
    err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
    right.bar(xs, np.nan_to_num(mean), yerr=err, capsize=3, color="tab:blue", alpha=0.8)
    right.axhline(0, color="black", lw=0.6)
    right.set_xticks(xs, names, fontsize=7, rotation=30, ha="right")
    right.set_ylabel("Δ vs baseline at the chosen length", fontsize=7)
    right.tick_params(labelsize=7)
    title = (f"{task}: descent probe, chosen length {chosen:g}% of ‖θ‖ (red)" if chosen is not None else
             f"{task}: descent probe — no length helps the baseline (no headline)")
    fig.suptitle(title + "; 95% run-then-state bootstrap intervals", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata=PNG_META)
    plt.close(fig)
    return out
