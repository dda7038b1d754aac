"""The leaderboard's probe section: how the pool is built, the Spearman and descent probe tables, the probe
validity table (does a probe predict training benefit?), their figures.

Records are grouped by (protocol version, probe-code fingerprint): a table never pools records of
different groups. Per task the newest group is shown (highest protocol, then probe version, then the
most records); the records of earlier groups are counted and left out (they stay on disk as evidence of
the earlier construction). Records of an earlier construction still render; their missing cells read "—".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from ..store.records import records_frame
from ..reporting.labels import empty_cell, labelled
from . import validity as pv

SPEARMAN_LINE = ("**Spearman probe** — does the loss's *value* rank batches like the exact metric? Spearman ρ "
                 "between batch loss and batch metric (papers' sign: −1 = ranks them exactly like the metric).")
DESCENT_LINE = ("**Descent probe** — does a step along the loss's *gradient* improve the metric? From each pool "
                "state, a step in the direction the profile's optimiser would take for the loss's gradient (averaged "
                "over 8 training batches; SGD: −gradient, Adam/RMSprop: −sign of it) at matched lengths (fractions "
                "of the state's parameter norm, the same for every loss, so only the direction differs); change "
                "of the exact metric on the pool's clean held-out samples (> 0: improves). The headline length is "
                "chosen from the baseline alone — the largest length at which the baseline's own step improves "
                "the metric at most states, judged on one half of the held-out samples — and every method's "
                "change there is reported on the other half; lengths where the baseline's step hurts are never "
                "averaged in.")
STATS_LINE = ("ρ overall (all batches), within states (ρ inside each model state, averaged) and between states "
              "(ρ of the state means); Kendall τ overall; [95% intervals] from a two-stage bootstrap that resamples "
              "baseline runs, then model states within each drawn run (all batches of a drawn state together), "
              "1000 resamples; Δ = method − baseline on the same batches and resamples (Δρ < 0: the method tracks "
              "the metric better than the baseline). An interval from fewer than 5 states, or one every resample "
              "gives the same value, reads \"too few states for an interval\".")
TOO_FEW = "too few states for an interval"
HEADLINE_SHARE = 0.10
HEADLINE_LABEL = {"spearman_within": "Δρ within states", "spearman": "Δρ overall"}


def _field(rec: Any, name: str, nested: str | None = None) -> Any:
    """A record's value: top-level ``name``, else ``nested.name`` (flattened) or ``rec[nested][name]``."""
    v = rec.get(name) if hasattr(rec, "get") else None
    if _present(v):
        return v
    if nested is not None:
        v = rec.get(f"{nested}.{name}")
        if _present(v):
            return v
        d = rec.get(nested)
        if isinstance(d, dict):
            return d.get(name)
    return None


