"""PNG figures for the leaderboard: loss-vs-metric scatter per method, descent-probe bars, verdicts vs the
baseline, validation curves with seed bands; stale figures removed."""

from __future__ import annotations

import math
import warnings
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


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
OWNED_SUFFIXES = ("-val.png", "-verdicts.png", "-probe.png", "-descent.png")
"""The figures this renderer writes into a plots folder (any other file there is left alone)."""


def styles(labels: list[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """A (colour, marker) per label, distinct for every label: tab20's 20 colours, and a marker cycle of 11
    (coprime with 20), so a pair repeats only after 220 labels; the same label gets the same style in
    every figure of a profile."""
    cmap = plt.get_cmap("tab20")
    return {label: (tuple(cmap(i % 20)), MARKERS[i % len(MARKERS)]) for i, label in enumerate(sorted(set(labels)))}


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata=PNG_META, bbox_inches="tight")
    plt.close(fig)
    return out


def verdict_plot(family, out: Path, style: dict | None = None) -> Path | None:
    """Each compared method's paired difference vs the baseline with its 95% interval (a horizontal error
    bar), the ±δ equivalence band shaded, zero marked, the verdict word beside each bar."""
    rows = [r for r in family.rows.values() if r.verdict is not None and not math.isnan(r.verdict.diff)]
    if not rows:
        return None
    style = style or styles([r.label for r in rows])
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.38 * len(rows)))
    delta = family.delta
    ax.axvspan(-delta, delta, color="tab:green", alpha=0.15, lw=0, label=f"±δ = {delta:g} (equivalence)")
    ax.axvline(0, color="black", lw=0.7)
    spans = [delta]
    for y, row in enumerate(rows):
        v = row.verdict
        colour, marker = style.get(row.label, ("tab:blue", "o"))
        lo, hi = (v.ci_low, v.ci_high) if not math.isnan(v.ci_low) else (v.diff, v.diff)
        ax.errorbar([v.diff], [y], xerr=[[v.diff - lo], [hi - v.diff]], fmt=marker, color=colour, capsize=3, ms=5)
        spans += [abs(lo), abs(hi)]
    width = max(spans) * 1.15
    for y, row in enumerate(rows):
        v = row.verdict
        ax.text(width, y, f"  {v.word} (n={v.n})", va="center", fontsize=7,
                fontweight="bold" if v.word == "better" else "normal")
    ax.set_xlim(-width, width)
    if width > 20 * delta:  # an outlier would squeeze the ±δ band to a line: linear within ±δ, log beyond
        ax.set_xscale("symlog", linthresh=delta)
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=7)
    ax.invert_yaxis()
    scale = " (symlog: linear within ±δ)" if width > 20 * delta else ""
    ax.set_xlabel(f"{family.metric_name}: method − {family.baseline} (paired over seeds, 95% t interval){scale}",
                  fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{family.task} ({family.profile}): verdicts vs {family.baseline}, Holm within {len(rows)}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.25, 1.0), frameon=False)
    return _save(fig, out)


def validation_curves(runs: pd.DataFrame, task: str, out: Path, style: dict | None = None) -> Path | None:
    """Validation metric per epoch: the mean over seeds with a band of ± one SD over seeds (per epoch, over
    the seeds that reached it), one line per method with its own colour and marker; legend outside."""
    df = runs[(runs["task"] == task) & (runs["status"] == "ok")]
    if df.empty or "history" not in df or not any(isinstance(h, list) and h for h in df["history"]):
        return None
    style = style or styles(list(df["method"]))
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for method, mdf in sorted(df.groupby("method"), key=lambda kv: kv[0]):
        curves = [[np.nan if h.get("val_metric") is None else h["val_metric"] for h in hist]
                  for hist in mdf["history"] if isinstance(hist, list) and hist]
        if not curves:
            continue
        length = max(len(c) for c in curves)
        grid = np.full((len(curves), length), np.nan)
        for i, c in enumerate(curves):
            grid[i, :len(c)] = c
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(grid, axis=0)
            sd = np.nanstd(grid, axis=0, ddof=1) if len(curves) > 1 else np.zeros(length)
        epochs = np.arange(1, length + 1)
        colour, marker = style.get(method, ("tab:blue", "o"))
        ax.plot(epochs, mean, marker=marker, ms=3, color=colour, label=f"{method} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(epochs, mean - np.nan_to_num(sd), mean + np.nan_to_num(sd), color=colour, alpha=0.15, lw=0)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(f"validation {df.iloc[0]['metric_name']}", fontsize=8)
    ax.set_title(f"{task}: mean ± SD over seeds", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.tick_params(labelsize=7)
    return _save(fig, out)


def remove_stale(plots_dir: Path, written: list[Path]) -> list[Path]:
    """Delete the figures this renderer owns (``OWNED_SUFFIXES``) in ``plots_dir`` that it did not write this
    time (a task or method that has gone); returns what it removed. Other files are left alone."""
    plots_dir = Path(plots_dir)
    if not plots_dir.is_dir():
        return []
    keep = {Path(p).resolve() for p in written}
    removed = []
    for f in sorted(plots_dir.glob("*.png")):
        if f.name.endswith(OWNED_SUFFIXES) and f.resolve() not in keep:
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed
