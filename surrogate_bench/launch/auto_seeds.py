"""Seeds until decided (``run --seeds auto``): run seeds in rounds, look at the verdicts, stop when every
comparison of every family is decided or the seed cap is reached.

The looks and the level spent at each are fixed in advance by :class:`~surrogate_bench.stats.sequential.
SequentialDesign` (alpha spending), so stopping on the data keeps the error rates (docs/verdicts.md). A
*family* is one (profile, task) table: every method row compared with the task's baseline (added to the
grid when missing). After each look a decision record is written to
``<results>/decisions/<profile>/<task>.json``; the leaderboard reconstructs the same looks from it.
Everything is computed from the run records on disk, so an interrupted ``--seeds auto`` resumes: the
rerun reuses every finished run and reaches the same looks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..plugins.contracts import Task
from ..running.options import RunOptions
from ..running.spec import RunSpec, resolve
from ..stats.sequential import SequentialDesign, decide_at_look
from ..stats.verdicts import ALPHA, Verdict
from ..store.records import atomic_write_bytes, read_record
from .executors import LaunchConfig, execute


def baseline_for(task: Task) -> str:
    """The method a task's other methods are compared with: its ``baseline_method``, else CE for class
    logits and MSE to Gaussian heatmaps for heatmap outputs."""
    return getattr(task, "baseline_method", None) or ("ce" if task.output_kind == "logits" else "mse-heatmap")


def row_label(spec: RunSpec) -> str:
    """A family row: the method with the parameters and profile settings this spec sets explicitly."""
    label = spec.method
    if spec.method_params:
        label += "[" + ",".join(f"{k}={v}" for k, v in sorted(spec.method_params)) + "]"
    if spec.profile_params:
        label += "{" + ",".join(f"{k}={v}" for k, v in sorted(spec.profile_params)) + "}"
    return label


@dataclass
class Family:
    """One (profile, task) table: its rows (label -> a spec template) and the baseline row's label. ``arm``
    "tuned" is the table of the methods at their tuned settings (``run --tuned``), compared with the tuned
    baseline; its rows are labelled by method name (one tuned setting per method) and its decision record
    is ``<task>@tuned.json``."""

    profile: str
    task: str
    task_params: tuple
    baseline: str
    rows: dict[str, RunSpec] = field(default_factory=dict)
    previous: dict[str, Verdict] | None = None
    arm: str = ""

    @property
    def name(self) -> str:
        params = "" if not self.task_params else "[" + ",".join(f"{k}={v}" for k, v in self.task_params) + "]"
        return f"{self.profile}/{self.task}{params}" + (f"@{self.arm}" if self.arm else "")


def families(templates: Sequence[RunSpec], log: Callable[[str], None], arm: str = "",
             baseline_row: Callable[[RunSpec], RunSpec] | None = None) -> list[Family]:
    """Group seed-0 templates into families and add a missing baseline row (it is what each row is tested
    against): at its defaults, or ``baseline_row(spec at defaults)`` (``run --tuned``: the tuned baseline)."""
    out: dict[tuple, Family] = {}
    for spec in templates:
        key = (spec.profile, spec.task, spec.task_params)
        if key not in out:
            task = spec.build()[0]
            out[key] = Family(spec.profile, spec.task, spec.task_params, baseline_for(task), arm=arm)
        out[key].rows.setdefault(spec.method if arm else row_label(spec), spec)
    for fam in out.values():
        if fam.baseline not in fam.rows:
            log(f"--seeds auto: {fam.name}: adding the baseline {fam.baseline!r} (every row is compared with it)")
            any_spec = next(iter(fam.rows.values()))
            base = replace(any_spec, method=fam.baseline, method_params=(), profile_params=())
            fam.rows[fam.baseline] = baseline_row(base) if baseline_row is not None else base
    return list(out.values())


def seed_values(spec: RunSpec, seeds: Sequence[int], opts: RunOptions) -> dict[int, float]:
    """Seed -> test metric of this row's ok records among ``seeds`` (failed or missing seeds are absent)."""
    out: dict[int, float] = {}
    for seed in seeds:
        r = resolve(replace(spec, seed=seed), replace(opts, download=False))
        rec = read_record(r.path, r.key, expect=r.spec.expected_fields())
        if rec and rec["status"] == "ok" and rec.get("test_metric") is not None:
            out[seed] = float(rec["test_metric"])
    return out


def paired_differences(fam: Family, seeds: Sequence[int], opts: RunOptions) -> dict[str, list[float]]:
    """Row -> per-seed differences row − baseline over the seeds both have (in seed order)."""
    base = seed_values(fam.rows[fam.baseline], seeds, opts)
    diffs = {}
    for label, spec in fam.rows.items():
        if label == fam.baseline:
            continue
        values = seed_values(spec, seeds, opts)
        diffs[label] = [values[s] - base[s] for s in sorted(set(values) & set(base))]
    return diffs


