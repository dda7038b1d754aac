"""The paper section: the paper profile's measured rows beside the papers' quoted ones, like with like.

For every task of the ``paper`` profile (e.g. ``mnist-ap``, ``cifar10-acc``), one table: the quoted paper
rows (references.QUOTED_METRICS) placed in the column computed the way they were (MNIST: the UniLoss
release's interpolated VOC AP, references.QUOTED_DEFINITION), then each measured method with its seeds,
its mean exact test metric with its 95% t interval, every secondary test metric its records carry (VOC AP)
with its interval, the paired difference vs the baseline and the verdict (Holm within the task's family,
equivalence within ±δ, δ the task's margin unless ``margin``), and the training time per run (mean
``train_time_s``; wall when recorded) and for the whole table (sum over its runs).
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from . import text
from .families import Family, families, prepare
from .references import EXTRA_METRIC_NAMES, QUOTED_DEFINITION, quoted_for

PAPER_PROFILE = "paper"


def _extras(fam: Family) -> list[str]:
    """The secondary metric keys any row's records carry, sorted."""
    keys = set()
    for row in fam.rows.values():
        keys |= {c.split(".", 1)[1] for c in row.records.columns if c.startswith("test_metrics_extra.")}
    return sorted(keys)


def _devices(fam: Family) -> str:
    names = set()
    for row in fam.rows.values():
        if "environment" in row.records:
            names |= {str(e.get("device_name")) for e in row.records["environment"] if isinstance(e, dict)
                      and e.get("device_name")}
    return ", ".join(sorted(names)) or "unknown device"


def paper_table(fam: Family) -> list[str]:
    """The markdown lines of one task's paper table."""
    extras = _extras(fam)
    definition = QUOTED_DEFINITION.get(fam.task)
    quoted_col = extras.index(definition[0]) if definition and definition[0] in extras else None
    base = fam.baseline or "baseline"
    headers = ["row", "seeds", f"{fam.metric_name} (exact) mean ± 95% t",
               *[f"{EXTRA_METRIC_NAMES.get(k, k)} mean ± 95% t" for k in extras],
               f"Δ vs {base} [95% CI]", f"verdict vs {base} (δ = {fam.delta:g})", "train s / run", "wall s / run"]
    rows = []
    for q in quoted_for(fam.task):
        values = ["—"] * (1 + len(extras))
        values[1 + quoted_col if quoted_col is not None else 0] = f"{q['value']} (quoted)"
        rows.append([f"quoted: `{q['loss']}` ({q['setting']}; {q['source']}; compare with {q['compare_with']})", "—",
                     *values, "", "", "", ""])
    train_total, wall_total, runs = 0.0, 0.0, 0
    for label, row in fam.rows.items():
        seeds = ", ".join(str(s) for s in sorted(row.cell.by_seed))
        train, wall = row.times("train_time_s"), row.times("wall_time_s")
        train_total, wall_total, runs = train_total + sum(train), wall_total + sum(wall), runs + row.n
        v = row.verdict
        rows.append([f"`{label}`", f"{row.n} ({seeds})", text.cell(row.cell),
                     *[text.interval(row.extra(k)) for k in extras],
                     "baseline" if v is None else text.difference(v),
                     "baseline" if v is None else text.verdict(v, fam.design is not None),
                     text.seconds(train), text.seconds(wall)])
    lines = [f"### Paper protocol: `{fam.task}` (protocol version {fam.protocol})", ""]
    if definition:
        lines += [f"Both definitions of the metric: the verdicts use the exact one; {definition[1]}.", ""]
    lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
              (f"Verdicts: {fam.method}, Holm across the {len(fam.members)} methods compared with `{base}`; δ = "
               f"{fam.delta:g} ({fam.delta_source})." if fam.members else "No method compared with a baseline here.")
              + f" The whole table: {runs} runs, {train_total:.0f} s of training"
              + (f" ({wall_total:.0f} s wall)" if wall_total else "") + f" on {_devices(fam)}.", ""]
    lines += [f"- {note}" for note in fam.notes] + ([""] if fam.notes else [])
    return lines


def paper_lines(fams: list[Family]) -> list[str]:
    """The paper section of the leaderboard for the families of the paper profile ([] when there are none)."""
    mine = [f for f in fams if f.profile == PAPER_PROFILE and f.rows]
    if not mine:
        return []
    lines = ["## Paper protocol: measured beside the papers", "",
             "The `paper` profile runs the papers' protocols; each table puts the papers' quoted numbers (not "
             "measured here) above the measured rows, in the column computed the same way.", ""]
    for fam in mine:
        lines += paper_table(fam)
    return lines


def paper_section(results_dir: Path, profile: str = PAPER_PROFILE, margin: float | None = None) -> str:
    """The paper section alone, as markdown (``margin`` replaces every task's δ)."""
    fams = [f for f in families(prepare(Path(results_dir)), profile, margin)]
    for f in fams:
        f.profile = PAPER_PROFILE if f.profile == profile else f.profile
    lines = paper_lines(fams)
    return "\n".join(lines) if lines else f"No `{profile}` run records under `{results_dir}`.\n"