def _present(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    return True


def group_of(rec: Any) -> tuple[int, str]:
    """(protocol version, probe-code fingerprint) of a probe or descent record; records before the field are
    protocol 1, a record without a fingerprint has ''."""
    proto = _field(rec, "protocol_version")
    try:
        proto = int(proto) if _present(proto) else 1
    except (TypeError, ValueError):
        proto = 1
    fp = _field(rec, "probe_code_fingerprint", "provenance")
    return proto, str(fp) if _present(fp) else ""


def _version(rec: Any) -> int:
    v = _field(rec, "probe_version")
    if not _present(v):
        v = _field(rec, "descent_version")
    if _present(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            pass
    return 2 if isinstance(rec.get("pool"), dict) or _present(rec.get("pool.states")) else 1


def descent_frame(results_dir: Path) -> pd.DataFrame:
    """The descent records, labelled like the other tables (method parameters that differ from defaults)."""

    return labelled(records_frame(Path(results_dir), "descent"))


def _with_group(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    groups = [group_of(r) for _, r in df.iterrows()]
    df["_protocol"] = [g[0] for g in groups]
    df["_probe_code"] = [g[1] for g in groups]
    df["_version"] = [_version(r) for _, r in df.iterrows()]
    return df


def current(df: pd.DataFrame) -> pd.DataFrame:
    """Per (profile, task) the records of one group only — the newest (highest protocol version, then probe
    version, then the most records) — and one record per method in it (an ok record wins, then the later
    file): records of different probe-code fingerprints or protocol versions are never pooled. The number
    of records left out per (profile, task) is in ``attrs["left_out"]``."""
    if df.empty:
        return df
    df = _with_group(df)
    keep, left = [], {}
    for (profile, task), tdf in df.groupby(["profile", "task"], sort=False):
        sizes = tdf.groupby(["_protocol", "_version", "_probe_code"]).size()
        best = max(sizes.index, key=lambda k: (k[0], k[1], sizes[k], k[2]))
        mine = tdf[(tdf["_protocol"] == best[0]) & (tdf["_version"] == best[1]) & (tdf["_probe_code"] == best[2])]
        ok = (mine["status"] == "ok").astype(int)
        mine = mine.assign(_rank=ok).sort_values("_rank", kind="stable").drop_duplicates("method", keep="last")
        keep.append(mine.drop(columns="_rank"))
        left[(profile, task)] = len(tdf) - len(mine)
    out = pd.concat(keep).sort_index()
    out.attrs["left_out"] = left
    return out


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


def _ci(rec: Any, name: str, digits: int = 3) -> str:
    """``+0.123 [+0.100, +0.150]``, or "—" when the record lacks the statistic; a degenerate interval (a
    ``_ci_note``, or a zero-width interval at ±1 as older records stored it) says so instead."""
    v = _num(rec.get(name))
    if math.isnan(v):
        return "—"
    note = rec.get(f"{name}_ci_note")
    lo, hi = _num(rec.get(f"{name}_ci_low")), _num(rec.get(f"{name}_ci_high"))
    if isinstance(note, str) and note:
        return f"{v:+.{digits}f} ({note})"
    if not math.isnan(lo) and lo == hi and abs(lo) == 1.0:
        return f"{v:+.{digits}f} ({TOO_FEW})"
    if math.isnan(lo) or math.isnan(hi):
        return f"{v:+.{digits}f}"
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def variance_share(rec: Any) -> float:
    """Share of the pool's batch-metric variance that comes from the model state (the record's, else
    computed from its stored points)."""
    share = _num(rec.get("state_variance_share"))
    if not math.isnan(share):
        return share
    pts = rec.get("points")
    if isinstance(pts, list) and pts and len(pts[0]) >= 3:
        from ..probes.stats import state_variance_share

        arr = np.asarray(pts, float)
        return state_variance_share(arr[:, 1], arr[:, 2])
    return float("nan")


def headline_of(rec: Any) -> str:
    """``spearman_within`` where the state explains under 10% of the batch metric's variance, else ``spearman``."""
    share = variance_share(rec)
    return "spearman_within" if not math.isnan(share) and share < HEADLINE_SHARE else "spearman"


def pool_line(task: str, rec: pd.Series, metric_name: str) -> str:
    """How this task's pool was built, the per-state metric range it spans and which ρ is the headline."""
    pool = rec.get("pool")
    sha = str(rec.get("pool_sha256", ""))[:12]
    if not isinstance(pool, dict) or not pool.get("state_metric"):
        return (f"- `{task}`: pool of the earlier construction (first epochs of a short baseline run plus weight "
                f"noise; batch bootstrap); regenerate the probes for the statistics above (pool sha256 `{sha}`).")
    sm = [float(m) for m in pool["state_metric"]]
    steps = sorted({int(_num(s)) for s in pool.get("state_step") or [] if not math.isnan(_num(s))})
    per_state = [int(_num(n)) for n in pool.get("batches_per_state") or []]
    runs = pool.get("runs") or []
    who = (f"{_count(pool['states'])} states of {len(runs)} `{pool.get('baseline')}` runs (seeds "
           f"{', '.join(str(int(r)) for r in runs)}) of the profile" if len(runs) > 1 else
           f"{_count(pool['states'])} states of one `{pool.get('baseline')}` run of the profile (one baseline run: "
           "its intervals do not cover run-to-run variance)")
    size = _num(pool.get("bytes"))
    line = (f"- `{task}`: {who} at steps {', '.join(map(str, steps))} of {_count(pool.get('total_steps'))}; "
            f"per-state {metric_name} on the clean {pool.get('split', 'probe')} split **{min(sm):.3f}–{max(sm):.3f}**; "
            f"{sum(per_state)} batches of {_count(pool.get('batch_size'))} "
            f"({min(per_state) if per_state else 0}–{max(per_state) if per_state else 0} per state), each with a "
            f"uniform random fraction of its targets randomised, batch {metric_name} "
            f"{_num(pool.get('metric_min')):.2f}–{_num(pool.get('metric_max')):.2f}; identical for every method "
            f"(pool sha256 `{sha}`" + (f", {size / 2**20:.1f} MiB" if not math.isnan(size) and size > 0 else "") + ").")
    share = variance_share(rec)
    if not math.isnan(share):
        if share < HEADLINE_SHARE:
            line += (f" Only **{100 * share:.1f}%** of the batch-{metric_name} variance in the pool comes from the "
                     f"model state (the rest is the target randomisation within a state), so the **headline is ρ "
                     "within states**: ρ overall mostly ranks randomisation levels that every loss sees alike, and "
                     "ρ between states rests on nearly equal state means.")
        else:
            line += (f" {100 * share:.1f}% of the batch-{metric_name} variance comes from the model state; the "
                     "headline is ρ overall.")
    return line


def spearman_table(probes: pd.DataFrame, profile: str) -> str:
    """One row per (task, method): the headline ρ, ρ overall / within / between with intervals, τ, paired Δ."""

    df = probes[probes["profile"] == profile]
    rows = []
    for task in sorted(df["task"].unique()):
        tdf = df[df["task"] == task]
        ok = tdf[tdf["status"] == "ok"].set_index("method")
        head = headline_of(ok.iloc[0]) if len(ok) else "spearman"
        rhos = ok[head].map(_num).dropna() if head in ok else pd.Series(dtype=float)
        best = rhos.idxmin() if len(rhos) > 1 else None
        for method in sorted(tdf["method"].unique()):
            if method not in ok.index:
                rows.append([task, method, empty_cell(tdf[tdf["method"] == method]), "", "", "", "", "", ""])
                continue
            r = ok.loc[method]
            lead = ("within: " if head == "spearman_within" else "overall: ") + _ci(r, head)
            base = r.get("baseline")
            rows.append([task, f"**{method}**" if method == best else method,
                         f"**{lead}**" if method == best else lead, _ci(r, "spearman"), _ci(r, "spearman_within"),
                         _ci(r, "spearman_between"), _ci(r, "kendall"),
                         "baseline" if method == base else _ci(r, "delta_spearman"),
                         "baseline" if method == base else _ci(r, "delta_spearman_within")])
    return tabulate(rows, headers=["task", "method", "headline ρ", "ρ overall", "ρ within states", "ρ between states",
                                   "τ", "Δρ vs baseline", "Δρ within vs baseline"], tablefmt="github",
                    disable_numparse=True)


def _verdict(rec: Any, name: str, digits: int) -> str:
    """A paired delta with its interval, marked ▲/▼ when the interval excludes 0."""
    cell = _ci(rec, name, digits)
    lo, hi = _num(rec.get(f"{name}_ci_low")), _num(rec.get(f"{name}_ci_high"))
    return cell + (" ▲" if lo > 0 else " ▼" if hi < 0 else "")


def _pct(size: Any) -> str:
    return f"{100 * float(size):g}%"


def _by_size(rec: Any, digits: int, key: str = "improvement") -> str:
    """The per-length curve (report half for current records), smallest first, the chosen length in bold."""
    sizes = rec.get("by_step_size")
    if not isinstance(sizes, list) or not sizes:
        return "—"
    cells = []
    for b in sizes:
        v = _num(b.get(key))
        cell = "—" if math.isnan(v) else f"{v:+.{digits}f}"
        cells.append(f"**{cell}**" if b.get("chosen") else cell)
    return " / ".join(cells)


def _cosine(rec: Any) -> str:
    """The mean cosine with its interval, and over how many states it is defined when not all (the estimate is
    0 where no perturbation changes the metric, e.g. a saturated AP)."""
    cell, k, n = _ci(rec, "fd_cosine"), _num(rec.get("fd_cosine_states")), _num(rec.get("n_states"))
    return cell + (f" ({int(k)}/{int(n)} states)" if not math.isnan(k) and not math.isnan(n) and k < n and cell != "—" else "")


def _states(rec: Any) -> str:
    """States (and runs) measured, and how many of them gave the loss a zero gradient (no step at all)."""
    stuck, runs = _num(rec.get("stuck_states")), _num(rec.get("n_runs"))
    out = _count(rec.get("n_states")) + (f" of {int(runs)} runs" if not math.isnan(runs) and runs > 1 else "")
    return out + (f" ({int(stuck)} zero-gradient)" if not math.isnan(stuck) and stuck > 0 else "")


def has_choice(rec: Any) -> bool:
    return isinstance(rec.get("length_choice"), dict)


def choice_line(task: str, rec: Any) -> str:
    """How the task's length was chosen: the baseline's share of improving states per length (choose half)."""
    if not has_choice(rec):
        return (f"- `{task}`: records of the earlier descent probe (no held-out halves, no length choice): only the "
                "per-length curve is shown; regenerate them for a headline.")
    ch = rec["length_choice"]
    sizes = [b.get("size") for b in rec.get("by_step_size") or []]
    shares = ", ".join(f"{_pct(s)}: {100 * float(x):.0f}%" for s, x in zip(sizes, ch.get("baseline_improves_share") or []))
    base = rec.get("baseline")
    states = rec.get("states") if isinstance(rec.get("states"), list) else []
    befores = [_num(r.get("before")) for r in states if isinstance(r, dict)]
    moved = any(any(_num(c) != 0 for c in (r.get("change_choose") or [])) for r in states if isinstance(r, dict))
    if ch.get("chosen_size") is None and states and not moved:
        where = (f" (held-out {rec.get('metric_name', 'metric')} {min(befores):.3f}–{max(befores):.3f} before the "
                 "step: saturated)" if befores and min(befores) >= 0.999 else "")
        return (f"- `{task}`: **no length helps the baseline** — no step of `{base}` changed the held-out metric at "
                f"any state or length{where}, so there is no headline number; the probe cannot separate losses "
                "here.")
    if ch.get("chosen_size") is None:
        return (f"- `{task}`: **no length helps the baseline** — `{base}`'s own step improves the choose half at no "
                f"more than half of the states at any length ({shares} of ‖θ‖: share of states improved), so there is "
                "no headline number; the per-length curve is shown alone.")
    return (f"- `{task}`: chosen length **{_pct(ch['chosen_size'])} of ‖θ‖** — the largest at which `{base}`'s own "
            f"step improves the choose half at most states (share of states improved per length: {shares}); "
            f"changes reported on the disjoint report half.")


def descent_table(descents: pd.DataFrame, profile: str) -> str:
    """One row per (task, method): the chosen length, the change there (report half) and its paired Δ vs the
    baseline, the per-length curve (report half; chosen in bold), cosine, states."""

    df = descents[descents["profile"] == profile]
    rows, sizes = [], None
    for task in sorted(df["task"].unique()):
        tdf = df[df["task"] == task]
        ok = tdf[tdf["status"] == "ok"].set_index("method")
        for method in sorted(tdf["method"].unique()):
            if method not in ok.index:
                rows.append([task, method, empty_cell(tdf[tdf["method"] == method]), "", "", "", "", ""])
                continue
            r = ok.loc[method]
            if isinstance(r.get("by_step_size"), list) and r.get("by_step_size"):
                sizes = [b.get("size") for b in r["by_step_size"]]
            if not has_choice(r):
                length, change, delta = "— (earlier probe)", "—", "—"
            elif r["length_choice"].get("chosen_size") is None:
                length, change, delta = "none helps the baseline", "—", "—"
            else:
                length = _pct(r["length_choice"]["chosen_size"])
                change = _ci(r, "improvement", 4)
                delta = "baseline" if method == r.get("baseline") else _verdict(r, "delta_improvement", 4)
            rows.append([task, method, length, change, delta, _by_size(r, 4), _cosine(r), _states(r)])
    per_size = "curve: change at " + ("/".join(_pct(x) for x in sizes) + " of ‖θ‖" if sizes else "each length")
    return tabulate(rows, headers=["task", "method", "chosen length", "change there (report half)",
                                   "Δ vs baseline there", per_size, "cos(−∇loss, metric ascent)", "states"],
                    tablefmt="github", disable_numparse=True)


def _runs(results_dir: Path) -> pd.DataFrame:
    """The published run records (deduplicated, labelled, with a ``protocol`` column) for the validity table."""
    from ..reporting.families import ok_runs, prepare

    try:
        return ok_runs(prepare(Path(results_dir), include_plumbing=True).runs)
    except Exception:  # no runs folder, unreadable records: no validity table, never a broken page
        return pd.DataFrame(columns=["profile", "protocol", "task", "method", "seed", "status", "test_metric"])


def _group_label(rec: Any) -> str:
    proto, fp = group_of(rec)
    return f"protocol {proto}, probe code `{fp[:10] or '?'}`"


def validity_lines(results_dir: Path, probes: pd.DataFrame, descents: pd.DataFrame, profile: str,
                   runs: pd.DataFrame | None = None) -> list[str]:
    """The probe validity table of one profile and one sentence per task (``probes``/``descents``: the current
    group of each task, :func:`current`)."""
    from ..reporting.families import baseline_of

    runs = _runs(results_dir) if runs is None else runs
    df = probes[(probes["profile"] == profile)]
    rows, sentences = [], []
    for task in sorted(df["task"].unique()):
        tdf = df[(df["task"] == task) & (df["status"] == "ok")]
        if tdf.empty:
            continue
        first = tdf.iloc[0]
        proto = group_of(first)[0]
        baseline = str(first.get("baseline") or baseline_of(task) or "")
        trun = runs[(runs["profile"] == profile) & (runs["protocol"] == proto)] if not runs.empty else runs
        ddf = descents[(descents["profile"] == profile) & (descents["task"] == task)] if not descents.empty else descents
        if ddf is not None and not ddf.empty:
            ddf = ddf[[group_of(r) == group_of(first) for _, r in ddf.iterrows()]]  # never another group's
            ddf = ddf[[has_choice(r) and r["length_choice"].get("chosen_size") is not None
                       for _, r in ddf.iterrows()]] if not ddf.empty else ddf  # only at a chosen length
        n_run_methods = 0 if trun.empty else trun[trun["task"] == task]["method"].nunique()
        corrs = pv.task_validity(tdf, ddf, trun, task, baseline)
        for c in corrs:
            rows.append([task, _group_label(first), n_run_methods, c.label, pv.expected_word(c.expected),
                         fmt_n(c), pv.fmt_corr(c), {"predicts": "predicts", "reversed": "reversed",
                                                      "no": "does not predict"}[c.verdict] if c.n_methods >= pv.MIN_METHODS
                         else "too few methods"])
        head = HEADLINE_LABEL[headline_of(first)]
        if n_run_methods == 0:
            sentences.append(f"- `{task}`: no protocol-{proto} `{profile}` run records of this task yet: nothing to "
                             "validate the probes against.")
        else:
            sentences.append("- " + pv.sentence(task, corrs, head, proto))
    if not rows:
        return []
    table = tabulate(rows, headers=["task", "probe records", "methods with runs", "probe statistic",
                                    "predicts if", "methods", "Spearman ρ vs training Δ [95%]", "reading"],
                     tablefmt="github", disable_numparse=True)
    return [f"#### Probe validity (`{profile}`)", "",
            "Does a probe predict which loss trains better? Per task, across methods: Spearman ρ (scipy) between the "
            "probe statistic and the training verdict's paired difference vs the baseline (mean over the common "
            "seeds of method − baseline test metric, from the run records of the same profile and protocol version "
            "as the probe records; the baseline itself counts, at 0). [95% interval]: bootstrap over methods and, "
            "within each, its seeds (2000 resamples); fewer than 4 methods: no interval. Δρ < 0 means the loss "
            "tracks the metric better than the baseline's, so a predictive Δρ has ρ < 0, a predictive descent Δ "
            "ρ > 0. \"predicts\": the interval excludes 0 on that side; \"reversed\": on the other side.", "",
            table, "", *sentences, ""]


def fmt_n(c: pv.Correlation) -> str:
    return str(c.n_methods)


def section(results_dir: Path, probes: pd.DataFrame, profile: str, descents: pd.DataFrame | None = None) -> list[str]:
    """The markdown lines of one profile's probe section."""
    descents = current(descent_frame(results_dir) if descents is None else descents)
    probes = current(probes)
    df = probes[probes["profile"] == profile]
    lines = [f"### Probes (`{profile}`)", "", f"- {SPEARMAN_LINE}", f"- {DESCENT_LINE}", "",
             "Pool (one per task, shared by every method and both probes): model states along baseline runs of "
             "the profile (seeds 0, 1, 2), up to their final metric; in every batch a uniform random fraction of the "
             "targets is randomised (ReLoss's recipe) so the batch metric spreads over its range at every state. "
             "Records are grouped by protocol version and probe-code fingerprint; each task shows one group "
             "(named in the validity table), never a mix.", ""]
    left = probes.attrs.get("left_out", {}) if hasattr(probes, "attrs") else {}
    for task in sorted(df["task"].unique()):
        ok = df[(df["task"] == task) & (df["status"] == "ok")]
        if len(ok):
            lines.append(pool_line(task, ok.iloc[0], str(ok.iloc[0].get("metric_name", "metric"))))
            if "pool_sha256" in ok and ok["pool_sha256"].nunique() > 1:
                lines.append(f"  - **warning**: the `{task}` records come from {ok['pool_sha256'].nunique()} "
                             "different pools; regenerate them so every method sees the same one.")
        n_left = left.get((profile, task), 0)
        if n_left:
            lines.append(f"  - {n_left} `{task}` probe record{'s' if n_left != 1 else ''} of an earlier probe code or "
                         "protocol version left out (never pooled with these).")
    lines += ["", f"#### Spearman probe (`{profile}`)", "", STATS_LINE + " Headline: ρ within states where the "
              "state explains under 10% of the batch metric's variance, else ρ overall; most negative headline ρ per "
              "task in **bold**.", "", spearman_table(probes, profile), ""]
    if not descents.empty and (descents["profile"] == profile).any():
        dd = descents[descents["profile"] == profile]
        choice = []
        for task in sorted(dd["task"].unique()):
            ok = dd[(dd["task"] == task) & (dd["status"] == "ok")]
            if len(ok):
                base = ok[ok["method"] == ok.iloc[0].get("baseline")]
                choice.append(choice_line(task, (base if len(base) else ok).iloc[0]))
        lines += [f"#### Descent probe (`{profile}`)", "", *choice, "",
                  "Change there: mean over states at the chosen length, on the report half [95% run-then-state "
                  "bootstrap interval]; Δ: paired with the baseline's steps from the same states, batches and lengths "
                  "(▲/▼: interval excludes 0); the curve: the mean change at each length on the report half (chosen "
                  "in bold), showing where a direction stops helping; cosine: between the loss's descent direction "
                  "and a finite-difference estimate of the metric's ascent direction, output layer only (estimator in "
                  "`surrogate_bench/probes/descent.py`; its noise keeps every loss well below 1, so compare across "
                  "rows).", "", descent_table(descents, profile), ""]
    lines += validity_lines(results_dir, probes, descents, profile)
    return lines


def figures(probes: pd.DataFrame, descents: pd.DataFrame, profile: str, task: str, plots_dir: Path) -> list[Path]:
    """The task's probe scatter (coloured by model state) and descent curves, from its current group."""
    from ..reporting import plots
    from . import plots as probe_plots

    probes, descents = current(probes), current(descents)
    figs = [plots.probe_scatter(probes[probes["profile"] == profile], task, plots_dir / f"{profile}-{task}-probe.png")]
    if not descents.empty:
        figs.append(probe_plots.descent_curves(descents[descents["profile"] == profile], task,
                                               plots_dir / f"{profile}-{task}-descent.png"))
    return [f for f in figs if f is not None]