def decision_path(results_dir: Path, fam: Family) -> Path:
    suffix = "" if not fam.task_params else "-" + "-".join(f"{k}={v}" for k, v in fam.task_params)
    arm = f"@{fam.arm}" if fam.arm else ""
    return Path(results_dir) / "decisions" / fam.profile / f"{fam.task}{suffix}{arm}.json"


def write_decision(results_dir: Path, fam: Family, design: SequentialDesign, delta: float,
                   looks: list[dict[str, Any]], stopped: str | None) -> Path:
    """The decision record the leaderboard reconstructs the looks from (atomic JSON)."""
    path = decision_path(results_dir, fam)
    rec = {"kind": "decision", "profile": fam.profile, "task": fam.task, "task_params": dict(fam.task_params),
           **({"arm": fam.arm} if fam.arm else {}),
           "baseline": fam.baseline, "delta": delta,
           "design": {"n_min": design.n_min, "n_max": design.n_max, "step": design.step, "alpha": design.alpha},
           "methods": sorted(fam.rows), "looks": looks, "stopped": stopped,
           "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_bytes(path, json.dumps(rec, indent=1, sort_keys=True).encode())
    return path


def describe(verdicts: dict[str, Verdict]) -> str:
    """``m1 better, m2 inconclusive (needs ~12)`` for a log line."""
    parts = []
    for label, v in sorted(verdicts.items()):
        extra = f" (needs {v.seeds_needed_label})" if v.word == "inconclusive" and v.seeds_needed else ""
        parts.append(f"{label} {v.word}{extra}")
    return ", ".join(parts)


def run_until_decided(specs_for_seeds: Callable[[list[int]], list[RunSpec]], opts: RunOptions, cfg: LaunchConfig,
                      *, min_seeds: int = 5, max_seeds: int = 10, step: int = 1, margin: float | None = None,
                      log: Callable[[str], None] = print, arm: str = "") -> Iterator[dict[str, Any]]:
    """Run seeds 0, 1, ... in rounds ending at the design's looks; after each look decide every family and
    stop once all are decided (or at ``max_seeds``). Yields each run's record as it finishes. ``arm``
    "tuned": the specs are tuned settings (``run --tuned``), so a missing baseline is added tuned too."""
    design = SequentialDesign(n_min=min(min_seeds, max_seeds), n_max=max_seeds, step=max(1, step), alpha=ALPHA)
    baseline_row = None
    if arm == "tuned":
        from .tune_protocol import tuned_specs

        baseline_row = lambda spec: tuned_specs([spec], opts.results_dir)[0]  # noqa: E731
    fams = families(specs_for_seeds([0]), log, arm, baseline_row)
    margins = {fam.name: margin if margin is not None else
               float(getattr(fam.rows[fam.baseline].build()[0], "equivalence_margin", 0.01)) for fam in fams}
    higher = {fam.name: fam.rows[fam.baseline].build()[0].higher_is_better for fam in fams}
    looks: dict[str, list[dict[str, Any]]] = {fam.name: [] for fam in fams}
    done = 0
    log(f"--seeds auto: looks at {', '.join(map(str, design.looks()))} seeds (alpha {design.alpha} spent "
        f"O'Brien-Fleming-style), {len(fams)} famil{'y' if len(fams) == 1 else 'ies'}")
    for n in design.looks():
        round_seeds = list(range(done, n))
        specs = [replace(spec, seed=s) for fam in fams for spec in fam.rows.values() for s in round_seeds]
        yield from execute(specs, opts, cfg)
        done = n
        undecided = 0
        for fam in fams:
            delta = margins[fam.name]
            diffs = paired_differences(fam, list(range(n)), opts)
            verdicts, decided = decide_at_look(design, n, diffs, delta, higher[fam.name], fam.previous)
            fam.previous = verdicts
            looks[fam.name].append({"n": n, "level": design.level_at(n),
                                    "verdicts": {k: v.word for k, v in verdicts.items()}})
            last = n == design.n_max
            write_decision(opts.results_dir, fam, design, delta, looks[fam.name],
                           "decided" if decided else ("max-seeds" if last else None))
            log(f"look at {n} seeds, {fam.name} (delta {delta:g}, level {design.level_at(n):.4f}): {describe(verdicts)}")
            undecided += not decided
        if not undecided:
            log(f"--seeds auto: every comparison decided at {n} seeds")
            return
    log(f"--seeds auto: stopped at the cap of {design.n_max} seeds with undecided comparisons (see the decision "
        f"records under {Path(opts.results_dir) / 'decisions'})")
