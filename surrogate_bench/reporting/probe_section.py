"""The leaderboard's probe section: how the pool is built, the Spearman and descent probe tables, their figures.

Records of the earlier pool construction (no ``pool`` summary, no within-state statistics) still
render; their missing cells read "—".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from ..store.records import records_frame
from .labels import empty_cell, labelled

SPEARMAN_LINE = ("**Spearman probe** — does the loss's *value* rank batches like the exact metric? Spearman ρ "
                 "between batch loss and batch metric (papers' sign: −1 = ranks them exactly like the metric).")
DESCENT_LINE = ("**Descent probe** — does a step along the loss's *gradient* improve the metric? From each pool "
                "state, a step in the direction the profile's optimiser would take for the loss's gradient (averaged "
                "over 8 training batches; SGD: −gradient, Adam/RMSprop: −sign of it) at matched lengths (0.1–3% "
                "of the state's parameter norm, the same for every loss, so only the direction differs); change "
                "of the exact metric on the pool's clean held-out samples (> 0: improves).")
STATS_LINE = ("ρ overall (all batches), within states (ρ inside each model state, averaged) and between states "
              "(ρ of the state means); Kendall τ overall; [95% intervals] from a bootstrap that resamples model "
              "states (all batches of a drawn state together), 1000 resamples; Δ = method − baseline on the same "
              "batches and resamples (Δρ < 0: the method tracks the metric better than the baseline).")


def descent_frame(results_dir: Path) -> pd.DataFrame:
    """The descent records, labelled like the other tables (method parameters that differ from defaults)."""

    return labelled(records_frame(Path(results_dir), "descent"))


def current(df: pd.DataFrame) -> pd.DataFrame:
    """One record per (profile, task, method): a record of the current pool construction (it carries a
    ``pool`` summary) wins over an older one, then the later file; a stale record never doubles a row."""
    if df.empty:
        return df
    has_pool = df["pool"].map(lambda p: isinstance(p, dict)) if "pool" in df else pd.Series(False, index=df.index)
    ok = df["status"] == "ok"
    order = df.assign(_rank=has_pool.astype(int) * 2 + ok.astype(int)).sort_values("_rank", kind="stable")
    return order.drop_duplicates(["profile", "task", "method"], keep="last").drop(columns="_rank").sort_index()


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _count(v: Any) -> str:
    """A count as an integer ("8", not the "8.0" a float column makes of it); "?" when missing."""
    f = _num(v)
    return "?" if math.isnan(f) else str(int(f))


def _ci(rec: pd.Series, name: str, digits: int = 3) -> str:
    """``+0.123 [+0.100, +0.150]``, or "—" when the record lacks the statistic."""
    v = _num(rec.get(name))
    if math.isnan(v):
        return "—"
    lo, hi = _num(rec.get(f"{name}_ci_low")), _num(rec.get(f"{name}_ci_high"))
    if math.isnan(lo) or math.isnan(hi):
        return f"{v:+.{digits}f}"
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def pool_line(task: str, rec: pd.Series, metric_name: str) -> str:
    """One line: how this task's pool was built and the per-state metric range it spans."""
    pool = rec.get("pool")
    sha = str(rec.get("pool_sha256", ""))[:12]
    if not isinstance(pool, dict) or not pool.get("state_metric"):
        return (f"- `{task}`: pool of the earlier construction (first epochs of a short baseline run plus weight "
                f"noise; batch bootstrap); regenerate the probes for the statistics above (pool sha256 `{sha}`).")
    sm = [float(m) for m in pool["state_metric"]]
    steps = [_count(s) for s in pool.get("state_step") or []]
    per_state = [int(_num(n)) for n in pool.get("batches_per_state") or []]
    return (f"- `{task}`: {_count(pool['states'])} states of a `{pool.get('baseline')}` run of the profile at steps "
            f"{', '.join(steps)} of {_count(pool.get('total_steps'))}; per-state {metric_name} on the clean "
            f"{pool.get('split', 'probe')} split **{min(sm):.3f}–{max(sm):.3f}** "
            f"({', '.join(f'{m:.2f}' for m in sm)}); {sum(per_state)} batches of {_count(pool.get('batch_size'))} "
            f"({min(per_state) if per_state else 0}–{max(per_state) if per_state else 0} per state), each with a "
            f"uniform random fraction of its targets randomised, batch {metric_name} "
            f"{_num(pool.get('metric_min')):.2f}–{_num(pool.get('metric_max')):.2f}; identical for every method "
            f"(pool sha256 `{sha}`).")


