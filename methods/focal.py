"""Focal loss (Lin et al., ICCV 2017, "Focal Loss for Dense Object Detection"): softmax CE scaled by (1 - p_t)^gamma."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between


class Focal(Method):
    """Focal loss (Lin et al., ICCV 2017): -(1 - p_t)^gamma log p_t over the softmax, mean over the batch.

    On 2-class logits it equals torchvision's ``sigmoid_focal_loss`` of the logit difference (alpha off).
    """

    name = "focal"
    params = {"gamma": 2.0}
    param_domains = {"gamma": between(0, 100)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "logits":
            return f"focal needs class logits; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        gamma = float(self.p["gamma"])

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            logp_t = F.log_softmax(outputs, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
            return (-(-torch.expm1(logp_t)).pow(gamma) * logp_t).mean()  # 1 - p_t, accurate near p_t = 1

        return loss
