"""Poly-1 loss (Leng et al., ICLR 2022, "PolyLoss"): cross-entropy + epsilon (1 - p_t)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between


class Poly1(Method):
    """Poly-1 (Leng et al., ICLR 2022): CE + epsilon (1 - p_t), mean over the batch.

    Default epsilon 1; the paper tunes epsilon per task.
    """

    name = "poly1"
    params = {"epsilon": 1.0}
    param_domains = {"epsilon": between(-1, 1e6)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "logits":
            return f"poly1 needs class logits; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        eps = float(self.p["epsilon"])

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            logp_t = F.log_softmax(outputs, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
            return (-logp_t + eps * (1.0 - logp_t.exp())).mean()

        return loss
