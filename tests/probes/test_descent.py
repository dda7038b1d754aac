"""The descent probe on a toy problem: cross-entropy descends, its sign flip ascends, a constant loss does not
move; the output-layer finite-difference cosine agrees in sign; records and the leaderboard carry it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from surrogate_bench.plugins.contracts import Profile, Split, Task, TaskData
from surrogate_bench.probes import descent
from surrogate_bench.probes.descent import choose_length, descent_probe, fd_cosine, held_out_halves, summarise
from surrogate_bench.probes.pool import ProbePool
from surrogate_bench.taskkit.metrics import accuracy


CENTRES = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])


class ToyBlobs(Task):
    """Three Gaussian blobs in 2-D, a linear classifier, accuracy."""

    name = "toy-blobs"
    metric_name = "accuracy"
    output_kind = "logits"
    num_classes = 3
    profiles = {"toy": Profile(epochs=1, batch_size=64, lr=0.5)}

    def build_model(self) -> nn.Module:
        return nn.Linear(2, 3)

    def score(self, predictions: torch.Tensor, targets: torch.Tensor) -> float:
        return accuracy(predictions, targets)

    def batch_metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(-1) == targets).double().mean(-1)


def _blobs(n: int, gen: torch.Generator) -> Split:
    y = torch.randint(0, 3, (n,), generator=gen)
    return Split(CENTRES[y] + 0.6 * torch.randn(n, 2, generator=gen), y)


@pytest.fixture(scope="module")
def toy() -> tuple[ToyBlobs, TaskData, ProbePool]:
    gen = torch.Generator().manual_seed(0)
    data = TaskData(_blobs(512, gen), _blobs(256, gen), _blobs(64, gen))
    weights = []
    for s in range(6):  # part-way between a random and the ideal classifier: room to improve and to worsen
        w = 0.3 * CENTRES + torch.randn(3, 2, generator=gen)
        weights.append({"weight": w, "bias": torch.zeros(3)})
    eval_index = torch.randperm(256, generator=gen)[:4 * 64].view(4, 64)
    pool = ProbePool(torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1), "toy",
                     state=torch.zeros(1, dtype=torch.long), weights=weights, eval_index=eval_index,
                     state_step=[1, 2, 3, 4, 5, 6], state_metric=[0.0] * 6)  # 6 states: enough for an interval
    return ToyBlobs(), data, pool


def ce(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(o, t)


def flipped(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(o, t)


def constant(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return o.sum() * 0 + 1.0


def _run(toy, loss) -> list[dict]:
    task, data, pool = toy
    return descent_probe(task, data, pool, loss, torch.device("cpu"), batch_size=64)["states"]


@pytest.fixture(autouse=True)
def _toy_steps(monkeypatch) -> None:
    """Steps long enough to move a 2-D linear classifier's accuracy (the real tasks use 0.1-3% of |theta|)."""
    monkeypatch.setattr(descent, "STEP_SIZES", (0.1, 0.3))


def test_descent_separates_a_descending_loss_from_a_flipped_and_a_constant_one(toy) -> None:
    good, bad, flat = _run(toy, ce), _run(toy, flipped), _run(toy, constant)
    s_good, s_bad, s_flat = summarise(good, good), summarise(bad, good), summarise(flat, good)
    assert s_good["improvement_ci_low"] > 0.05  # every state gains accuracy
    assert s_bad["improvement_ci_high"] < 0
    assert s_flat["improvement"] == 0 and all(r["stuck"] for r in flat) and not any(r["stuck"] for r in good)
    assert s_good["delta_improvement"] == 0 and s_bad["delta_improvement_ci_high"] < 0
    # matched steps: the lengths depend on the state (its parameter norm), never on the loss
    assert [r["step_norms"] for r in good] == [r["step_norms"] for r in bad] == [r["step_norms"] for r in flat]
    assert all(n > 0 for r in good for n in r["step_norms"])
    assert [b["size"] for b in s_good["by_step_size"]] == [0.1, 0.3]
    assert s_good["chosen_size"] == 0.3 and s_good["improvement"] == s_good["by_step_size"][1]["improvement"]
    assert s_bad["chosen_size"] == 0.3  # the length comes from the baseline's rows, whatever the method
    assert all(b["improvement"] > 0 > c["improvement"] for b, c in zip(s_good["by_step_size"], s_bad["by_step_size"]))
    # the same held-out batches and state metric before the steps, whatever the loss
    assert [r["before"] for r in good] == [r["before"] for r in bad]
    assert s_good["fd_cosine"] > 0 and s_bad["fd_cosine"] < 0 and math.isnan(s_flat["fd_cosine"])


