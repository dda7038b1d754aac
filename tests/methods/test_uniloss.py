"""UniLoss: refactorings reproduce the exact metrics, IDW is exact at anchors, gradients are right, training helps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from surrogate_bench import get_method, get_task
from surrogate_bench.plugins.contracts import Task
from surrogate_bench.taskkit.metrics import accuracy, average_precision
from surrogate_bench.uniloss import (AccuracyRefactoring, AnchorSpec, AveragePrecisionRefactoring, PCKhRefactoring,
                                     idw_from_dots, relax, uniloss_value)
from surrogate_bench.uniloss.interpolation import dense_anchor_dots, sample_dense_anchors

AP = AveragePrecisionRefactoring(decode=lambda o: o[..., 1] - o[..., 0])


pytestmark = pytest.mark.usefixtures("one_thread")


def _g_of_signs(ref, outputs, targets) -> tuple[float, float]:
    cmp = ref.comparisons(outputs, targets)
    return float(ref.g(ref.signs(cmp)[None], cmp)[0]), float(ref.g(ref.truth(cmp)[None], cmp)[0])


@pytest.mark.parametrize("trial", range(60))
def test_ap_g_of_signs_is_exact_ap(trial: int) -> None:
    gen = torch.Generator().manual_seed(trial)
    n = int(torch.randint(2, 48, (1,), generator=gen))
    y = (torch.rand(n, generator=gen) < 0.3).long()
    y[0] = 1
    out = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    got, best = _g_of_signs(AP, out, y)
    score = out[:, 1] - out[:, 0]
    assert got == pytest.approx(average_precision(score, y), abs=1e-6)
    assert got == pytest.approx(average_precision_score(y.numpy(), score.numpy()), abs=1e-6)
    assert best == 1.0


@pytest.mark.parametrize("top_k", [None, 3])
@pytest.mark.parametrize("trial", range(30))
def test_accuracy_g_of_signs_is_exact_accuracy(trial: int, top_k: int | None) -> None:
    gen = torch.Generator().manual_seed(trial)
    n, p = int(torch.randint(1, 64, (1,), generator=gen)), int(torch.randint(2, 12, (1,), generator=gen))
    out, y = torch.randn(n, p, generator=gen), torch.randint(0, p, (n,), generator=gen)
    got, best = _g_of_signs(AccuracyRefactoring(top_k=top_k), out, y)
    assert got == pytest.approx(accuracy(out, y), abs=1e-6)
    assert got == pytest.approx(float(np.mean(out.numpy().argmax(1) == y.numpy())), abs=1e-6)
    assert best == 1.0


def _pose_batch(gen: torch.Generator, n: int = 3, j: int = 2, h: int = 9, w: int = 11):
    out = torch.randn(n, j, h, w, generator=gen, dtype=torch.float64)
    t = torch.zeros(n, j, 4, dtype=torch.float64)
    t[..., 0] = torch.rand(n, j, generator=gen) * (w - 1)
    t[..., 1] = torch.rand(n, j, generator=gen) * (h - 1)
    t[..., 2] = (torch.rand(n, j, generator=gen) < 0.8).double()
    t[..., 3] = 1.5 + torch.rand(n, j, generator=gen) * 6.0  # radius > 0.71: a pixel is always inside
    t[0, 0, 2] = 1.0
    return out, t


def _pckh_reference(out: torch.Tensor, t: torch.Tensor) -> float:
    """PCKh from the argmax pixel: correct iff its distance to the joint is <= 0.5 head size, over visible joints."""
    n, j, h, w = out.shape
    idx = out.reshape(n, j, -1).argmax(-1)
    x, y = (idx % w).double(), (idx // w).double()
    correct = ((x - t[..., 0]) ** 2 + (y - t[..., 1]) ** 2).sqrt() <= 0.5 * t[..., 3]
    vis = t[..., 2] > 0
    return float((correct & vis).sum() / vis.sum())


@pytest.mark.parametrize("trial", range(40))
def test_pckh_g_of_signs_is_exact_pckh(trial: int) -> None:
    gen = torch.Generator().manual_seed(trial)
    out, t = _pose_batch(gen)
    got, best = _g_of_signs(PCKhRefactoring(max_inside=99), out, t)
    assert got == pytest.approx(_pckh_reference(out, t), abs=1e-9)
    assert best == 1.0
    from surrogate_bench.taskkit.heatmaps import argmax_decode
    from surrogate_bench.taskkit.metrics import pckh_correct

    hits = pckh_correct(argmax_decode(out), t[..., 0:2], t[..., 3], t[..., 2], 0.5)
    assert got == pytest.approx(float(hits.sum() / (t[..., 2] > 0).sum()), abs=1e-9)


@pytest.mark.parametrize("trial", range(10))
def test_pckh_structured_anchors_match_dense(trial: int) -> None:
    """Closed-form dots and values of the structured PCKh anchors equal those of the same anchors built densely."""
    gen = torch.Generator().manual_seed(trial)
    out, t = _pose_batch(gen)
    ref = PCKhRefactoring(max_inside=30)
    cmp = ref.comparisons(out, t)
    u = relax(cmp, 0.7)
    torch.manual_seed(trial)
    record: list[torch.Tensor] = []
    dots, values = ref.anchors(cmp, u, AnchorSpec(n_good=5, good_flips=3, n_nearby=7, n_bad=4), record=record)
    configs = torch.cat(record)
    signs = torch.where(configs, 1.0, -1.0).double() * cmp.valid
    assert torch.allclose(dots, (signs * u).flatten(1).sum(-1), atol=1e-9)
    assert torch.allclose(values, ref.g(configs, cmp).double(), atol=1e-9)


def test_idw_is_exact_at_an_anchor() -> None:
    torch.manual_seed(0)
    out, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 5, (32,))
    ref = AccuracyRefactoring()
    cmp = ref.comparisons(out, y)
    anchors = sample_dense_anchors(ref.truth(cmp), ref.signs(cmp), cmp.valid, AnchorSpec(n_good=4, good_flips=3))
    values = ref.g(anchors.view(-1, *cmp.shape), cmp).double()
    n_valid = cmp.valid.sum().double()
    mask = cmp.valid.flatten().double()  # u is 0 on invalid entries (the target's own comparison)
    for t in (0, 3, 7, len(anchors) - 1):
        u = torch.where(anchors[t], 1.0, -1.0).double() * mask
        dots = torch.where(anchors, 1.0, -1.0).double() @ u
        assert float(idw_from_dots(dots, values, (u * u).sum(), n_valid)) == pytest.approx(float(values[t]), abs=1e-5)


@pytest.mark.parametrize("ref,make", [
    (AP, lambda g: (torch.randn(6, 2, generator=g, dtype=torch.float64), torch.tensor([1, 0, 0, 1, 0, 0]))),
    (AccuracyRefactoring(), lambda g: (torch.randn(5, 4, generator=g, dtype=torch.float64),
                                       torch.tensor([0, 1, 2, 3, 1]))),
    (PCKhRefactoring(max_inside=12), lambda g: _pose_batch(g, n=2, j=1, h=5, w=6)),
])
def test_gradients_match_finite_differences(ref, make) -> None:
    outputs, targets = make(torch.Generator().manual_seed(3))
    outputs.requires_grad_(True)
    spec = AnchorSpec(n_good=4, good_flips=2, n_nearby=4, nearby_flips=1, n_bad=4)

    def f(o: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same anchors on every evaluation
            return uniloss_value(ref, o, targets, spec, temperature=0.5)

    assert torch.autograd.gradcheck(f, (outputs,), eps=1e-6, atol=1e-5)


def test_batch_without_positive_gives_zero_gradient_connected_to_graph() -> None:
    out = torch.randn(16, 2, requires_grad=True)
    for y in (torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=torch.long)):
        loss = -uniloss_value(AP, out, y, AnchorSpec())
        assert torch.isfinite(loss) and float(loss.detach()) == -1.0
        (grad,) = torch.autograd.grad(loss, out)
        assert torch.equal(grad, torch.zeros_like(out))


def test_dense_dots_equal_explicit_distances() -> None:
    torch.manual_seed(1)
    out, y = torch.randn(20, 2, dtype=torch.float64), (torch.rand(20) < 0.3).long()
    y[:2] = torch.tensor([1, 0])
    cmp = AP.comparisons(out, y)
    u = relax(cmp, 1.0)
    torch.manual_seed(5)
    dots, values = dense_anchor_dots(AP, cmp, u, AnchorSpec())
    torch.manual_seed(5)
    anchors = sample_dense_anchors(AP.truth(cmp), AP.signs(cmp), cmp.valid, AnchorSpec())
    a = torch.where(anchors, 1.0, -1.0).double() * cmp.valid.flatten()
    d2 = ((a - u.flatten()) ** 2).sum(-1)
    assert torch.allclose(cmp.valid.sum() - 2 * dots + (u * u).sum(), d2, atol=1e-9)


@pytest.mark.parametrize("kind", ["ap", "accuracy"])
def test_a_few_steps_raise_the_metric(kind: str) -> None:
    torch.manual_seed(0)
    n, d = 256, 10
    x = torch.randn(n, d)
    if kind == "ap":
        y = (x[:, 0] + 0.3 * torch.randn(n) > 1.0).long()
        ref, metric = AP, lambda o: average_precision(o[:, 1] - o[:, 0], y)
        model = torch.nn.Linear(d, 2)
    else:
        y = (x[:, :4] + 0.3 * torch.randn(n, 4)).argmax(1)
        ref, metric = AccuracyRefactoring(), lambda o: accuracy(o, y)
        model = torch.nn.Linear(d, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = metric(model(x).detach())
    for step in range(60):
        idx = torch.randint(0, n, (32,))
        loss = -uniloss_value(ref, model(x[idx]), y[idx], AnchorSpec())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metric(model(x).detach()) > before + 0.1


def test_method_skips_tasks_without_refactoring_and_checks_params() -> None:
    class Plain(Task):
        name = "plain"

    method = get_method("uniloss")
    assert "refactoring" in method.supports(Plain())
    assert method.supports(get_task("mnist-ap")) is None
    from surrogate_bench.plugins.errors import SuiteError
    with pytest.raises(SuiteError):
        get_method("uniloss", temperature=0.0)
    with pytest.raises(SuiteError):
        get_method("uniloss", top_k=5).refactoring(get_task("mnist-ap"))


@pytest.mark.parametrize("ref,make", [
    (AP, lambda g: (torch.randn(16, 2, generator=g), (torch.rand(16, generator=g) < 0.3).long())),
    (AccuracyRefactoring(), lambda g: (torch.randn(32, 10, generator=g), torch.randint(0, 10, (32,), generator=g))),
    (AccuracyRefactoring(top_k=3), lambda g: (torch.randn(8, 10, generator=g), torch.randint(0, 10, (8,), generator=g))),
])
@pytest.mark.parametrize("gain", [1.0, 7.0])
def test_fused_dense_path_equals_autograd_reference(ref, make, gain: float) -> None:
    """The closed-form dense_idw gives the value and (gain x) gradient of relax -> dense dots -> IDW under autograd."""
    spec = AnchorSpec(n_good=5, good_flips=2, n_nearby=6, nearby_flips=1, n_bad=7)
    for trial in range(5):
        outputs, targets = make(torch.Generator().manual_seed(trial))
        fused_in = outputs.clone().requires_grad_(True)
        torch.manual_seed(trial)
        fused = uniloss_value(ref, fused_in, targets, spec, temperature=0.8, gain=gain)
        fused.backward()
        ref_in = outputs.clone().requires_grad_(True)
        cmp = ref.comparisons(ref_in, targets)
        u = relax(cmp, 0.8)
        torch.manual_seed(trial)
        dots, values = dense_anchor_dots(ref, cmp, u, spec)
        expected = idw_from_dots(dots, values, (u * u).sum(), cmp.valid.sum().float())
        expected.backward()
        assert float(fused.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
        assert torch.allclose(fused_in.grad, gain * ref_in.grad, atol=1e-6, rtol=1e-4)


def test_anchor_flips_with_repeated_picks_are_deterministic() -> None:
    """With several flips per anchor, a repeated (not-ok) pick never undoes the row's first pick."""
    truth = torch.ones(6, dtype=torch.bool)
    current = torch.tensor([True, False, True, False, True, True])
    valid = torch.ones(6, dtype=torch.bool)
    for seed in range(20):
        torch.manual_seed(seed)
        a = sample_dense_anchors(truth, current, valid, AnchorSpec(n_good=50, good_flips=4, n_nearby=50,
                                                                   nearby_flips=3, n_bad=0))
        good, near = a[1:51], a[51:]
        flipped = (~good).sum(1)
        assert bool((flipped >= 1).all()) and bool((flipped <= 4).all())
        assert bool((near >= current).all())  # nearby anchors only turn wrong bits right
        assert bool(((near & ~current).sum(1) >= 1).all())
