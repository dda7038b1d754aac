"""Markdown leaderboard from the run records: pandas gathers, the verdict families decide, tabulate renders.

Per profile (and protocol version: never pooled), one long table: each task's baseline, then every method
compared with it, with the mean and its 95% t interval, the paired difference with its interval and the
verdict (better / worse / equivalent / inconclusive; Holm across the task's family, TOST within ±δ;
docs/reading-the-leaderboard.md). Then the power of each cell, the notes (skipped and failed runs with
their reasons), the probes, the figures, the paper section, the tune records and the quoted numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from . import text
from ..probe_report import section as probe_section
from .. import results
from ..plugins.catalog import PLUMBING_PROFILES
from ..stats.verdicts import ALPHA
from ..store.records import atomic_write_bytes, records_frame
from .families import BASELINES, Family, Prepared, baseline_of, families, load_all, prepare, row_name  # noqa: F401 (re-exported)
from .fingerprints import tuning_table
from .labels import empty_cell, labelled, one_line
from .tuned_rows import TUNED_ARM
from .tuning_budget import budget_line, describe_protocol, protocol_table, tuned_label
from .paper import paper_lines
from .power import POWER_LEGEND, family_power_table

PROFILE_ORDER = ["smoke", "quick", "paper"]
PROFILE_TITLES = {"quick": "early training (quick profile)", "paper": "the papers' protocols"}
VERDICT_LEGEND = (
    "Cells: test metric mean ± half-width of the 95% Student-t interval over seeds (n = seeds; a copy of a record "
    "counts once; a single run shows its test-set bootstrap 95% interval instead, which measures test-sampling "
    "error only). Δ: the mean paired difference method − baseline over the seeds both ran (same seed = same "
    "initialisation and data order) with its 95% t interval. Verdict, α = "
    f"{ALPHA:g} family-wise per task, **Holm**-corrected across the task's family (every method compared with "
    "that task's baseline in this table): **better** / worse = two-sided paired t-test, Holm-adjusted p < α; "
    "equivalent = two one-sided tests (TOST) that the difference lies within ±δ, Holm-adjusted p < α; "
    "inconclusive = neither, with the seeds a fixed design would need at the observed spread (80% power, α / "
    "family size). Only a corrected **better** is bold. See docs/verdicts.md.")
NOTES_HELP = "Runs without a metric (they never form or split a cell):"


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


def quoted_table(rows: list[dict[str, str]]) -> str:
    return tabulate([[r["task"], r["setting"], r["loss"], r["value"], r["source"], r.get("compare_with", "")]
                     for r in rows], headers=["task", "setting (paper)", "loss", "published value", "quoted from",
                                              "compare only with"], tablefmt="github")


def profile_title(profile: str) -> str:
    title = PROFILE_TITLES.get(profile)
    return f"## Profile `{profile}`" + (f": {title}" if title else "")


def _arrow(fam: Family) -> str:
    return "↑" if fam.higher_is_better else "↓"


def _names(labels: list[str], limit: int = 12) -> str:
    shown = ", ".join(f"`{m}`" for m in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def family_line(fam: Family) -> str:
    """The header line of one task's family: its members, baseline, δ and how the verdicts were reached."""
    members = fam.members
    if not fam.rows:
        return f"- `{fam.task}`: no results (only skipped or failed runs: their reasons are in the notes below)"
    if fam.baseline is None or not members:
        what = (f"no comparison (only `{fam.baseline}`)" if fam.baseline else
                f"no baseline runs (`{baseline_of(fam.task) or '?'}`): nothing compared")
    else:
        what = f"family of {len(members)} compared with `{fam.baseline}` ({_names(members)})"
    if fam.arm == TUNED_ARM:
        what = f"every method at its tuned setting (the baseline tuned too, with the same budget); {what}"
    line = (f"- `{fam.task}`{' **tuned**' if fam.arm else ''} ({fam.metric_name} {_arrow(fam)}): {what}; "
            f"δ = {fam.delta:g} ({fam.delta_source}); {fam.method}")
    if fam.decision_path is not None:
        line += f"; decision record `{_shown_path(fam.decision_path)}`"
    return line + "".join(f"\n  - {note}" for note in fam.notes)