def test_adaptive_profiles_step_along_the_gradient_sign(toy) -> None:
    """Adam / RMSprop profiles: the direction is the first optimiser step's, -sign(grad); it still separates a
    descending loss from its sign flip, and the step lengths stay the loss-independent ones."""
    task, data, pool = toy
    assert [float(v) for v in descent.update_direction([torch.tensor([0.5, -2.0, 0.0])], "adam")[0]] == [1.0, -1.0, 0.0]
    assert descent.update_direction([torch.tensor([0.5])], "sgd")[0].item() == 0.5
    good = descent_probe(task, data, pool, ce, torch.device("cpu"), batch_size=64, optimizer="adam")["states"]
    bad = descent_probe(task, data, pool, flipped, torch.device("cpu"), batch_size=64, optimizer="rmsprop")["states"]
    assert summarise(good, good)["improvement"] > 0 > summarise(bad, good)["improvement"]
    assert [r["step_norms"] for r in good] == [r["step_norms"] for r in bad]


def test_fd_cosine_is_antisymmetric_and_needs_an_output_layer(toy) -> None:
    task, data, pool = toy
    model = task.build_model()
    model.load_state_dict(pool.weights[0])
    x, y = data.val.x[pool.eval_index], data.val.y[pool.eval_index]
    cos = fd_cosine(task, model, {"ce": ce, "flipped": flipped}, x, y, seed=0)
    assert 0 < cos["ce"] <= 1 and cos["flipped"] == pytest.approx(-cos["ce"])
    squashed = nn.Sequential(model, nn.Tanh())  # the last parameterised module is not the output
    assert all(math.isnan(v) for v in fd_cosine(task, squashed, {"ce": ce}, x, y, seed=0).values())


@pytest.mark.slow
def test_descent_record_and_leaderboard(run_options, monkeypatch) -> None:
    """End to end on the smoke pool (small): one record per method, the baseline measured once per process,
    the leaderboard's descent table and bars."""
    from surrogate_bench.reporting.leaderboard import write

    monkeypatch.setattr(descent, "FD_DIRECTIONS", 64)
    calls = []
    real = descent.descent_probe
    monkeypatch.setattr(descent, "descent_probe", lambda *a, **k: calls.append(1) or real(*a, **k))
    ce_rec = descent.run_descent("mnist-ap", "ce", "smoke", run_options)
    ls_rec = descent.run_descent("mnist-ap", "ce", "smoke", run_options, method_params={"label_smoothing": 0.3})
    assert ce_rec["status"] == ls_rec["status"] == "ok" and len(calls) == 2  # baseline reused for the second
    assert ce_rec["pool_sha256"] == ls_rec["pool_sha256"] and ce_rec["delta_improvement"] == 0
    assert ls_rec["n_states"] == len(ls_rec["states"]) == ls_rec["pool"]["states"]
    assert np.isfinite(ls_rec["improvement"]) and ls_rec["improvement_ci_low"] <= ls_rec["improvement"]
    md = write(run_options.results_dir, run_options.results_dir / "LEADERBOARD.md", include_plumbing=True).read_text()
    assert "#### Descent probe (`smoke`)" not in md  # no Spearman probe records yet: no probe section
    from surrogate_bench.probes.probe import run_probe

    run_probe("mnist-ap", "ce", "smoke", run_options)
    md = write(run_options.results_dir, run_options.results_dir / "LEADERBOARD.md", include_plumbing=True).read_text()
    assert "#### Descent probe (`smoke`)" in md and "plots/smoke-mnist-ap-descent.png" in md
    assert "per-state AP on the clean val split" in md


