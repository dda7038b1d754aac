"""Verdict families: per (profile, protocol version, task), every method compared with the task's baseline.

A *family* is every method row of one task in one profile's table (one protocol version: records of
different ``protocol_version`` are never pooled), compared with the task's baseline over the seeds both
ran. Its verdicts come from :func:`surrogate_bench.stats.verdicts.decide_family` (Holm across the family,
TOST within ±δ) — a fixed-n test at α — or, when ``<results>/decisions/<profile>/<task>.json`` exists
(written by ``run --seeds auto``), from the sequential design's looks reconstructed from the records
(:func:`surrogate_bench.stats.sequential.decide_at_look` at each planned look reached, the first n
common seeds in seed order, earlier decisions kept).

Only ok records form cells; skipped and failed ones go to the notes (with their reason), so an old
skip never splits or hides a cell.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..store.records import read_regular
from .. import results
from ..plugins.catalog import PLUMBING_PROFILES
from ..stats.seeds import Interval, t_interval
from ..stats.sequential import SequentialDesign, decide_at_look
from ..stats.verdicts import ALPHA, Verdict, decide_family
from .cells import Cell, dedupe_runs
from .fingerprints import split_by_fingerprint
from .labels import labelled
from .tuned_rows import TUNED_ARM, mark_tuned

FAMILY_KEYS = ("profile", "protocol", "task", "method")
"""Columns that make a cell: a protocol version is part of it, so versions are never pooled."""

DEFAULT_MARGIN = 0.01
BASELINES = {"logits": "ce", "heatmaps": "mse-heatmap"}
"""Each task's baseline by output kind (a task class may name its own with ``baseline_method``)."""


def _task_class(task: str) -> Any:
    from ..plugins.errors import SuiteError
    from ..plugins.registry import registry

    try:
        return registry().get_class("task", task)
    except SuiteError:
        return None


def baseline_of(task: str) -> str | None:
    """The method every other method on ``task`` is tested against (None for an unknown task)."""
    cls = _task_class(task)
    if cls is None:
        return None
    return getattr(cls, "baseline_method", None) or BASELINES.get(getattr(cls, "output_kind", ""))


def margin_of(task: str) -> float:
    """The task's declared equivalence margin δ (``Task.equivalence_margin``), 0.01 for an unknown task."""
    cls = _task_class(task)
    value = getattr(cls, "equivalence_margin", None) if cls is not None else None
    try:
        return float(value) if value is not None and float(value) > 0 else DEFAULT_MARGIN
    except (TypeError, ValueError):
        return DEFAULT_MARGIN


def profile_suffix(params: object) -> str:
    """``{lr=0.01}`` for a run with profile settings overridden, '' otherwise."""
    if not isinstance(params, dict) or not params:
        return ""
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "}"


@dataclass
class Prepared:
    """The run records a report shows (one row each, labelled and deduplicated) and what was left out."""

    runs: pd.DataFrame
    results_dir: Path
    smoke_left_out: int = 0


