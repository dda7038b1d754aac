"""PNG figures for the leaderboard: loss-vs-metric scatter per method, descent-probe bars, validation curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PNG_META = {"Software": None}  # no version stamp: regenerating gives the same bytes
PANELS_PER_ROW = 4  # probe scatter panels per row: many methods wrap instead of making a metres-wide figure


def probe_scatter(probes: pd.DataFrame, task: str, out: Path) -> Path | None:
    """One panel per method: batch loss (x) vs exact batch metric (y), coloured by model state (early -> late
    along the baseline run) when the records carry it, titled with rho overall and within states."""
    df = probes[(probes["task"] == task) & (probes["status"] == "ok")].sort_values("method")
    if df.empty:
        return None
    cols = min(len(df), PANELS_PER_ROW)
    nrows = -(-len(df) // cols)
    fig, grid = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.0 * nrows), squeeze=False)
    axes = grid.flatten()
    for ax in axes[len(df):]:
        ax.set_visible(False)
    scatter = None
    for ax, rec in zip(axes, df.itertuples()):
        pts = np.asarray(rec.points, dtype=float)
        if pts.ndim == 2 and pts.shape[1] >= 3:
            scatter = ax.scatter(pts[:, 0], pts[:, 1], c=pts[:, 2], cmap="viridis", s=6, alpha=0.7)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.6)
        within = getattr(rec, "spearman_within", None)
        title = f"{rec.method}: ρ={rec.spearman:+.2f}"
        if isinstance(within, float) and within == within:
            title += f", within {within:+.2f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("batch loss", fontsize=8)
        ax.tick_params(labelsize=7)
    for row in grid:
        row[0].set_ylabel(f"batch {df.iloc[0]['metric_name']}", fontsize=8)
    fig.suptitle(f"{task}: loss vs metric on the shared probe pool", fontsize=10)
    fig.tight_layout()
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=grid.flatten().tolist(), pad=0.01)
        bar.set_label("model state (early → late)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata=PNG_META)
    plt.close(fig)
    return out


def descent_bars(descents: pd.DataFrame, task: str, out: Path) -> Path | None:
    """Descent probe: mean metric change per method with its 95% interval, and the output-layer cosine."""
    df = descents[(descents["task"] == task) & (descents["status"] == "ok")].sort_values("method")
    if df.empty:
        return None

    def col(name: str) -> np.ndarray:
        return np.asarray([np.nan if v is None else v for v in df.get(name, [np.nan] * len(df))], dtype=float)

    x = np.arange(len(df))
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 2.0 + 1.4 * len(df)), 3.0))
    for ax, (name, label) in zip(axes, [("improvement", f"{df.iloc[0]['metric_name']} change after the step"),
                                        ("fd_cosine", "cos(−∇loss, metric ascent), output layer")]):
        mean, lo, hi = col(name), col(f"{name}_ci_low"), col(f"{name}_ci_high")
        err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
        ax.bar(x, np.nan_to_num(mean), yerr=err, capsize=3, color="tab:blue", alpha=0.8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x, list(df["method"]), fontsize=7, rotation=20)
        ax.set_ylabel(label, fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{task}: descent probe (matched-length steps, mean over lengths; 95% state-bootstrap intervals)", fontsize=9)
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
