"""How numbers and verdicts read in a table cell (shared by the metric table, the power and paper sections)."""

from __future__ import annotations

import math

from ..stats.seeds import Interval
from ..stats.verdicts import Verdict
from .cells import Cell


def interval(iv: Interval, digits: int = 4, test_ci: tuple[float, float] | None = None) -> str:
    """``mean ± h (n=k)`` (h: half-width of the 95% t interval over seeds); a single run shows its test-set
    bootstrap interval when it recorded one; '—' without values."""
    if iv.n == 0 or math.isnan(iv.mean):
        return "—"
    if iv.n > 1:
        return f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f} (n={iv.n})"
    if test_ci is not None:
        return f"{iv.mean:.{digits}f} (n=1; test-set 95% [{test_ci[0]:.{digits}f}, {test_ci[1]:.{digits}f}])"
    return f"{iv.mean:.{digits}f} (n=1)"


def cell(c: Cell, digits: int = 4) -> str:
    return interval(c.interval, digits, c.test_ci)


def difference(v: Verdict, digits: int = 4) -> str:
    """``+d [lo, hi] (n=k)``: the mean paired difference with its 95% t interval over the k common seeds."""
    if v.n == 0 or math.isnan(v.diff):
        return "no common seeds"
    if v.n < 2 or math.isnan(v.ci_low):
        return f"{v.diff:+.{digits}f} (n={v.n})"
    return f"{v.diff:+.{digits}f} [{v.ci_low:+.{digits}f}, {v.ci_high:+.{digits}f}] (n={v.n})"


def p_value(p: float) -> str:
    """``=0.012`` / ``<0.001`` (to follow a "p")."""
    return "=—" if math.isnan(p) else "<0.001" if p < 0.001 else f"={p:.3f}"


def verdict(v: Verdict, sequential: bool = False) -> str:
    """The verdict word (**bold** only for a corrected better) with its Holm-adjusted p; an inconclusive one
    with the seeds a fixed design would need at the observed spread."""
    at = f" at n={v.decided_at}" if sequential and v.decided_at is not None else ""
    if v.word in ("better", "worse"):
        word = "**better**" if v.word == "better" else "worse"
        return f"{word} (Holm p{p_value(v.p_superiority_adjusted)}{at})"
    if v.word == "equivalent":
        return f"equivalent (TOST Holm p{p_value(v.p_equivalence_adjusted)}{at})"
    if v.n < 2:
        return f"inconclusive ({v.n} common seed{'s' if v.n != 1 else ''}: no test)"
    needed = v.seeds_needed_label
    return f"inconclusive (needs ~{needed} seeds)" if needed and not needed.startswith(">") else \
        f"inconclusive (needs {needed} seeds)" if needed else "inconclusive"


def seconds(values: list[float]) -> str:
    """Mean seconds per run, '—' when none was recorded."""
    return f"{sum(values) / len(values):.1f}" if values else "—"