def spearman_table(probes: pd.DataFrame, profile: str) -> str:
    """One row per (task, method): rho overall / within / between with intervals, tau, paired delta vs baseline."""

    df = probes[probes["profile"] == profile]
    rows = []
    for task in sorted(df["task"].unique()):
        tdf = df[df["task"] == task]
        ok = tdf[tdf["status"] == "ok"].set_index("method")
        rhos = ok["spearman"].map(_num).dropna() if "spearman" in ok else pd.Series(dtype=float)
        best = rhos.idxmin() if len(rhos) > 1 else None
        for method in sorted(tdf["method"].unique()):
            if method not in ok.index:
                rows.append([task, method, empty_cell(tdf[tdf["method"] == method]), "", "", "", "", ""])
                continue
            r = ok.loc[method]
            overall = _ci(r, "spearman")
            base = r.get("baseline")
            rows.append([task, f"**{method}**" if method == best else method,
                         f"**{overall}**" if method == best else overall, _ci(r, "spearman_within"),
                         _ci(r, "spearman_between"), _ci(r, "kendall"),
                         "baseline" if method == base else _ci(r, "delta_spearman"),
                         "baseline" if method == base else _ci(r, "delta_spearman_within")])
    return tabulate(rows, headers=["task", "method", "ρ overall", "ρ within states", "ρ between states", "τ",
                                   "Δρ vs baseline", "Δρ within vs baseline"], tablefmt="github", disable_numparse=True)


def _verdict(rec: pd.Series, name: str, digits: int) -> str:
    """A paired delta with its interval, marked ▲/▼ when the interval excludes 0."""
    cell = _ci(rec, name, digits)
    lo, hi = _num(rec.get(f"{name}_ci_low")), _num(rec.get(f"{name}_ci_high"))
    return cell + (" ▲" if lo > 0 else " ▼" if hi < 0 else "")


def _by_size(rec: pd.Series, digits: int) -> str:
    """The mean change at each matched step size, smallest first ("—" for records without them)."""
    sizes = rec.get("by_step_size")
    if not isinstance(sizes, list) or not sizes:
        return "—"
    return " / ".join(f"{_num(b.get('improvement')):+.{digits}f}" for b in sizes)


def _cosine(rec: pd.Series) -> str:
    """The mean cosine with its interval, and over how many states it is defined when not all (the estimate is
    0 where no perturbation changes the metric, e.g. a saturated AP)."""
    cell, k, n = _ci(rec, "fd_cosine"), _num(rec.get("fd_cosine_states")), _num(rec.get("n_states"))
    return cell + (f" ({int(k)}/{int(n)} states)" if not math.isnan(k) and not math.isnan(n) and k < n and cell != "—" else "")


def _states(rec: pd.Series) -> str:
    """States measured, and how many of them gave the loss a zero gradient (no step at all)."""
    stuck = _num(rec.get("stuck_states"))
    return _count(rec.get("n_states")) + (f" ({int(stuck)} zero-gradient)" if not math.isnan(stuck) and stuck > 0 else "")


