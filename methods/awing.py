"""Adaptive Wing loss (Wang, Bo, Fuxin, ICCV 2019, "Adaptive Wing Loss for Robust Face Alignment via Heatmap
Regression"), on the pose tasks' Gaussian target heatmaps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from surrogate_bench.plugins.contracts import NON_NEGATIVE, POSITIVE, LossFn, Method, Task, between


def adaptive_wing(pred: Tensor, goal: Tensor, alpha: float, omega: float, epsilon: float, theta: float) -> Tensor:
    """Element-wise AWing: omega ln(1 + |d/eps|^(alpha-y)) below theta, A|d| - C above (continuous, C^1 at theta)."""
    diff = (goal - pred).abs()
    power = alpha - goal
    ratio = theta / epsilon
    a = omega / (1 + ratio ** power) * power * ratio ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p(ratio ** power)
    small = omega * torch.log1p((diff / epsilon).clamp_max(ratio) ** power)
    return torch.where(diff < theta, small, a * diff - c)


class AdaptiveWing(Method):
    """Adaptive Wing loss (Wang et al., ICCV 2019) to Gaussian target heatmaps, with the paper's weight map.

    Pixels where the 3 x 3-dilated target exceeds 0.2 weigh ``weight`` + 1 (paper: W = 10), others 1;
    mean over the pixels of visible joints' maps. Defaults alpha 2.1, omega 14, epsilon 1, theta 0.5 (paper).
    """

    name = "awing"
    params = {"alpha": 2.1, "omega": 14.0, "epsilon": 1.0, "theta": 0.5, "weight": 10.0, "sigma": 1.0}
    param_domains = {"alpha": between(1, 10, low_open=True), "omega": POSITIVE, "epsilon": POSITIVE, "theta": POSITIVE, "weight": NON_NEGATIVE, "sigma": between(0, 64, low_open=True)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "heatmaps" or not hasattr(task, "target_heatmaps"):
            return f"awing needs heatmap outputs with target_heatmaps; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        p = {k: float(v) for k, v in self.p.items()}

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            goal = task.target_heatmaps(targets, p["sigma"])  # type: ignore[attr-defined]
            region = F.max_pool2d(goal, 3, stride=1, padding=1) >= 0.2
            weight = 1.0 + p["weight"] * region.to(outputs.dtype)
            mask = (targets[..., 2] > 0).to(outputs.dtype)[..., None, None]
            per_pixel = adaptive_wing(outputs, goal, p["alpha"], p["omega"], p["epsilon"], p["theta"])
            pixels = outputs.shape[-1] * outputs.shape[-2]
            return (per_pixel * weight * mask).sum() / (mask.sum() * pixels).clamp_min(1.0)

        return loss
