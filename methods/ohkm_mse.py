"""Online hard keypoint mining MSE (Chen et al., CVPR 2018, "Cascaded Pyramid Network"): MSE of the top-k joints."""

from __future__ import annotations

from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between


class OHKMMSE(Method):
    """OHKM MSE (Chen et al., CVPR 2018, CPN): per sample, the heatmap MSE of its top_k hardest joints.

    ``top_k=0`` means half the joints, rounded up (CPN keeps 8 of 17). With a single joint (the head on
    synth-pose-pckh / mpii-pckh) that joint is always kept: the loss equals mse-heatmap on visible heads,
    and a sample whose head is invisible contributes 0 but still counts in the batch mean.
    """

    name = "ohkm-mse"
    params = {"sigma": 1.0, "top_k": 0}
    param_domains = {"top_k": between(0, 1000), "sigma": between(0, 64, low_open=True)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "heatmaps" or not hasattr(task, "target_heatmaps"):
            return f"ohkm-mse needs heatmap outputs with target_heatmaps; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        sigma = float(self.p["sigma"])

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            joints = outputs.shape[1]
            k = min(int(self.p["top_k"]) or (joints + 1) // 2, joints)
            goal = task.target_heatmaps(targets, sigma)  # type: ignore[attr-defined]
            visible = (targets[..., 2] > 0).to(outputs.dtype)
            per_joint = (outputs - goal).square().mean((-2, -1)) * visible  # N x J
            return (per_joint.topk(k, dim=1).values.sum(1) / k).mean()

        return loss
