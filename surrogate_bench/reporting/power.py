"""Power per cell: what the seeds run can detect, and how many seeds deciding at δ would take.

Per compared cell (a method vs its task's baseline over the seeds both ran): n pairs, the SD of the
paired differences, the minimal detectable difference at that n (80% power, two-sided paired t-test at
the family-corrected level α / m, m = the family's size: Bonferroni, conservative with respect to Holm),
the seeds needed to detect a true difference of δ, and the seeds needed to show equivalence within ±δ
(TOST at α / m) if the true difference were 0 — all at the observed spread
(:mod:`surrogate_bench.stats.power`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ..stats.power import POWER, SEEDS_CAP, minimal_detectable_difference, seeds_for, seeds_for_equivalence
from .families import Family, common_differences, families, prepare

POWER_LEGEND = (
    f"Per compared cell: n = pairs of seeds with the baseline; SD = standard deviation of the paired differences; "
    f"MDD = the smallest true difference a two-sided paired t-test over those n seeds detects with {POWER:.0%} power "
    "at the family-corrected level α/m (m = methods compared with the baseline; Bonferroni, conservative vs Holm); "
    "seeds for δ: pairs needed to detect a true difference of δ at that spread; seeds for ±δ: pairs TOST needs to "
    f"show equivalence within ±δ if the true difference were 0 (\"> {SEEDS_CAP}\" beyond the search cap). "
    "Planning figures at the observed SD, itself uncertain at small n.")


def _seeds(value: int | float) -> str:
    return f"> {SEEDS_CAP}" if math.isinf(value) else str(int(value))


def power_rows(fam: Family) -> list[list[str]]:
    """One row per compared method of the family."""
    members = fam.members
    if not members or fam.baseline not in fam.rows:
        return []
    level = fam.alpha / max(len(members), 1)
    rows = []
    base = fam.rows[fam.baseline].cell
    for label in members:
        d = np.asarray(common_differences(fam.rows[label].cell, base), dtype=float)  # every common seed
        head = [f"{fam.title} (δ={fam.delta:g})", label, str(len(d))]
        if len(d) < 2:
            rows.append(head + ["—", "—", "—", "—"])
            continue
        sd = float(d.std(ddof=1))
        mdd = minimal_detectable_difference(sd, len(d), level)
        rows.append(head + [f"{sd:.4g}", f"{mdd:.4g}", _seeds(seeds_for(fam.delta, sd, level)),
                            _seeds(seeds_for_equivalence(0.0, sd, fam.delta, level))])
    return rows


HEADERS = ["task (δ)", "method", "n", "SD of Δ", "MDD at n (80%, α/m)", "seeds for δ", "seeds for ±δ (true Δ = 0)"]


def family_power_table(fams: list[Family]) -> str:
    """The power rows of several families (one profile and protocol) as one markdown table ('' if none)."""
    rows = [r for fam in fams for r in power_rows(fam)]
    if not rows:
        return ""
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)


def power_table(results_dir: Path, profile: str | None = None, margin: float | None = None) -> str:
    """Markdown: per profile and protocol version, every compared cell's n, SD of the paired differences,
    minimal detectable difference at n (80% power, α/m) and the seeds needed for δ and for equivalence
    within ±δ. ``margin`` replaces every task's δ."""
    prepared = prepare(Path(results_dir), include_plumbing=profile is not None)
    fams = families(prepared, profile, margin)
    if not fams:
        return f"No run records{f' of profile `{profile}`' if profile else ''} under `{results_dir}`."
    parts = [POWER_LEGEND, ""]
    for (prof, proto) in dict.fromkeys((f.profile, f.protocol) for f in fams):
        group = [f for f in fams if (f.profile, f.protocol) == (prof, proto)]
        table = family_power_table(group)
        if table:
            parts += [f"### Power (`{prof}`, protocol version {proto})", "", table, ""]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":  # python -m surrogate_bench.reporting.power RESULTS_DIR [PROFILE]
    import sys

    print(power_table(Path(sys.argv[1] if len(sys.argv) > 1 else "results"), sys.argv[2] if len(sys.argv) > 2 else None))
