"""Reference tests of the heatmap surrogates (OHKM MSE, Adaptive Wing, soft-argmax) against the papers' formulas
written out here per sample / per pixel with Python loops, values and gradients, on random inputs."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from surrogate_bench import get_method, get_task

POSE1 = get_task("synth-pose-pckh")  # one joint (the head), 32 x 32 heatmaps
POSE4 = get_task("synth-pose-pckh", joints=(0, 3, 9, 12))


def batch(task, n: int = 3, seed: int = 0,
          invisible: tuple[tuple[int, int], ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    j, (h, w) = task.num_joints, task.heatmap_size
    outputs = (0.3 * torch.rand(n, j, h, w, generator=gen, dtype=torch.double)).requires_grad_()
    targets = torch.zeros(n, j, 4)
    targets[..., 0:2] = 4 + (w - 8) * torch.rand(n, j, 2, generator=gen)
    targets[..., 2] = 1.0
    targets[..., 3] = 6.0
    for i, k in invisible:
        targets[i, k, 2] = 0.0
    return outputs, targets


def assert_same(loss_fn, formula, outputs: torch.Tensor, targets: torch.Tensor) -> None:
    got = loss_fn(outputs, targets)
    want = formula(outputs, targets)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, outputs)[0], torch.autograd.grad(want, outputs)[0])


@pytest.mark.parametrize("top_k", [0, 1, 3])
def test_ohkm_matches_cpn_formula(top_k: int) -> None:
    """Per sample: mean of the k largest per-joint MSEs (invisible = 0), then mean over samples (Chen et al.)."""
    outputs, targets = batch(POSE4, invisible=((0, 1), (2, 3)))

    def formula(out, tgt):
        goal = POSE4.target_heatmaps(tgt, 1.0)
        k = top_k or 2  # half of 4 joints
        per_sample = []
        for i in range(out.shape[0]):
            joint_losses = [((out[i, j] - goal[i, j]) ** 2).mean() * float(tgt[i, j, 2]) for j in range(out.shape[1])]
            joint_losses.sort(key=lambda v: -float(v.detach()))
            per_sample.append(sum(joint_losses[:k]) / k)
        return sum(per_sample) / len(per_sample)

    assert_same(get_method("ohkm-mse", top_k=top_k).make_loss(POSE4), formula, outputs, targets)


def test_ohkm_with_one_joint_is_mse_heatmap() -> None:
    """The pose tasks here score one joint: OHKM keeps it, so the loss equals mse-heatmap on visible heads."""
    outputs, targets = batch(POSE1)
    assert_same(get_method("ohkm-mse").make_loss(POSE1), get_method("mse-heatmap").make_loss(POSE1), outputs, targets)


def awing_scalar(y: float, yhat: torch.Tensor, alpha=2.1, omega=14.0, eps=1.0, theta=0.5) -> torch.Tensor:
    """Wang et al., Eq. 5-6, for one pixel."""
    d = abs(y - yhat)
    if float(d.detach()) < theta:
        return omega * torch.log(1 + (d / eps) ** (alpha - y))
    a = omega * (1 / (1 + (theta / eps) ** (alpha - y))) * (alpha - y) * (theta / eps) ** (alpha - y - 1) / eps
    c = theta * a - omega * math.log(1 + (theta / eps) ** (alpha - y))
    return a * d - c


def test_awing_matches_paper_formula() -> None:
    """AWing per pixel (paper formula), weighted 1 + W on the 3x3-dilated target >= 0.2, mean over visible maps."""
    task = get_task("synth-pose-pckh", heatmap_size=8, input_size=32, depth=3)
    outputs, targets = batch(task, n=2, invisible=((1, 0),))
    with torch.no_grad():
        outputs[0, 0, 2, 2] = 1.4  # some pixels beyond theta
        outputs[0, 0, 5, 1] = -0.8

    def formula(out, tgt):
        goal = task.target_heatmaps(tgt, 1.0)
        total = 0
        for i in range(out.shape[0]):
            if not tgt[i, 0, 2]:
                continue
            for r in range(8):
                for c in range(8):
                    near = goal[i, 0, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].max() >= 0.2
                    total = total + awing_scalar(float(goal[i, 0, r, c]), out[i, 0, r, c]) * (11.0 if near else 1.0)
        return total / (64 * float(tgt[:, 0, 2].sum()))

    assert_same(get_method("awing").make_loss(task), formula, outputs, targets)


def test_awing_is_continuous_and_smooth_at_theta() -> None:
    """The linear branch meets the log branch at |d| = theta with the same value and slope (the paper's A, C)."""
    adaptive_wing = sys.modules[type(get_method("awing")).__module__].adaptive_wing
    y = torch.tensor([0.0, 0.3, 1.0], dtype=torch.double)
    for side in (-1e-7, 1e-7):
        d = (0.5 + side + torch.zeros(3, dtype=torch.double)).requires_grad_()
        v = adaptive_wing(y + d, y, 2.1, 14.0, 1.0, 0.5)
        (g,) = torch.autograd.grad(v.sum(), d)
        if side < 0:
            v_lo, g_lo = v.detach(), g
    torch.testing.assert_close(v.detach(), v_lo, atol=1e-5, rtol=0)
    torch.testing.assert_close(g, g_lo, atol=1e-4, rtol=0)


def test_soft_argmax_matches_integral_formula() -> None:
    """coords = sum_p softmax(beta h)_p * p over pixel centres; loss = mean over visible joints of L1 to the joint."""
    outputs, targets = batch(POSE4, n=2, invisible=((1, 2),))
    beta = 2.0

    def formula(out, tgt):
        total, count = 0, 0
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                if not tgt[i, j, 2]:
                    continue
                prob = torch.softmax(beta * out[i, j].flatten(), 0).view(out.shape[-2:])
                x = sum(prob[r, c] * c for r in range(prob.shape[0]) for c in range(prob.shape[1]))
                y = sum(prob[r, c] * r for r in range(prob.shape[0]) for c in range(prob.shape[1]))
                total = total + (x - float(tgt[i, j, 0])).abs() + (y - float(tgt[i, j, 1])).abs()
                count += 1
        return total / count

    assert_same(get_method("soft-argmax", beta=beta).make_loss(POSE4), formula, outputs, targets)


@pytest.mark.parametrize("name", ["ohkm-mse", "awing", "soft-argmax"])
def test_heatmap_methods_fit_heatmap_tasks_only(name: str) -> None:
    method = get_method(name)
    assert method.supports(POSE1) is None and method.supports(get_task("mpii-pckh")) is None
    assert method.supports(get_task("mnist-ap")) and method.supports(get_task("cifar10-acc"))
