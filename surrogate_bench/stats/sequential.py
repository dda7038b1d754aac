"""Seeds until decided: a group-sequential design whose error rates survive optional stopping.

Looking at the verdicts after every batch of seeds and stopping once all are decided would inflate the
error rates if every look used the full alpha (each look is another chance of a false verdict). Instead
the design fixes its looks in advance, n_min, n_min + step, …, n_max seeds, and *spends* alpha over them
with the Lan–DeMets O'Brien–Fleming-type function alpha(t) = 2 − 2·Φ(z_{1−α/2} / √t), t = n / n_max
(alpha(0) = 0, alpha(1) = α: little is spent early, most at the end). Look j tests at its incremental
level alpha_j = alpha(t_j) − alpha(t_{j−1}), so the levels add up to α.

Why it is valid: a false verdict (a wrong better/worse, or equivalent where |true difference| >= delta)
can only be made at some look j, by the Holm procedure at level alpha_j. Holm keeps the family-wise
error at alpha_j for *any* dependence between the comparisons, whatever the data of the earlier looks
were, so by the union bound P(a false verdict at any look) <= Σ_j alpha_j = alpha(1) = α — whatever the
correlation between looks, and whatever the stopping rule. For this the Holm family at every look is the
*whole* family (decided comparisons included, their verdicts frozen): shrinking it to the undecided ones
would use a data-chosen family, whose Holm thresholds are not covered by the bound.

Why it is conservative: the union bound ignores that successive looks share their first seeds (the
statistics at looks j and j + 1 are strongly positively correlated), so the real overall error is below
α; a full group-sequential boundary (computed from the joint distribution of the looks) could test each
look at a larger nominal level for the same α. The union bound needs no such computation and holds for
t-tests, TOST and Holm alike. tests/stats/test_sequential.py and scripts/simulate_verdicts.py measure the
real rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from scipy import stats

from surrogate_bench.stats.power import MIN_SEEDS
from surrogate_bench.stats.verdicts import ALPHA, Verdict, decide_family

N_MIN = 5


def spent_alpha(t: float, alpha: float = ALPHA) -> float:
    """Lan–DeMets O'Brien–Fleming-type alpha spent by information fraction t: 2 − 2Φ(z_{1−α/2}/√t)."""
    if t <= 0:
        return 0.0
    t = min(t, 1.0)
    return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))


@dataclass(frozen=True, kw_only=True)
class SequentialDesign:
    """Looks at n_min, n_min + step, …, n_max seeds (n_max always a look), alpha spent over them.

    ``step`` is a round of seeds (e.g. the number of parallel jobs); ``alpha`` the family-wise error rate
    of the whole procedure.
    """

    n_min: int = N_MIN
    n_max: int
    step: int = 1
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        """Reject designs without a valid first look or spending."""
        if self.n_min < MIN_SEEDS or self.n_max < self.n_min or self.step < 1 or not 0 < self.alpha < 1:
            raise ValueError(f"need 2 <= n_min <= n_max, step >= 1, 0 < alpha < 1; got {self}")

    def looks(self) -> tuple[int, ...]:
        """The planned seed counts at which verdicts are made."""
        counts = list(range(self.n_min, self.n_max + 1, self.step))
        if counts[-1] != self.n_max:
            counts.append(self.n_max)
        return tuple(counts)

    def level_at(self, n: int) -> float:
        """Incremental level alpha(t_j) − alpha(t_{j−1}) of the look at n seeds (ValueError off the plan)."""
        looks = self.looks()
        if n not in looks:
            raise ValueError(f"{n} seeds is not a planned look of {looks}")
        j = looks.index(n)
        before = spent_alpha(looks[j - 1] / self.n_max, self.alpha) if j else 0.0
        return spent_alpha(n / self.n_max, self.alpha) - before


def decide_at_look(design: SequentialDesign, n: int, diffs: Mapping[str, Sequence[float]], delta: float,
                   higher_is_better: bool = True,
                   previous: Mapping[str, Verdict] | None = None) -> tuple[dict[str, Verdict], bool]:
    """Verdicts at the look at n seeds (whole family in Holm), earlier decisions kept; and whether all are decided.

    ``diffs`` holds every comparison's differences over the seeds so far (at most n each: a comparison
    with a failed seed is tested on what it has). ``previous`` is the last look's result; a comparison
    decided there keeps that verdict (and its ``decided_at``) whatever this look says.
    """
    too_long = [name for name, d in diffs.items() if len(d) > n]
    if too_long:
        raise ValueError(f"comparisons {too_long} have more than the look's {n} seeds")
    now = decide_family(diffs, delta, higher_is_better, alpha=design.alpha, alpha_level=design.level_at(n))
    kept = {name: previous[name] if previous and name in previous and previous[name].decided else verdict
            for name, verdict in now.items()}
    return kept, all(v.decided for v in kept.values())


def next_seed_count(design: SequentialDesign, n_done: int, all_decided: bool) -> int | None:
    """Seed count to run up to next: the next planned look after n_done, or None to stop."""
    if all_decided:
        return None
    return next((n for n in design.looks() if n > n_done), None)
