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
from surrogate_bench.probes.descent import descent_probe, fd_cosine, summarise
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
    for s in range(4):  # part-way between a random and the ideal classifier: room to improve and to worsen
        w = 0.3 * CENTRES + torch.randn(3, 2, generator=gen)
        weights.append({"weight": w, "bias": torch.zeros(3)})
    eval_index = torch.randperm(256, generator=gen)[:4 * 64].view(4, 64)
    pool = ProbePool(torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1), "toy",
                     state=torch.zeros(1, dtype=torch.long), weights=weights, eval_index=eval_index,
                     state_step=[1, 2, 3, 4], state_metric=[0.0] * 4)
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