def _shown_path(path: Path) -> str:
    """A path relative to the working directory when it lies under it, else as given."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path.cwd())).as_posix() if not str(
            os.path.relpath(Path(path).resolve(), Path.cwd())).startswith("..") else Path(path).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _dirty_mark(row) -> str:
    return " †" if row.dirty else ""


def table_rows(fam: Family, frame: pd.DataFrame) -> tuple[list[list[str]], list[str]]:
    """The table rows of one family (baseline first) and the rows of its methods without a metric, with the
    dirty-tree footnote entries."""
    label = f"{fam.title} ({fam.metric_name} {_arrow(fam)}, δ={fam.delta:g})"
    rows, dirty = [], []
    seq = fam.design is not None
    for name, row in fam.rows.items():
        mean = text.cell(row.cell) + _dirty_mark(row)
        v = row.verdict
        if v is None:
            delta, word = ("baseline", "") if name == fam.baseline else ("", "")
        else:
            delta, word = text.difference(v), text.verdict(v, seq)
            if v.word == "better":
                mean = f"**{mean}**"
        rows.append([label, name, mean, delta, word, "; ".join(n for n in (tuned_note(row), row.loss_nets) if n)])
        if row.dirty:
            by_commit: dict[str, list[int]] = {}
            for seed, commit in row.dirty:
                by_commit.setdefault(commit, []).append(seed)
            dirty.append(f"`{name}` on `{fam.task}`: " + "; ".join(
                f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} at commit `{commit}`"
                for commit, seeds in sorted(by_commit.items())))
    tdf = frame[(frame["task"] == fam.task) & ((frame["arm"] if "arm" in frame else "") == fam.arm)]
    names = {row_name(lbl, m, fam.arm): lbl for lbl, m in zip(tdf["method"], tdf.get("method_name", tdf["method"]))}
    for name in sorted(set(names) - set(fam.rows)):
        why = empty_cell(tdf[tdf["method"] == names[name]])
        if why not in ("", "n/a"):
            rows.append([label, name, why, "", "", ""])
    return rows, dirty


TABLE_HEADERS = ["task (metric, δ)", "method", "test metric: mean ± 95% t (n)", "Δ vs baseline [95% CI] (n)",
                 "verdict", "notes"]


def tuned_note(row) -> str:
    """A tuned row's citation: ``tuned: N trials × S seeds, chosen val 0.xxxx: lr=…, knob=… (record)``."""
    if not row.tune_record:
        return ""
    rec = _tune_records().get(row.tune_record)
    if rec is None:
        return f"tuned (`{_shown_path(Path(row.tune_record))}`)"
    choice = ", ".join(f"{k}={v}" for k, v in sorted((rec.get("choice") or {}).items()))
    return f"{tuned_label(rec)}: {choice} (`{_shown_path(Path(row.tune_record))}`)"


_TUNE_CACHE: dict[str, dict] = {}


def _tune_records() -> dict[str, dict]:
    """Path -> protocol tune record, for the records :func:`render` loaded (filled there)."""
    return _TUNE_CACHE


def metric_section(fams: list[Family], frame: pd.DataFrame, protocol: int) -> list[str]:
    """Header (α, Holm, families, δ, protocol version, seeds) and the table of one profile and protocol."""
    rows, dirty = [], []
    for fam in fams:
        r, d = table_rows(fam, frame)
        rows += r
        dirty += d
    ns = sorted({row.n for fam in fams for row in fam.rows.values()})
    seeds = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}") if ns else "0"
    lines = [f"Records of `PROTOCOL_VERSION` {protocol}" + (" (written before 0.2.0, no protocol_version field)"
                                                              if protocol == 1 else "")
             + f"; {seeds} seed(s) per cell; α = {ALPHA:g}, Holm correction within each task's family:", "",
             *[family_line(f) for f in fams], "", VERDICT_LEGEND, ""]
    if any(f.arm == TUNED_ARM for f in fams):
        profile = fams[0].profile
        recs = [r for r in _tune_records().values() if r.get("profile") == profile]
        lines[-1:-1] = ["", "Tuning budget, " + budget_line(recs) + ". Each method keeps its row at its defaults "
                        "(the first families) and has a row at its tuned setting (the **tuned** families, compared "
                        "with the tuned baseline); the trials are in the tuning section below."]
    if rows:
        lines += [tabulate(rows, headers=TABLE_HEADERS, tablefmt="github", disable_numparse=True), ""]
    if dirty:
        lines += ["† from a working tree with uncommitted changes (the code run is not exactly the commit named): "
                  + " · ".join(dirty), ""]
    return lines


