"""Markdown leaderboard from the run records: pandas gathers, tabulate renders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from . import probe_section
from .. import results
from ..plugins.catalog import PLUMBING_PROFILES
from ..store.records import atomic_write_bytes, records_frame
from .fingerprints import split_by_fingerprint, tuning_table
from .labels import empty_cell, labelled
from ..stats.seeds import ALPHA
from .cells import CELL_KEYS, Cell, best_detectable, cells, dedupe_runs

PROFILE_ORDER = ["smoke", "quick", "paper"]
METRIC_LEGEND = (
    "Test metric: mean ± half-width of the 95% Student-t interval over seeds (n = seeds; a copy of a record "
    "counts once). Each method is compared with its task's baseline (`ce`, or `mse-heatmap` for heatmaps) by a "
    f"paired t-test over the seeds both ran (same seed = same initialisation and data order): ▲/▼ = detectable "
    f"(n ≥ 2 pairs, p < {ALPHA}), n.s. = not detectable. A single run shows the test-set bootstrap 95% interval "
    "(1000 resamples of the test samples) instead: it measures test-sampling error only, not seed-to-seed "
    "variation. **Bold** = the best mean, only when its paired lead over the runner-up and over the baseline "
    "is detectable.")


def tuned_settings(tasks: list[str]) -> str:
    """One line per task that ships tuned defaults for a method (they differ from the method's own)."""
    from ..plugins.errors import SuiteError
    from ..plugins.registry import registry

    lines = []
    for task in sorted(set(tasks)):
        try:
            tuned = registry().get_class("task", task).method_defaults
        except SuiteError:
            continue
        sources = getattr(registry().get_class("task", task), "method_defaults_source", {})
        for method, params in sorted(tuned.items()):
            source = f"`{sources[method]}`" if method in sources else "see README"
            lines.append(f"- `{task}` runs `{method}` with " + ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
                         + f" by default (the task's tuned settings; from {source})")
    return "\n".join(lines)


BASELINES = {"logits": "ce", "heatmaps": "mse-heatmap"}
"""Each task's baseline by output kind (a task class may name its own with ``baseline_method``)."""


def baseline_of(task: str) -> str | None:
    """The method every other method on ``task`` is tested against (None for an unknown task)."""
    from ..plugins.errors import SuiteError
    from ..plugins.registry import registry

    try:
        cls = registry().get_class("task", task)
    except SuiteError:
        return None
    return getattr(cls, "baseline_method", None) or BASELINES.get(getattr(cls, "output_kind", ""))


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def format_cell(cell: Cell, higher_is_better: bool, is_baseline: bool, digits: int = 4) -> str:
    """"mean ± t half-width (n=k)" and the verdict against the baseline; a single run shows its test-set
    bootstrap interval instead of a seed interval."""
    iv = cell.interval
    if iv.n > 1:
        text = f"{_num(iv.mean, digits)} ± {_num(iv.half_width, digits)} (n={iv.n})"
    elif cell.test_ci is not None:
        text = f"{_num(iv.mean, digits)} (n=1; test-set 95% [{_num(cell.test_ci[0], digits)}, {_num(cell.test_ci[1], digits)}])"
    else:
        text = f"{_num(iv.mean, digits)} (n=1)"
    if is_baseline:
        return text + " · baseline"
    vs = cell.vs_baseline
    if vs is None:
        return text
    if vs.n < 2:
        return text + f" · vs baseline {vs.diff:+.{digits}f}, untested (n={vs.n})"
    if vs.detectable:
        better = (vs.diff > 0) == higher_is_better
        return text + f" · {'▲' if better else '▼'} {vs.diff:+.{digits}f} p={vs.p:.3f}"
    return text + f" · n.s. {vs.diff:+.{digits}f} p={vs.p:.2f}"


def metric_table(runs: pd.DataFrame, profile: str, cell_keys: tuple[str, ...] = CELL_KEYS) -> str:
    """One row per (task, method) of one profile, the task's baseline first: mean ± 95% t interval over seeds
    with n, the method's paired test against the baseline, and the best in bold only when its lead is
    detectable (see stats). Long rather than wide, so a suite with many methods stays readable."""
    df = runs[runs["profile"] == profile]
    tasks = sorted(df["task"].unique())
    baselines = {t: baseline_of(t) for t in tasks}
    all_cells = cells(df, {t: b for t, b in baselines.items() if b}, cell_keys)
    extra = [k for k in cell_keys if k not in ("profile", "task", "method")]
    t_at, m_at = list(cell_keys).index("task"), list(cell_keys).index("method")
    rows, ns = [], set()
    for task in tasks:
        tdf = df[df["task"] == task]
        meta = tdf.iloc[0]
        higher = bool(meta.get("higher_is_better", True))
        arrow = "↑" if higher else "↓"
        groups = sorted({g[:t_at] + g[t_at + 1:m_at] + g[m_at + 1:] for g in all_cells if g[t_at] == task}) or [()]
        for rest in groups:
            task_cells = {g[m_at]: c for g, c in all_cells.items()
                          if g[t_at] == task and g[:t_at] + g[t_at + 1:m_at] + g[m_at + 1:] == rest}
            best = best_detectable(task_cells, baselines[task], higher)
            label = f"{task} ({meta.get('metric_name', 'metric')} {arrow})"
            if extra and rest:
                label += " [" + ", ".join(str(v) for v in rest[-len(extra):]) + "]"
            methods = sorted(set(tdf["method"].unique()) | set(task_cells), key=lambda m: (m != baselines[task], m))
            for method in methods:
                if method in task_cells:
                    ns.add(task_cells[method].interval.n)
                    cell = format_cell(task_cells[method], higher, method == baselines[task])
                    rows.append([label, f"**{method}**" if method == best else method,
                                 f"**{cell}**" if method == best else cell])
                elif (why := empty_cell(tdf[tdf["method"] == method])) not in ("", "n/a"):
                    rows.append([label, method, why])
    seeds = (f"{min(ns)}" if len(ns) == 1 else f"{min(ns)}–{max(ns)}") if ns else "0"
    return tabulate(rows, headers=[f"task (metric) · {seeds} seed(s) per cell", "method",
                                   "test metric · paired vs baseline"], tablefmt="github")


def quoted_table(rows: list[dict[str, str]]) -> str:
    return tabulate([[r["task"], r["setting"], r["loss"], r["value"], r["source"], r.get("compare_with", "")]
                     for r in rows], headers=["task", "setting (paper)", "loss", "published value", "quoted from",
                                              "compare only with"], tablefmt="github")


def notes_table(runs: pd.DataFrame, profile: str) -> str:
    """Why cells are empty: skipped and failed runs with their reasons."""
    df = runs[(runs["profile"] == profile) & (runs["status"] != "ok")]
    if df.empty:
        return ""
    rows = sorted({(r.task, r.method, r.status, str(r.reason).splitlines()[0][:160]) for r in df.itertuples()})
    return tabulate(rows, headers=["task", "method", "status", "reason"], tablefmt="github")


def conditions(runs: pd.DataFrame, profile: str) -> str:
    df = runs[(runs["profile"] == profile) & (runs["status"] == "ok")]
    if df.empty:
        return ""
    envs = pd.DataFrame(results.nested(df, "environment"))
    prov = pd.DataFrame(results.nested(df, "provenance"))
    column = lambda name: (prov[name].dropna() if name in prov else envs[name].dropna() if name in envs  # noqa: E731
                           else [])  # git_commit: in provenance (before 0.2.0 also in environment)
    devices = ", ".join(sorted({str(d) for d in column("device_name")})) or "unknown"
    commits = ", ".join(sorted({str(c)[:10] for c in column("git_commit")})) or "unknown"
    seeds = ", ".join(str(s) for s in sorted(df["seed"].unique()))
    epochs = ", ".join(f"{t}: {int(e)}" for t, e in df.groupby("task")["epochs"].first().items())
    return f"Profile `{profile}` · device: {devices} · epochs: {epochs} · seeds: {seeds} · commit: {commits}"


def render(results_dir: Path, plots_dir: Path | None = None, link_base: Path | None = None,
           include_plumbing: bool = False) -> str:
    """The whole markdown page; with ``plots_dir``, also the PNG figures it links to. Plumbing-only profiles
    (``smoke``) are left out unless ``include_plumbing``, and then marked as such."""
    from .references import QUOTED_METRICS, QUOTED_PROBES

    all_runs, all_probes = results.load(Path(results_dir), "run"), results.load(Path(results_dir), "probe")
    runs = dedupe_runs(split_by_fingerprint(labelled(_with_nested(_published(all_runs, include_plumbing),
                                                                   "provenance"))))
    probes = labelled(_with_nested(_published(all_probes, include_plumbing), "pool"))
    descents = probe_section.descent_frame(Path(results_dir))
    parts = ["# surrogate_bench leaderboard", "",
             "Generated by `python -m surrogate_bench leaderboard` from the run records under "
             f"`{Path(results_dir).name}/`. Do not edit by hand.", ""]
    if runs.empty and probes.empty:
        hidden = len(all_runs) + len(all_probes)
        none = (f"No published records: the {hidden} records here are plumbing-only (smoke; `--include-smoke` "
                "shows them)." if hidden else "No records yet.")
        return "\n".join(parts + [none, ""])
    seen = set(runs["profile"]) | (set(probes["profile"]) if not probes.empty else set())
    profiles = sorted(seen, key=lambda p: (PROFILE_ORDER.index(p) if p in PROFILE_ORDER else 99, p))
    for profile in profiles:
        parts += [f"## Profile `{profile}`", ""]
        if profile in PLUMBING_PROFILES:
            parts += [f"**Plumbing only:** `{profile}` runs take seconds on tiny subsets to test that everything "
                      "runs; their numbers do not compare losses.", ""]
        if (runs["profile"] == profile).any():
            parts += [conditions(runs, profile), "",
                      METRIC_LEGEND, "",
                      metric_table(runs, profile), ""]
            tuned = tuned_settings(list(runs.loc[runs["profile"] == profile, "task"]))
            if tuned:
                parts += [tuned, ""]
        notes = notes_table(runs, profile)
        if notes:
            parts += ["Runs without a metric:", "", notes, ""]
        if not probes.empty and (probes["profile"] == profile).any():
            parts += probe_section.section(Path(results_dir), probes, profile, descents)
        if plots_dir is not None:
            parts += _figures(runs, probes, profile, Path(plots_dir), link_base or Path(plots_dir).parent, descents)
    tuning = tuning_table(records_frame(Path(results_dir), "tune"))
    if tuning:
        parts += ["## Tuning (validation split only)", "",
                  "`python -m surrogate_bench tune` records: the grid points tried (the same budget per method), "
                  "chosen by the best mean final validation metric over seeds; no test split was read. \"default now\": "
                  "whether the published runs use the choice (the task's tuned default) or the tune was a diagnostic "
                  "(see docs/fidelity.md).", "",
                  tuning, ""]
    parts += ["## Published numbers (quoted, not measured here)", "",
              "Quoted verbatim from the papers for orientation; their protocols (epochs, models) differ from the "
              "profiles above, so compare with the `paper` profile only, and only with the configuration in the "
              "last column: the release variants (`uniloss-release`, `reloss-release`) follow the published code. "
              "`reloss` is ReLoss-*style*, not ReLoss, and `uniloss` follows the paper's text, not its code; "
              "every deviation is listed in [docs/fidelity.md](../docs/fidelity.md).", "",
              quoted_table(QUOTED_METRICS), "", "Loss–metric correlation reported by ReLoss (a different task):", "",
              quoted_table(QUOTED_PROBES), ""]
    return "\n".join(parts)


def _published(frame: pd.DataFrame, include_plumbing: bool) -> pd.DataFrame:
    """The records a leaderboard shows: without the plumbing-only profiles unless asked for."""
    if include_plumbing or frame.empty:
        return frame
    return frame[~frame["profile"].isin(PLUMBING_PROFILES)].reset_index(drop=True)


def _with_nested(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``frame`` with its flattened ``prefix.*`` columns also as one dict column ``prefix`` (for code reading it)."""
    if frame.empty:
        return frame
    frame = frame.copy()
    frame[prefix] = [d or None for d in results.nested(frame, prefix)]  # None: the record has no such group
    return frame


def _figures(runs: pd.DataFrame, probes: pd.DataFrame, profile: str, plots_dir: Path, base: Path,
             descents: pd.DataFrame) -> list[str]:
    from . import plots

    lines: list[str] = []
    tasks = sorted(set(runs.loc[runs["profile"] == profile, "task"]) |
                   (set(probes.loc[probes["profile"] == profile, "task"]) if not probes.empty else set()))
    for task in tasks:
        figs = []
        if not probes.empty:
            figs += probe_section.figures(probes, descents, profile, task, plots_dir)
        figs.append(plots.validation_curves(runs[runs["profile"] == profile], task,
                                            plots_dir / f"{profile}-{task}-val.png"))
        links = [f"![{f.stem}]({f.relative_to(base).as_posix()})" for f in figs if f is not None]
        if links:
            lines += [f"#### {task}", "", *links, ""]
    return lines


def write(results_dir: Path, out: Path, plots: bool = True, include_plumbing: bool = False) -> Path:
    """Write the markdown (and, beside it in ``plots/``, its figures)."""
    out = Path(out)
    plots_dir = out.parent / "plots" if plots else None
    atomic_write_bytes(out, render(results_dir, plots_dir, out.parent, include_plumbing).encode())
    return out
