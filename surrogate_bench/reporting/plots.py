"""PNG figures for the leaderboard: loss-vs-metric scatter per method, validation curves per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PNG_META = {"Software": None}  # no version stamp: regenerating gives the same bytes


def probe_scatter(probes: pd.DataFrame, task: str, out: Path) -> Path | None:
    """One panel per method: batch loss (x) vs exact batch metric (y), titled with Spearman rho."""
    df = probes[(probes["task"] == task) & (probes["status"] == "ok")].sort_values("method")
    if df.empty:
        return None
    fig, axes = plt.subplots(1, len(df), figsize=(3.2 * len(df), 3.0), squeeze=False)
    for ax, rec in zip(axes[0], df.itertuples()):
        pts = np.asarray(rec.points, dtype=float)
        ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.6)
        ax.set_title(f"{rec.method}: ρ={rec.spearman:+.2f}", fontsize=9)
        ax.set_xlabel("batch loss", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(f"batch {df.iloc[0]['metric_name']}", fontsize=8)
    fig.suptitle(f"{task}: loss vs metric on the shared probe pool", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata=PNG_META)
    plt.close(fig)
    return out


def validation_curves(runs: pd.DataFrame, task: str, out: Path) -> Path | None:
    """Validation metric per epoch, mean over seeds, one line per method."""
    df = runs[(runs["task"] == task) & (runs["status"] == "ok")]
    if df.empty or "history" not in df or not any(isinstance(h, list) and h for h in df["history"]):
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for method, mdf in sorted(df.groupby("method"), key=lambda kv: kv[0]):
        curves = [[h["val_metric"] for h in hist] for hist in mdf["history"] if isinstance(hist, list) and hist]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = np.nanmean(np.asarray([c[:length] for c in curves], dtype=float), axis=0)
        ax.plot(np.arange(1, length + 1), mean, marker="o", ms=3, label=f"{method} (n={len(curves)})")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(f"validation {df.iloc[0]['metric_name']}", fontsize=8)
    ax.set_title(task, fontsize=10)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata=PNG_META)
    plt.close(fig)
    return out