def notes_table(runs: pd.DataFrame, profile: str) -> str:
    """Why cells are empty: skipped and failed runs with their whole reasons, one row per (task, method,
    status, reason) with the seeds it concerns."""
    df = runs[(runs["profile"] == profile) & (runs["status"] != "ok")]
    if df.empty:
        return ""
    grouped: dict[tuple, set] = {}
    skip = df["skip"] if "skip" in df else pd.Series([None] * len(df), index=df.index)
    reason = df["reason"] if "reason" in df else pd.Series([None] * len(df), index=df.index)
    for r, sk, why in zip(df.itertuples(), skip, reason):
        status = r.status + (f" ({sk})" if isinstance(sk, str) and sk else "")
        seed = getattr(r, "seed", None)
        grouped.setdefault((r.task, r.method, status, one_line(why)), set()).add(
            "?" if seed is None or seed != seed else str(int(seed)))
    rows = [[t, m, ", ".join(sorted(seeds, key=lambda x: (len(x), x))), st, why]
            for (t, m, st, why), seeds in sorted(grouped.items())]
    return tabulate(rows, headers=["task", "method", "seeds", "status", "reason"], tablefmt="github",
                    disable_numparse=True)


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
    seeds = ", ".join(str(int(s)) for s in sorted(df["seed"].unique()))
    epochs = ", ".join(f"{t}: {int(e)}" for t, e in df.groupby("task")["epochs"].first().items() if e == e)
    return f"Profile `{profile}` · device: {devices} · epochs: {epochs} · seeds: {seeds} · commit: {commits}"


def render(results_dir: Path, plots_dir: Path | None = None, link_base: Path | None = None,
           include_plumbing: bool = False, margin: float | None = None) -> str:
    """The whole markdown page; with ``plots_dir``, also the PNG figures it links to (stale figures there
    removed). Plumbing-only profiles (``smoke``) are left out (and counted) unless ``include_plumbing``, and
    then marked as such. ``margin`` replaces every task's δ."""
    from .references import QUOTED_METRICS, QUOTED_PROBES

    results_dir = Path(results_dir)
    from ..launch.tune_protocol import protocol_tune_records

    _TUNE_CACHE.clear()
    protocol_tunes = protocol_tune_records(results_dir) if results_dir.is_dir() else []
    _TUNE_CACHE.update({str(r["path"]): r for r in protocol_tunes})
    prepared = prepare(results_dir, include_plumbing)
    runs = prepared.runs
    all_probes = load_all(results_dir, "probe")
    probes = labelled(_with_nested(_published(all_probes, include_plumbing), "pool"))
    left_out = prepared.smoke_left_out + (len(all_probes) - len(probes))
    descents = probe_section.descent_frame(results_dir)
    parts = ["# surrogate_bench leaderboard", "",
             "Generated by `python -m surrogate_bench leaderboard` from the run records under "
             f"`{_shown_path(results_dir)}/`. Do not edit by hand.", ""]
    if left_out:
        parts += [f"{left_out} smoke-profile (plumbing-only) record{'s' if left_out != 1 else ''} left out "
                  "(`--include-smoke` shows them).", ""]
    if runs.empty and probes.empty:
        hidden = left_out
        none = (f"No published records: the {hidden} records here are plumbing-only (smoke; `--include-smoke` "
                "shows them)." if hidden else "No records yet.")
        if plots_dir is not None:  # no figures any more: none of the old ones stays
            from . import plots

            plots.remove_stale(Path(plots_dir), [])
        return "\n".join(parts[:4] + [none, ""])
    fams = families(prepared, margin=margin)
    seen = (set(runs["profile"]) if not runs.empty else set()) | (set(probes["profile"]) if not probes.empty else set())
    profiles = sorted(seen, key=lambda p: (PROFILE_ORDER.index(p) if p in PROFILE_ORDER else 99, p))
    written: list[Path] = []
    for profile in profiles:
        parts += [profile_title(profile), ""]
        if profile in PLUMBING_PROFILES:
            parts += [f"**Plumbing only:** `{profile}` runs take seconds on tiny subsets to test that everything "
                      "runs; their numbers do not compare losses.", ""]
        mine = [f for f in fams if f.profile == profile]
        protocols = sorted({f.protocol for f in mine}, reverse=True)
        if not runs.empty and (runs["profile"] == profile).any():
            parts += [conditions(runs, profile), ""]
            for proto in protocols:
                group = [f for f in mine if f.protocol == proto]
                frame = runs[(runs["profile"] == profile) & (runs["protocol"] == proto)]
                if len(protocols) > 1:
                    parts += [f"### Protocol version {proto}", "",
                              "Results compare only within one protocol version: these cells are never pooled "
                              "with the other version's.", ""]
                parts += metric_section(group, frame, proto)
                power = family_power_table(group)
                if power:
                    parts += [f"#### Power (`{profile}`, protocol version {proto})", "", POWER_LEGEND, "", power, ""]
            tuned = tuned_settings(list(runs.loc[runs["profile"] == profile, "task"]))
            if tuned:
                parts += [tuned, ""]
            notes = notes_table(runs, profile)
            if notes:
                parts += [NOTES_HELP, "", notes, ""]
        if not probes.empty and (probes["profile"] == profile).any():
            parts += probe_section.section(results_dir, probes, profile, descents)
        if plots_dir is not None:
            lines, figs = _figures(runs, probes, mine, profile, Path(plots_dir), link_base or Path(plots_dir).parent,
                                   descents)
            parts += lines
            written += figs
    if plots_dir is not None:
        from . import plots

        plots.remove_stale(Path(plots_dir), written)
    parts += paper_lines(fams)
    protocol_tuning = protocol_table(protocol_tunes)
    if protocol_tuning:
        parts += ["## Tuning protocol (validation split only)", "",
                  "`python -m surrogate_bench tune --protocol` records, one per (task, method): the same declared "
                  "budget for every method, the baseline included (" + "; ".join(sorted({
                      describe_protocol(r["protocol"]) for r in protocol_tunes})) + "). "
                  "Each trial is the mean final validation metric over its seeds (pruned: the epoch it was stopped "
                  "at and its mean validation metric then); the test split was never loaded. The chosen setting "
                  "is what `run --tuned` trains (the **tuned** rows above).", "", protocol_tuning, ""]
    tuning = tuning_table(records_frame(results_dir, "tune"))
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