def descent_table(descents: pd.DataFrame, profile: str) -> str:
    """One row per (task, method): mean metric change over states and step sizes, paired delta vs baseline,
    the change at each step size, cosine."""

    df = descents[descents["profile"] == profile]
    rows, sizes = [], None
    for task in sorted(df["task"].unique()):
        tdf = df[df["task"] == task]
        ok = tdf[tdf["status"] == "ok"].set_index("method")
        for method in sorted(tdf["method"].unique()):
            if method not in ok.index:
                rows.append([task, method, empty_cell(tdf[tdf["method"] == method]), "", "", "", ""])
                continue
            r = ok.loc[method]
            if isinstance(r.get("by_step_size"), list) and r.get("by_step_size"):
                sizes = [b.get("size") for b in r["by_step_size"]]
            rows.append([task, method, _ci(r, "improvement", 4),
                         "baseline" if method == r.get("baseline") else _verdict(r, "delta_improvement", 4),
                         _by_size(r, 4), _cosine(r), _states(r)])
    per_size = "change at " + ("/".join(f"{100 * float(x):g}%" for x in sizes) + " of ‖θ‖" if sizes else "each step size")
    return tabulate(rows, headers=["task", "method", "metric change", "Δ vs baseline", per_size,
                                   "cos(−∇loss, metric ascent)", "states"], tablefmt="github", disable_numparse=True)


def section(results_dir: Path, probes: pd.DataFrame, profile: str, descents: pd.DataFrame | None = None) -> list[str]:
    """The markdown lines of one profile's probe section."""
    descents = current(descent_frame(results_dir) if descents is None else descents)
    probes = current(probes)
    df = probes[probes["profile"] == profile]
    lines = [f"### Probes (`{profile}`)", "", f"- {SPEARMAN_LINE}", f"- {DESCENT_LINE}", "",
             "Pool (one per task, shared by every method and both probes): model states along a baseline run of "
             "the profile, up to its final metric; in every batch a uniform random fraction of the targets is "
             "randomised (ReLoss's recipe) so the batch metric spreads over its range at every state.", ""]
    for task in sorted(df["task"].unique()):
        ok = df[(df["task"] == task) & (df["status"] == "ok")]
        if len(ok):
            lines.append(pool_line(task, ok.iloc[0], str(ok.iloc[0].get("metric_name", "metric"))))
            if "pool_sha256" in ok and ok["pool_sha256"].nunique() > 1:
                lines.append(f"  - **warning**: the `{task}` records come from {ok['pool_sha256'].nunique()} "
                             "different pools; regenerate them so every method sees the same one.")
    lines += ["", f"#### Spearman probe (`{profile}`)", "", STATS_LINE + " Most negative ρ per task in **bold**.", "",
              spearman_table(probes, profile), ""]
    if not descents.empty and (descents["profile"] == profile).any():
        lines += [f"#### Descent probe (`{profile}`)", "",
                  "Metric change: mean over states and step sizes [95% state-bootstrap interval]; Δ: paired "
                  "with the baseline's steps from the same states, batches and lengths (▲/▼: interval excludes 0); "
                  "the change at each step length shows where a direction stops helping; cosine: between the loss's descent "
                  "direction and a finite-difference estimate of the metric's ascent direction, output layer only "
                  "(estimator in `surrogate_bench/probes/descent.py`; its noise keeps every loss well below 1, so "
                  "compare across rows).", "", descent_table(descents, profile), ""]
    return lines


def figures(probes: pd.DataFrame, descents: pd.DataFrame, profile: str, task: str, plots_dir: Path) -> list[Path]:
    """The task's probe scatter (coloured by model state) and descent bars, where records exist."""
    from . import plots

    probes, descents = current(probes), current(descents)
    figs = [plots.probe_scatter(probes[probes["profile"] == profile], task, plots_dir / f"{profile}-{task}-probe.png")]
    if not descents.empty:
        figs.append(plots.descent_bars(descents[descents["profile"] == profile], task,
                                       plots_dir / f"{profile}-{task}-descent.png"))
    return [f for f in figs if f is not None]
