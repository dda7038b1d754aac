"""Sequential design: the spending plan, decided-stays-decided, and ≥ 10,000 simulated sequences per error rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from surrogate_bench.stats import verdicts
from surrogate_bench.stats.sequential import SequentialDesign, decide_at_look, next_seed_count, spent_alpha
from surrogate_bench.stats.simulate import (WORDS, draw_differences, error_rates, holm_adjust, look_pvalues,
                                            run_sequential)

ALPHA = 0.05
SEQUENCES = 10_000
MC_SLACK = 3 * math.sqrt(ALPHA * (1 - ALPHA) / SEQUENCES)  # 3 Monte Carlo SE of a rate at alpha
DELTA = 1.0  # the rates are scale-free: only sd / delta matters
SHORT = SequentialDesign(n_min=5, n_max=10, step=1)
LONG = SequentialDesign(n_min=5, n_max=30, step=2)


def test_spending_function_and_looks() -> None:
    assert spent_alpha(1.0) == pytest.approx(ALPHA) and spent_alpha(0.0) == 0.0
    assert spent_alpha(0.5) == pytest.approx(2 - 2 * stats.norm.cdf(stats.norm.ppf(0.975) / math.sqrt(0.5)))
    assert SHORT.looks() == (5, 6, 7, 8, 9, 10)
    assert LONG.looks() == (5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 30)  # n_max is always a look
    for design in (SHORT, LONG, SequentialDesign(n_max=5)):
        levels = [design.level_at(n) for n in design.looks()]
        assert sum(levels) == pytest.approx(ALPHA) and all(level > 0 for level in levels)
    assert SequentialDesign(n_max=5).level_at(5) == pytest.approx(ALPHA)  # one look: the fixed design
    assert SHORT.level_at(5) == pytest.approx(spent_alpha(0.5))
    with pytest.raises(ValueError):
        SHORT.level_at(11)
    with pytest.raises(ValueError):
        SequentialDesign(n_min=5, n_max=4)
    with pytest.raises(ValueError):
        SequentialDesign(n_min=1, n_max=4)


def test_next_seed_count() -> None:
    assert next_seed_count(LONG, 0, False) == 5
    assert next_seed_count(LONG, 5, False) == 7
    assert next_seed_count(LONG, 6, False) == 7  # off-plan counts go to the next look
    assert next_seed_count(LONG, 29, False) == 30
    assert next_seed_count(LONG, 30, False) is None
    assert next_seed_count(LONG, 7, True) is None


def test_decide_at_look_uses_the_looks_level_and_keeps_decisions() -> None:
    rng = np.random.default_rng(0)
    strong = 0.3 + rng.normal(0, 0.1, 10)
    null = rng.normal(0, 1.0, 10)
    first, done = decide_at_look(SHORT, 5, {"strong": strong[:5], "null": null[:5]}, DELTA)
    plain = verdicts.decide_family({"strong": strong[:5], "null": null[:5]}, DELTA, alpha_level=SHORT.level_at(5))
    assert first == plain and first["strong"].alpha_level == pytest.approx(SHORT.level_at(5))
    assert first["strong"].word == "better" and first["strong"].decided_at == 5
    assert first["null"].word == "inconclusive" and not done
    # at the next look the decided comparison keeps its verdict even if the new data say otherwise
    second, done = decide_at_look(SHORT, 6, {"strong": np.zeros(6), "null": null[:6]}, DELTA, previous=first)
    assert second["strong"] is first["strong"]
    everything, done = decide_at_look(SHORT, 6, {"strong": strong[:6]}, DELTA, previous=first)
    assert done
    with pytest.raises(ValueError):
        decide_at_look(SHORT, 5, {"strong": strong[:6]}, DELTA)
    with pytest.raises(ValueError):
        decide_at_look(SHORT, 4, {"strong": strong[:4]}, DELTA)


def test_vectorised_holm_is_multipletests() -> None:
    # few rows: statsmodels' holm calls gc.collect(), ~0.1-0.2 s a call in a process holding torch
    p = np.random.default_rng(1).uniform(0, 0.2, size=(8, 4))
    p[::3, 1] = p[::3, 2]  # ties
    p[1] = [0.0, 1.0, 0.01, 0.5]
    assert np.allclose(holm_adjust(p), [multipletests(row, method="holm")[1] for row in p])


def test_vectorised_pvalues_match_the_library_path() -> None:
    d = np.random.default_rng(2).normal(0.3, 1.0, size=(50, 3, 8))
    mean, p_sup, p_eq = look_pvalues(d, DELTA)
    for s in range(0, 50, 7):
        for c in range(3):
            t = verdicts.paired_tests(d[s, c], DELTA)
            assert (mean[s, c], p_sup[s, c], p_eq[s, c]) == pytest.approx((t.diff, t.p_superiority, t.p_equivalence))


def test_simulation_runs_the_same_procedure_as_decide_at_look(monkeypatch) -> None:
    # statsmodels' holm calls gc.collect() (~0.1 s in a process holding torch); the vectorised Holm is
    # checked equal to it above, so the cross-check of everything else uses it to stay fast
    monkeypatch.setattr(verdicts, "holm", lambda p: holm_adjust(np.nan_to_num(np.asarray(p, float), nan=1.0)))
    rng = np.random.default_rng(3)
    design = SequentialDesign(n_min=5, n_max=9, step=2)
    diffs = draw_differences(rng, 40, [0.0, 0.3, -0.6], 0.6, design.n_max)
    run = run_sequential(design, diffs, DELTA, higher_is_better=False)
    for s in range(len(diffs)):
        state = None
        for n in design.looks():
            state, done = decide_at_look(design, n, {f"m{c}": diffs[s, c, :n] for c in range(3)}, DELTA,
                                         higher_is_better=False, previous=state)
            if done:
                break
        assert [WORDS.index(state[f"m{c}"].word) for c in range(3)] == list(run.words[s])
        assert [state[f"m{c}"].decided_at or design.n_max for c in range(3)] == list(run.decided_at[s])


def _rates(design: SequentialDesign, true_diffs: list[float], sd: float, seed: int) -> dict[str, float]:
    """Rates over SEQUENCES simulated sequences (printed: they go into docs/verdicts.md)."""
    rng = np.random.default_rng(seed)
    run = run_sequential(design, draw_differences(rng, SEQUENCES, true_diffs, sd, design.n_max), DELTA)
    rates = error_rates(run, true_diffs, DELTA)
    print(f"n_max={design.n_max} step={design.step} true={true_diffs} sd={sd}: "
          + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()))
    return rates


@pytest.mark.parametrize("design", [SHORT, LONG, SequentialDesign(n_min=5, n_max=10, step=2)],
                         ids=["n10-step1", "n30-step2", "n10-step2"])
@pytest.mark.parametrize("sd", [1.0, 10.0], ids=["sd=delta", "sd=10delta"])
def test_no_false_better_or_worse_under_equal_means(design: SequentialDesign, sd: float) -> None:
    # sd = 10·delta: equivalence is out of reach, so no comparison is frozen early as "equivalent" and
    # every look is a chance of a false better/worse — the hardest case for the error rate
    rates = _rates(design, [0.0, 0.0, 0.0], sd, seed=10)
    assert rates["any_false_better_or_worse"] <= ALPHA + MC_SLACK
    assert rates["any_false_equivalent"] == 0.0


@pytest.mark.parametrize("design", [SHORT, LONG], ids=["n10-step1", "n30-step2"])
def test_equivalence_is_reached_inside_half_the_margin(design: SequentialDesign) -> None:
    # true differences delta/4 (inside ±delta/2), sd = delta/3: equivalence within reach by n_max
    rates = _rates(design, [0.25, 0.25, -0.25], 1 / 3, seed=11)
    assert rates["equivalent_per_comparison"] > 0.5 and rates["all_equivalent"] > 0.5
    assert rates["any_false_better_or_worse"] <= ALPHA + MC_SLACK


@pytest.mark.parametrize("design", [SHORT, LONG], ids=["n10-step1", "n30-step2"])
@pytest.mark.parametrize("sd", [0.5, 2.0], ids=["sd=delta/2", "sd=2delta"])
def test_no_false_equivalence_on_the_margin(design: SequentialDesign, sd: float) -> None:
    rates = _rates(design, [1.0, -1.0, 1.0], sd, seed=12)
    assert rates["any_false_equivalent"] <= ALPHA + MC_SLACK
    assert rates["any_false_better_or_worse"] <= ALPHA + MC_SLACK  # a "better" at +delta is no error