def _with_nested(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``frame`` with its flattened ``prefix.*`` columns also as one dict column ``prefix``."""
    if frame.empty:
        return frame
    frame = frame.copy()
    flat = results.nested(frame, prefix)
    if prefix in frame:  # an empty dict or None stays a column of its own; keep what the flat ones lack
        frame[prefix] = [d or (v if isinstance(v, dict) and v else None) for d, v in zip(flat, frame[prefix])]
    else:
        frame[prefix] = [d or None for d in flat]
    return frame


def load_all(results_dir: Path, kind: str = "run") -> pd.DataFrame:
    """Every valid ``kind`` record under ``results_dir``, skip records included (they go to the notes); an
    empty frame for a folder that does not exist."""
    if not Path(results_dir).is_dir():
        return pd.DataFrame(columns=["kind", "key", "status", "task", "method", "profile", "seed", "test_metric"])
    try:
        return results.load(Path(results_dir), kind, include_skips=True)
    except TypeError:  # a results.load without the keyword keeps every record
        return results.load(Path(results_dir), kind)


def prepare(results_dir: Path, include_plumbing: bool = False, runs: pd.DataFrame | None = None) -> Prepared:
    """Load the run records: plumbing profiles left out (counted) unless asked for, nested groups as dict
    columns, method labels (non-default parameters ``[..]``, profile overrides ``{..}``), a ``protocol``
    column (records without ``protocol_version`` are version 1), fingerprint splits, one record per run key."""
    results_dir = Path(results_dir)
    frame = load_all(results_dir, "run") if runs is None else runs
    smoke = 0
    if not include_plumbing and not frame.empty:
        plumbing = frame["profile"].isin(PLUMBING_PROFILES)
        smoke = int(plumbing.sum())
        frame = frame[~plumbing].reset_index(drop=True)
    if frame.empty:
        return Prepared(frame, results_dir, smoke)
    for prefix in ("provenance", "artifact", "environment", "profile_params", "test_metrics_extra"):
        frame = _with_nested(frame, prefix)
    frame["method_name"] = frame["method"]
    frame = labelled(frame)
    frame["method"] = [m + profile_suffix(p) for m, p in zip(frame["method"], frame["profile_params"])]
    proto = frame["protocol_version"] if "protocol_version" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame["protocol"] = [int(v) if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else 1
                         for v in proto]
    frame = dedupe_runs(split_by_fingerprint(frame), FAMILY_KEYS)
    frame = mark_tuned(frame.reset_index(drop=True), results_dir)
    return Prepared(frame, results_dir, smoke)


def ok_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The records that form cells: status ok with a test metric."""
    if frame.empty:
        return frame
    return frame[frame["status"] == "ok"].dropna(subset=["test_metric"])


@dataclass
class Row:
    """One method row of a family: its cell over seeds and, except for the baseline, its verdict."""

    label: str
    cell: Cell
    verdict: Verdict | None
    records: pd.DataFrame
    dirty: list[tuple[int, str]] = field(default_factory=list)
    loss_nets: str | None = None
    tune_record: str | None = None  # a tuned row: the path of the tune record whose choice it ran

    @property
    def n(self) -> int:
        return self.cell.interval.n

    def extra(self, name: str) -> Interval:
        """The t interval over seeds of a secondary test metric (``test_metrics_extra.<name>``)."""
        col = f"test_metrics_extra.{name}"
        values = [float(v) for v in self.records[col]] if col in self.records else []
        return t_interval([v for v in values if not math.isnan(v)])

    def times(self, name: str) -> list[float]:
        """The recorded ``train_time_s`` / ``wall_time_s`` of its runs (absent ones left out)."""
        if name not in self.records:
            return []
        return [float(v) for v in self.records[name] if isinstance(v, (int, float)) and not math.isnan(float(v))]


@dataclass
class Family:
    """One task's table in one profile and protocol version: the baseline row, the compared rows, how the
    verdicts were reached."""

    profile: str
    protocol: int
    task: str
    metric_name: str
    higher_is_better: bool
    baseline: str | None
    delta: float
    delta_source: str
    rows: dict[str, Row]
    alpha: float = ALPHA
    design: SequentialDesign | None = None
    looks: tuple[int, ...] = ()
    stopped: str | None = None
    decision_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    arm: str = ""  # "tuned": every method at its tune choice, rows named by method, the tuned baseline

    @property
    def title(self) -> str:
        """The task, marked when this is its tuned family."""
        return self.task + (f" · {self.arm}" if self.arm else "")

    @property
    def members(self) -> list[str]:
        """The rows compared with the baseline (the family Holm corrects over)."""
        return [label for label, row in self.rows.items() if row.verdict is not None]

    @property
    def method(self) -> str:
        """How the verdicts were reached, for the header."""
        if self.design is None:
            return f"fixed-n test at α = {self.alpha:g}"
        plan = ", ".join(map(str, self.design.looks()))
        if not self.looks:
            return (f"sequential (planned looks {plan}; none reached yet: fewer than {self.design.n_min} common "
                    "seeds, so nothing is decided)")
        return (f"sequential (looks {', '.join(map(str, self.looks))} of {plan}; α = {self.design.alpha:g} spent "
                f"O'Brien–Fleming-style; stopped: {self.stopped or 'still running'})")


def _cell(records: pd.DataFrame) -> Cell:
    by_seed = {int(s): float(v) for s, v in zip(records["seed"], records["test_metric"])}
    ci = None
    if len(records) == 1 and "test_metric_ci" in records:
        raw = records.iloc[0]["test_metric_ci"]
        if isinstance(raw, (list, tuple)) and len(raw) == 2 and all(isinstance(x, (int, float)) for x in raw):
            ci = (float(raw[0]), float(raw[1]))
    return Cell(t_interval(list(by_seed.values())), by_seed, None, ci)


def _dirty(records: pd.DataFrame) -> list[tuple[int, str]]:
    """(seed, commit) of every run whose record says it came from a working tree with uncommitted changes."""
    out = []
    for seed, prov in zip(records["seed"], records.get("provenance", [None] * len(records))):
        if isinstance(prov, dict) and prov.get("git_dirty") is True:
            out.append((int(seed), str(prov.get("git_commit") or "unknown")[:10]))
    return sorted(out)


def loss_nets(records: pd.DataFrame) -> str | None:
    """Whether the seeds of a learned-loss cell (ReLoss) learned their own loss nets or shared one; None for
    methods without a learned artifact."""
    if "artifact" not in records:
        return None
    ids, released = [], False
    for art, params in zip(records["artifact"], results.nested(records, "method_params")):
        if not isinstance(art, dict) or not ("sha256" in art or "loss_seed" in art or "path" in art):
            continue
        released |= bool(art.get("released"))
        seed = art.get("loss_seed", params.get("loss_seed"))
        ids.append(str(art.get("sha256") or art.get("path") or seed))
    if not ids:
        return None
    if released:
        return "released loss-net weights (the same for every seed)"
    distinct, n = len(set(ids)), len(ids)
    if n == 1:
        return "one learned loss net"
    if distinct == n:
        return f"each seed learned its own loss net ({n} nets): the interval includes the variance of learning the loss"
    if distinct == 1:
        return (f"all {n} seeds shared one loss net (sha256 {ids[0][:12]}): the interval leaves out the variance of "
                "learning the loss")
    return f"{distinct} loss nets for {n} seeds (some shared): the interval includes only part of that variance"


def read_decision(results_dir: Path, profile: str, task: str) -> tuple[dict | None, Path]:
    """The ``--seeds auto`` decision record of (profile, task), or None when there is none (or it is unreadable)."""
    path = Path(results_dir) / "decisions" / profile / f"{task}.json"
    try:
        rec = json.loads(read_regular(path))  # a FIFO named like a record never hangs the report
        design = rec["design"]
        SequentialDesign(n_min=int(design["n_min"]), n_max=int(design["n_max"]), step=int(design["step"]),
                         alpha=float(design["alpha"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None, path
    return (rec if isinstance(rec, dict) and rec.get("kind") == "decision" else None), path


def _choose_baseline(task: str, labels: dict[str, Row]) -> tuple[str | None, str | None]:
    """The baseline row's label: the task's baseline method, or (its records split by fingerprint) the
    variant with the most seeds; and a note when it had to choose."""
    name = baseline_of(task)
    if name is None:
        return None, None
    if name in labels:
        return name, None
    def of_baseline(lbl: str) -> bool:  # a code/data version or a parameter variant of the baseline method
        rec = labels[lbl].records
        return lbl.startswith(name + "@") or ("method_name" in rec and (rec["method_name"] == name).all())

    variants = sorted((lbl for lbl in labels if of_baseline(lbl)), key=lambda lbl: (-labels[lbl].n, lbl))
    if not variants:
        return None, None
    return variants[0], (f"no `{name}` row with its current defaults; the baseline is `{variants[0]}` (of "
                         f"{len(variants)} `{name}` variant{'s' if len(variants) > 1 else ''}, the one with the most seeds)")


def common_differences(row: Cell, base: Cell) -> list[float]:
    """Per-seed differences row − baseline over the seeds both ran, in seed order."""
    seeds = sorted(set(row.by_seed) & set(base.by_seed))
    return [row.by_seed[s] - base.by_seed[s] for s in seeds]


def row_name(row_label: str, method_name: str, arm: str) -> str:
    """A row's name in its family: the method's label, or in the tuned family its plain name (one tuned
    setting per method; a code/data split's ``@`` tag kept)."""
    if arm != TUNED_ARM:
        return row_label
    return method_name + (row_label[row_label.index("@"):] if "@" in row_label else "")


def build_family(profile: str, protocol: int, task: str, frame: pd.DataFrame, results_dir: Path,
                 margin: float | None = None, sequential: bool = True, arm: str = "") -> Family:
    """The family of one task's ok records (``frame``: one profile, protocol version and arm)."""
    ok = ok_runs(frame)
    meta = ok.iloc[0] if len(ok) else frame.iloc[0]
    higher = bool(meta.get("higher_is_better", True)) if meta.get("higher_is_better") is not None else True
    rows: dict[str, Row] = {}
    for label, rdf in ok.groupby("method", sort=True):
        rdf = rdf.sort_values("seed")
        name = row_name(str(label), str(rdf["method_name"].iloc[0]) if "method_name" in rdf else str(label), arm)
        cite = rdf["tune_record"].dropna() if "tune_record" in rdf else []
        rows[name] = Row(name, _cell(rdf), None, rdf, _dirty(rdf), loss_nets(rdf),
                         str(cite.iloc[0]) if len(cite) else None)
    baseline, note = _choose_baseline(task, rows)
    delta, source = (float(margin), "--margin") if margin is not None else (margin_of(task), "task margin")
    fam = Family(profile, protocol, task, str(meta.get("metric_name", "metric")), higher, baseline, delta, source, {},
                 notes=[note] if note else [], arm=arm)
    if baseline is None:
        fam.rows = rows
        return fam
    members = sorted(lbl for lbl in rows if lbl != baseline)  # by row name (a tuned row is its plain name)
    base = rows[baseline].cell
    diffs = {lbl: common_differences(rows[lbl].cell, base) for lbl in members}
    decision, path = read_decision(results_dir, profile, task + (f"@{arm}" if arm else "")) if sequential \
        else (None, None)
    if decision is not None:
        verdicts = _sequential(fam, decision, path, diffs, margin)
    else:
        verdicts = decide_family(diffs, delta, higher, alpha=ALPHA)
    fam.rows = {baseline: rows[baseline], **{lbl: replace(rows[lbl], verdict=verdicts[lbl]) for lbl in members}}
    return fam


def _sequential(fam: Family, decision: dict, path: Path, diffs: dict[str, list[float]],
                margin: float | None) -> dict[str, Verdict]:
    """Reconstruct the design's looks from the records: at each planned look n reached, every comparison's
    first n common seeds, Holm over the whole family at the look's spent level, decisions kept."""
    d = decision["design"]
    design = SequentialDesign(n_min=int(d["n_min"]), n_max=int(d["n_max"]), step=int(d["step"]), alpha=float(d["alpha"]))
    if margin is None and isinstance(decision.get("delta"), (int, float)) and decision["delta"] > 0:
        fam.delta, fam.delta_source = float(decision["delta"]), "the decision record's δ"
    fam.design, fam.decision_path, fam.stopped, fam.alpha = design, path, decision.get("stopped"), design.alpha
    recorded_family = set(decision.get("methods") or []) - {decision.get("baseline")}
    if recorded_family and recorded_family != set(diffs):
        fam.notes.append("the decision record's family was " + ", ".join(f"`{m}`" for m in sorted(recorded_family))
                         + "; the verdicts here are over the rows shown")
    available = max((len(v) for v in diffs.values()), default=0)
    looks = tuple(n for n in design.looks() if n <= available)
    fam.looks = looks
    recorded = {int(look["n"]): look.get("verdicts") or {} for look in decision.get("looks") or []
                if isinstance(look, dict) and isinstance(look.get("n"), int)}
    previous: dict[str, Verdict] | None = None
    for n in looks:
        previous, _ = decide_at_look(design, n, {m: v[:n] for m, v in diffs.items()}, fam.delta,
                                     fam.higher_is_better, previous)
        differ = sorted(m for m, word in recorded.get(n, {}).items() if m in previous and previous[m].word != word)
        if differ:
            fam.notes.append(f"at the look at {n} seeds the records give " + ", ".join(
                f"`{m}` {previous[m].word} (the decision record says {recorded[n][m]})" for m in differ))
    if previous is None:  # no look reached: nothing can be decided yet
        previous = decide_family(diffs, fam.delta, fam.higher_is_better, alpha=design.alpha, alpha_level=0.0)
    return previous


def families(prepared: Prepared, profile: str | None = None, margin: float | None = None) -> list[Family]:
    """Every family of the prepared runs (optionally one profile), ordered by profile, protocol (newest
    first) and task; tasks with only skipped / failed records give a family without rows."""
    frame = prepared.runs
    if frame.empty:
        return []
    if profile is not None:
        frame = frame[frame["profile"] == profile]
    out = []
    if "arm" not in frame:
        frame = frame.assign(arm="")
    for (prof, proto, task, arm), gdf in frame.groupby(["profile", "protocol", "task", "arm"], sort=True):
        newest = proto == frame.loc[(frame["profile"] == prof) & (frame["task"] == task), "protocol"].max()
        out.append(build_family(str(prof), int(proto), str(task), gdf, prepared.results_dir, margin,
                                sequential=bool(newest), arm=str(arm)))
    _note_tuned_baselines(out)
    return sorted(out, key=lambda f: (f.profile, -f.protocol, f.task, f.arm))


def _note_tuned_baselines(fams: list[Family]) -> None:
    """Note a tuned family whose tuned baseline tests worse than the same baseline at its defaults (by more than
    the family's margin δ): the choice was made on validation, and "better" then means better than the weaker."""
    by_key = {(f.profile, f.protocol, f.task, f.arm): f for f in fams}
    for fam in fams:
        default = by_key.get((fam.profile, fam.protocol, fam.task, ""))
        if fam.arm != TUNED_ARM or default is None or fam.baseline is None or fam.baseline not in default.rows:
            continue
        tuned_mean = fam.rows[fam.baseline].cell.interval.mean
        default_mean = default.rows[fam.baseline].cell.interval.mean
        shortfall = default_mean - tuned_mean if fam.higher_is_better else tuned_mean - default_mean
        if shortfall > fam.delta:  # by more than the family's margin: not a tie
            fam.notes.append(f"the tuned baseline `{fam.baseline}` tests worse than at its defaults ({tuned_mean:.4f} vs "
                             f"{default_mean:.4f}; chosen on validation): a **better** here is against the weaker "
                             f"of the two; compare the defaults' family too")
