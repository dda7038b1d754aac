"""Reference tests of the AP surrogates on mnist-ap's decoded score: Smooth-AP and FastAP against
pytorch-metric-learning (values and gradients), blackbox AP against scikit-learn and the paper's backward."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import average_precision_score

from surrogate_bench import get_method, get_task
from surrogate_bench.losses.ap_surrogates import BlackboxRanker, ScoreMemory, blackbox_ap, fast_ap, smooth_ap, standardise

pml_losses = pytest.importorskip("pytorch_metric_learning.losses",
                                 reason="pytorch-metric-learning (the dev extra) is the Smooth-AP/FastAP reference")
from pytorch_metric_learning.reducers import DoNothingReducer  # noqa: E402

AP_TASK = get_task("mnist-ap")
G = 5  # items per class in the FastAP batch


def two_logits(scores: torch.Tensor) -> torch.Tensor:
    """Logits whose decoded mnist-ap score (logit 1 - logit 0) is ``scores``, with a distracting common offset."""
    return torch.stack([-scores / 2 + 3.0, scores / 2 + 3.0], dim=-1)


def angles(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (0.1 + 2.9 * torch.rand(n, generator=gen, dtype=torch.double)).requires_grad_()


def pml_anchor_loss(loss: torch.nn.Module, theta: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PML's per-query loss of an anchor at angle 0 (label 0) against unit vectors at ``theta``."""
    emb = torch.cat([torch.tensor([[1.0, 0.0]], dtype=torch.double), torch.stack([theta.cos(), theta.sin()], 1)])
    (entry,) = loss(emb, torch.cat([torch.zeros(1, dtype=torch.long), labels])).values()
    return entry["losses"][0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smooth_ap_matches_pytorch_metric_learning(seed: int) -> None:
    """Smooth-AP of a list of similarities == PML's loss of an anchor whose cosines to the items are those
    similarities; the anchor is itself a positive of similarity 1 in PML's list. PML 2.9 groups the batch
    as (batch // #classes) x #classes, right only when #classes == items per class: 4 classes of 4 here, the
    anchor's 3 classmates are the positives, the other 12 items negatives."""
    theta = angles(4 * 4 - 1, seed)
    labels = torch.arange(4).repeat_interleave(4)[1:]  # PML: class 0 = the anchor's class
    want = pml_anchor_loss(pml_losses.SmoothAPLoss(temperature=0.01, reducer=DoNothingReducer()), theta, labels)
    sims = torch.cat([torch.ones(1, dtype=torch.double), theta.cos()])
    targets = torch.cat([torch.ones(1, dtype=torch.long), (labels == 0).long()])
    ours = smooth_ap(sims, targets, torch.ones_like(sims), temperature=0.01)
    torch.testing.assert_close(ours, want.double(), rtol=1e-5, atol=1e-6)
    g_ours, = torch.autograd.grad(ours, theta)
    g_want, = torch.autograd.grad(want, theta)
    torch.testing.assert_close(g_ours, g_want.double(), rtol=1e-4, atol=1e-5)
    assert 0.05 < float(ours.detach()) < 0.95  # a non-trivial ranking


@pytest.mark.parametrize("seed,bins", [(0, 10), (1, 10), (2, 4)])
def test_fastap_matches_pytorch_metric_learning(seed: int, bins: int) -> None:
    """FastAP of distances 2 - 2 cos (squared distances of unit vectors) == PML's loss of the anchor."""
    theta = angles(2 * G, seed)
    labels = torch.tensor([0] * G + [1] * G)
    want = pml_anchor_loss(pml_losses.FastAPLoss(num_bins=bins, reducer=DoNothingReducer()), theta, labels)
    dist = 2 - 2 * theta.cos()
    ours = fast_ap(dist, (labels == 0).long(), torch.ones_like(dist), bins)
    torch.testing.assert_close(ours, want)
    torch.testing.assert_close(torch.autograd.grad(ours, theta)[0], torch.autograd.grad(want, theta)[0])
    assert 0.05 < float(ours.detach()) < 0.95


@pytest.mark.parametrize("seed", range(5))
def test_blackbox_ap_forward_is_one_minus_sklearn_ap(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(40, generator=gen, dtype=torch.double)
    targets = (torch.rand(40, generator=gen) < 0.3).long()
    targets[0] = 1
    got = get_method("blackbox-ap").make_loss(AP_TASK)(two_logits(scores), targets)
    assert float(got) == pytest.approx(1 - average_precision_score(targets.numpy(), scores.numpy()), abs=1e-12)


def test_blackbox_backward_is_the_papers_interpolation() -> None:
    """grad_s = -(rank(s) - rank(s + lambda dL/drank)) / lambda, with dL/drank_i = rank+_i / (|P| rank_i^2) on
    positives, worked out here with Python sorting (ranks normalised by n, 1 = highest)."""
    scores = [0.3, 1.2, -0.4, 0.9, 0.1, -1.0]
    pos = [1, 0, 1, 0, 1, 0]
    n, lam = len(scores), 4.0

    def ranks(vals: list[float]) -> list[float]:
        order = sorted(range(n), key=lambda i: -vals[i])
        return [(order.index(i) + 1) / n for i in range(n)]

    r = ranks(scores)
    r_pos = [(1 + sum(1 for j in range(n) if pos[j] and r[j] < r[i])) / n for i in range(n)]
    dl_dr = [pos[i] * r_pos[i] / (sum(pos) * r[i] ** 2) for i in range(n)]
    r_prime = ranks([scores[i] + lam * dl_dr[i] for i in range(n)])
    want = [-(r[i] - r_prime[i]) / lam for i in range(n)]

    s = torch.tensor(scores, dtype=torch.double, requires_grad=True)
    loss = blackbox_ap(s, torch.tensor(pos), torch.ones(n), lam)
    ap = sum(r_pos[i] / r[i] for i in range(n) if pos[i]) / sum(pos)
    assert float(loss.detach()) == pytest.approx(1 - ap)
    (grad,) = torch.autograd.grad(loss, s)
    torch.testing.assert_close(grad, torch.tensor(want, dtype=torch.double))
    assert any(abs(w) > 0 for w in want)  # the case is not degenerate


def test_blackbox_ranker_gradient_lowers_the_loss() -> None:
    """A step against the blackbox gradient improves the exact AP of a bad ranking (gradients are ~1/(n lambda))."""
    s = torch.tensor([2.0, 1.0, 0.5, -0.2, -1.0], dtype=torch.double, requires_grad=True)
    y = torch.tensor([0, 0, 1, 0, 1])
    loss = blackbox_ap(s, y, torch.ones(5), lam=4.0)
    (g,) = torch.autograd.grad(loss, s)
    assert float(blackbox_ap((s - 20.0 * g).detach(), y, torch.ones(5), lam=4.0)) < float(loss.detach())
    assert BlackboxRanker.apply(s.detach(), 1.0).tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.mark.parametrize("name", ["smooth-ap", "fastap", "blackbox-ap"])
def test_batch_without_positives_gives_zero_loss_and_queue_restores_them(name: str) -> None:
    """mnist-ap's paper batch 16 has ~1.6 positives: a batch may have none. Without a queue such a batch gives
    loss 0; with ``queue`` the list holds past positives (scores only, no gradient) and the batch is ranked."""
    gen = torch.Generator().manual_seed(0)
    first = torch.randn(16, 2, generator=gen, dtype=torch.double)
    no_pos = torch.randn(16, 2, generator=gen, dtype=torch.double).requires_grad_()
    zeros = torch.zeros(16, dtype=torch.long)
    plain = get_method(name).make_loss(AP_TASK)
    plain(first, torch.ones(16, dtype=torch.long))
    assert float(plain(no_pos, zeros).detach()) == 0.0
    queued = get_method(name, queue=64).make_loss(AP_TASK)
    queued(first, (torch.arange(16) % 2 == 0).long())  # 8 positives stored
    loss = queued(no_pos, zeros)
    assert float(loss.detach()) > 0
    (grad,) = torch.autograd.grad(loss, no_pos)
    assert torch.isfinite(grad).all()
    if name != "blackbox-ap":  # blackbox gradients are piecewise constant and may vanish on one step
        assert grad.abs().sum() > 0


def test_score_memory_is_a_detached_ring() -> None:
    mem = ScoreMemory(5)
    s1 = torch.arange(3.0, requires_grad=True)
    scores, labels, weights = mem.extend(s1, torch.tensor([1, 0, 1]))
    assert weights.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    scores, labels, weights = mem.extend(torch.tensor([10.0, 11.0, 12.0, 13.0]), torch.tensor([0, 0, 0, 1]))
    assert scores[4:].tolist() == [0.0, 1.0, 2.0, 0.0, 0.0] and weights.tolist() == [1] * 4 + [1, 1, 1, 0, 0]
    assert not mem.scores.requires_grad
    assert mem.scores.tolist() == [12.0, 13.0, 2.0, 10.0, 11.0]  # the oldest (0, 1) overwritten
    assert mem.ptr == 2


@pytest.mark.parametrize("name", ["smooth-ap", "fastap", "blackbox-ap"])
def test_ap_methods_use_the_decoded_score_and_fit_ap_tasks_only(name: str) -> None:
    method = get_method(name)
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 2, generator=gen, dtype=torch.double)
    targets = (torch.rand(32, generator=gen) < 0.3).long()
    loss = method.make_loss(AP_TASK)
    assert float(loss(logits, targets)) == pytest.approx(float(loss(logits + 5.0, targets)))  # only s = z1 - z0
    assert method.supports(AP_TASK) is None
    for other in ("cifar10-acc", "synth-pose-pckh"):
        assert method.supports(get_task(other))


@pytest.mark.parametrize("name", ["smooth-ap", "fastap", "blackbox-ap"])
def test_methods_rank_the_standardised_decoded_score(name: str) -> None:
    """The methods feed the referenced functions the task's decoded score standardised over the list (tanh(z/2)
    as similarity, 2 - 2 tanh(z/2) as distance): the loss ignores shifts and positive scalings of the score."""
    gen = torch.Generator().manual_seed(4)
    scores = torch.randn(24, generator=gen, dtype=torch.double)
    targets = (torch.rand(24, generator=gen) < 0.3).long()
    targets[0] = 1
    method = get_method(name)
    got = method.make_loss(AP_TASK)(two_logits(scores), targets)
    z, ones = standardise(scores, torch.ones(24)), torch.ones(24, dtype=torch.double)
    want = {"smooth-ap": lambda: smooth_ap(torch.tanh(z / 2), targets, ones, 0.01),
            "fastap": lambda: fast_ap(2 - 2 * torch.tanh(z / 2), targets, ones, 10),
            "blackbox-ap": lambda: blackbox_ap(z, targets, ones, 4.0)}[name]()
    torch.testing.assert_close(got, want)
    scaled = method.make_loss(AP_TASK)(two_logits(7.0 * scores - 3.0), targets)
    torch.testing.assert_close(scaled, got)
