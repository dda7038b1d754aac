"""MSE between predicted heatmaps and Gaussian "ground truth" heatmaps (Tompson et al.; Newell et al.)."""

from __future__ import annotations

from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between


class MSEHeatmap(Method):
    """Mean squared error to ``task.target_heatmaps(targets, sigma)``; invisible joints masked out.

    The mean runs over the pixels of visible joints' maps (sum / (visible maps x H x W)).
    ``sigma`` is in heatmap pixels (1.0 at 64 x 64 is the usual choice; UniLoss Table 1 sweeps 0.1..10).
    """

    name = "mse-heatmap"
    params = {"sigma": 1.0}
    param_domains = {"sigma": between(0, 1000, low_open=True)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "heatmaps":
            return f"mse-heatmap needs heatmap outputs; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        sigma = float(self.p["sigma"])

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            goal = task.target_heatmaps(targets, sigma)  # type: ignore[attr-defined]
            mask = (targets[..., 2] > 0).to(outputs.dtype)[..., None, None]
            sq = (outputs - goal).square() * mask
            pixels = outputs.shape[-1] * outputs.shape[-2]
            return sq.sum() / (mask.sum() * pixels).clamp_min(1.0)

        return loss