def _figures(runs: pd.DataFrame, probes: pd.DataFrame, fams: list[Family], profile: str, plots_dir: Path,
             base: Path, descents: pd.DataFrame) -> tuple[list[str], list[Path]]:
    """Per task: the probe figures, the verdict picture and the validation curves (one colour and marker per
    method across the profile's figures); the markdown lines and the files written."""
    from . import plots

    lines: list[str] = []
    written: list[Path] = []
    prof_runs = runs[runs["profile"] == profile] if not runs.empty else runs
    style = plots.styles(list(prof_runs["method"]) if not prof_runs.empty else [])
    protocols = sorted({f.protocol for f in fams}, reverse=True)
    tasks = sorted(set(prof_runs["task"] if not prof_runs.empty else []) |
                   (set(probes.loc[probes["profile"] == profile, "task"]) if not probes.empty else set()))
    for task in tasks:
        figs = []
        if not probes.empty:
            figs += probe_section.figures(probes, descents, profile, task, plots_dir)
        for proto in protocols:
            tag = f"-p{proto}" if len(protocols) > 1 else ""
            for fam in (f for f in fams if f.task == task and f.protocol == proto):
                arm = f"-{fam.arm}" if fam.arm else ""
                figs.append(plots.verdict_plot(fam, plots_dir / f"{profile}{tag}-{task}{arm}-verdicts.png", style))
            if not prof_runs.empty:
                figs.append(plots.validation_curves(prof_runs[prof_runs["protocol"] == proto], task,
                                                    plots_dir / f"{profile}{tag}-{task}-val.png", style))
        figs = [f for f in figs if f is not None]
        written += figs
        links = [f"![{f.stem}]({f.relative_to(base).as_posix()})" for f in figs]
        if links:
            lines += [f"#### {task}", "", *links, ""]
    return lines, written


def write(results_dir: Path, out: Path, plots: bool = True, include_plumbing: bool = False,
          margin: float | None = None) -> Path:
    """Write the markdown (and, beside it in ``plots/``, its figures; stale ones removed)."""
    out = Path(out)
    plots_dir = out.parent / "plots" if plots else None
    atomic_write_bytes(out, render(results_dir, plots_dir, out.parent, include_plumbing, margin).encode())
    return out