def _near_optimal(toy) -> ProbePool:
    """States close to the ideal classifier, each rotated a little off it, from three "runs": a short step along
    -grad CE rotates them back (helps), a step of 3 |theta| replaces the classifier by the gradient (hurts)."""
    task, data, pool = toy
    weights = []
    for s in range(6):
        a = 0.4 * (1 if s % 2 else -1) + 0.1 * s / 6
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        weights.append({"weight": 2.0 * CENTRES @ rot.T, "bias": torch.zeros(3)})
    return ProbePool(pool.outputs, pool.targets, pool.metric, "toy-near", state=pool.state, weights=weights,
                     eval_index=pool.eval_index, state_step=list(range(6)), state_metric=[0.0] * 6,
                     state_run=[0, 0, 1, 1, 2, 2])


def squared(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(o.softmax(-1), F.one_hot(t, 3).float())


def test_length_is_chosen_where_the_baseline_helps_when_long_steps_hurt_every_loss(toy, monkeypatch) -> None:
    """Long steps (3 |theta|) hurt every loss at every state; the chosen length is the largest short one at which
    the baseline (CE) improves the choose half at most states, the headline is each loss's change there on the
    report half, and the two halves are disjoint and together the whole held-out set."""
    task, data, _ = toy
    pool = _near_optimal(toy)
    monkeypatch.setattr(descent, "STEP_SIZES", (0.01, 0.03, 0.1, 0.3, 3.0))
    res = {name: descent_probe(task, data, pool, loss, torch.device("cpu"), batch_size=64, fd=False)
           for name, loss in (("ce", ce), ("squared", squared), ("flipped", flipped))}
    for out in res.values():  # long steps hurt every loss, on both halves, at every state
        assert all(r["change_choose"][-1] < 0 and r["change_report"][-1] < 0 for r in out["states"])
    base = res["ce"]["states"]
    choice = choose_length(base, descent.STEP_SIZES)
    assert choice["chosen_size"] == 0.3 and choice["baseline_helps"][-1] is False
    assert choice["baseline_improves_share"][-1] == 0.0
    # the rule by hand: the largest length whose share of improving states (choose half) exceeds one half
    shares = [np.mean([r["change_choose"][j] > 0 for r in base]) for j in range(5)]
    assert choice["baseline_improves_share"] == pytest.approx(shares)
    assert max(j for j in range(5) if shares[j] > 0.5) == 3
    for name, out in res.items():
        s = summarise(out["states"], base)
        assert s["chosen_size"] == 0.3 and not s["no_helpful_length"] and s["n_runs"] == 3
        want = np.mean([r["change_report"][3] for r in out["states"]])  # reported on the other half
        assert s["improvement"] == pytest.approx(want)
        assert [b["chosen"] for b in s["by_step_size"]] == [False, False, False, True, False]
        assert s["by_step_size"][-1]["improvement"] < 0  # the curve keeps the hurting length, beside the headline
    assert summarise(res["flipped"]["states"], base)["delta_improvement"] < 0 < summarise(
        res["squared"]["states"], base)["improvement"]
    # the halves: disjoint, stratified by class, covering the held-out set
    ey = data.val.y[pool.eval_index]
    a, b = held_out_halves(ey)
    assert not set(a.tolist()) & set(b.tolist()) and sorted(a.tolist() + b.tolist()) == list(range(ey.numel()))
    assert res["ce"]["halves"] == {"choose": len(a), "report": len(b), "disjoint": True}
    flat = ey.flatten()
    for c in range(3):
        assert abs(int((flat[a] == c).sum()) - int((flat[b] == c).sum())) <= 1


def test_no_length_helps_the_baseline_means_no_headline() -> None:
    """A baseline whose step hurts at every length: no chosen length, a NaN headline, the curve still there."""
    rows = [{"state": s, "run": s % 3, "stuck": False, "fd_cosine": float("nan"),
             "change": [-0.1, -0.2], "change_choose": [-0.1, 0.0], "change_report": [-0.05, -0.2]} for s in range(6)]
    s = summarise(rows, rows)
    assert s["no_helpful_length"] and s["chosen_size"] is None
    assert s["improvement_is_headline"] is False and s["improvement_at"] == 0.1  # stored, never shown as one
    assert [b["improvement"] for b in s["by_step_size"][:2]] == pytest.approx([-0.05, -0.2])
