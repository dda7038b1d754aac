"""Reference tests of the classification surrogates (focal, poly1, hinge, ce-ls, soft-top1) on random inputs.

Each loss is checked, values and gradients, against torchvision (binary focal) or the paper's formula written
out here independently, per sample with Python scalars.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from surrogate_bench import get_method, get_task

CIFAR = get_task("cifar10-acc")


def logits_targets(n: int = 12, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(n, k, generator=gen, dtype=torch.double)).requires_grad_(), \
        torch.randint(0, k, (n,), generator=gen)


def per_sample_mean(formula, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_i formula(list of the row's logits, its target), row by row (the independent reference)."""
    return torch.stack([formula(list(row), int(t)) for row, t in zip(logits, targets)]).mean()


def softmax_p(row: list, t: int) -> torch.Tensor:
    return row[t].exp() / sum(v.exp() for v in row)


def check(method, formula, k: int = 10, seed: int = 0) -> None:
    logits, targets = logits_targets(k=k, seed=seed)
    got = method.make_loss(CIFAR)(logits, targets)
    (g_got,) = torch.autograd.grad(got, logits)
    want = per_sample_mean(formula, logits, targets)
    (g_want,) = torch.autograd.grad(want, logits)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_binary_matches_torchvision(gamma: float) -> None:
    """2-class softmax focal == torchvision's sigmoid focal loss of the logit difference (alpha off)."""
    logits, targets = logits_targets(k=2)
    got = get_method("focal", gamma=gamma).make_loss(CIFAR)(logits, targets)
    want = sigmoid_focal_loss(logits[:, 1] - logits[:, 0], targets.double(), alpha=-1, gamma=gamma, reduction="mean")
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, logits)[0], torch.autograd.grad(want, logits)[0])


def test_focal_multiclass_matches_formula() -> None:
    check(get_method("focal"), lambda row, t: -(1 - softmax_p(row, t)) ** 2 * softmax_p(row, t).log())
    assert get_method("focal").p["gamma"] == 2.0  # Lin et al.'s default


def test_focal_gamma0_is_ce() -> None:
    logits, targets = logits_targets()
    torch.testing.assert_close(get_method("focal", gamma=0.0).make_loss(CIFAR)(logits, targets),
                               get_method("ce").make_loss(CIFAR)(logits, targets))


def test_poly1_matches_formula() -> None:
    check(get_method("poly1", epsilon=1.0), lambda row, t: -softmax_p(row, t).log() + 1.0 * (1 - softmax_p(row, t)))
    check(get_method("poly1", epsilon=-0.5), lambda row, t: -softmax_p(row, t).log() - 0.5 * (1 - softmax_p(row, t)))


def test_crammer_singer_hinge_matches_formula() -> None:
    def cs(row: list, t: int) -> torch.Tensor:
        worst = max((v for j, v in enumerate(row) if j != t), key=lambda v: float(v.detach()))
        return torch.clamp(1.0 + worst - row[t], min=0.0)

    check(get_method("hinge"), cs, seed=1)
    check(get_method("hinge"), cs, k=2, seed=2)


def test_label_smoothed_ce_matches_formula() -> None:
    def ls(row: list, t: int, eps: float = 0.1) -> torch.Tensor:
        logp = [softmax_p(row, j).log() for j in range(len(row))]
        return -(1 - eps) * logp[t] - eps / len(row) * sum(logp)

    check(get_method("ce-ls"), ls)


def test_soft_top1_two_classes_matches_the_cauchy_swap() -> None:
    """With 2 classes the network is one soft swap: P(top = t) = 1/2 + atan(steepness (z_t - z_o)) / pi."""
    steep = 3.0

    def formula(row: list, t: int) -> torch.Tensor:
        return -(0.5 + torch.atan(steep * (row[t] - row[1 - t])) / math.pi).log()

    check(get_method("soft-top1", steepness=steep), formula, k=2)


def test_soft_top1_is_a_top1_surrogate() -> None:
    """Loss -> 0 for a confident correct argmax, large when the argmax is wrong; finite gradients."""
    loss = get_method("soft-top1").make_loss(get_task("cifar100-acc"))
    logits = torch.zeros(4, 100, dtype=torch.double)
    logits[:, 7] = 50.0
    right, wrong = torch.full((4,), 7), torch.full((4,), 3)
    assert float(loss(logits, right)) < 0.05 < 1.0 < float(loss(logits, wrong))
    logits, targets = logits_targets(n=6, k=10)
    soft = get_method("soft-top1").make_loss(CIFAR)(logits, targets)
    assert torch.isfinite(torch.autograd.grad(soft, logits)[0]).all()


@pytest.mark.parametrize("name", ["focal", "poly1", "hinge", "ce-ls", "soft-top1"])
def test_supports_follows_the_declared_output_kind(name: str) -> None:
    method = get_method(name)
    assert method.supports(CIFAR) is None and method.supports(get_task("cifar100-acc")) is None
    assert method.supports(get_task("synth-pose-pckh"))  # heatmaps: a reason
    # soft-top1 is a top-1 accuracy surrogate; the CE-family losses also serve as mnist-ap baselines
    assert (method.supports(get_task("mnist-ap")) is None) == (name != "soft-top1")
