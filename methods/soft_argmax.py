"""Soft-argmax (integral) coordinate loss (Sun et al., ECCV 2018, "Integral Human Pose Regression")."""

from __future__ import annotations

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between


def soft_argmax(heatmaps: Tensor, beta: float) -> Tensor:
    """N x J x H x W -> N x J x 2 expected (x, y) under softmax(beta * heatmap) over the pixels (pixel centres)."""
    n, j, h, w = heatmaps.shape
    prob = torch.softmax(beta * heatmaps.flatten(2), dim=-1).view(n, j, h, w)
    xs = torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype)
    ys = torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype)
    return torch.stack([(prob.sum(-2) * xs).sum(-1), (prob.sum(-1) * ys).sum(-1)], dim=-1)


class SoftArgmax(Method):
    """Integral soft-argmax (Sun et al., ECCV 2018): L1 of softmax-expected joint coordinates.

    The task still decodes by hard argmax; ``beta`` scales the heatmap before the softmax.
    """

    name = "soft-argmax"
    params = {"beta": 1.0}
    param_domains = {"beta": between(0, 1e6, low_open=True)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "heatmaps":
            return f"soft-argmax needs heatmap outputs; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        beta = float(self.p["beta"])

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            coords = soft_argmax(outputs, beta)
            visible = (targets[..., 2] > 0).to(outputs.dtype)
            dist = (coords - targets[..., 0:2]).abs().sum(-1) * visible
            return dist.sum() / visible.sum().clamp_min(1.0)

        return loss
