"""Multi-class hinge (Crammer & Singer, JMLR 2001): max(0, margin + max_{j != y} z_j - z_y)."""

from __future__ import annotations

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import POSITIVE, LossFn, Method, Task


class CrammerSingerHinge(Method):
    """Crammer-Singer multi-class hinge (JMLR 2001): max(0, margin + max_{j != y} z_j - z_y), batch mean.

    (torch's ``MultiMarginLoss`` is the Weston-Watkins sum over wrong classes, a different loss.)
    """

    name = "hinge"
    params = {"margin": 1.0}
    param_domains = {"margin": POSITIVE}  # margin 0 leaves no hinge (zero loss at a tie)

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "logits":
            return f"hinge needs class logits; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        margin = float(self.p["margin"])

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            true = outputs.gather(-1, targets[:, None]).squeeze(-1)
            others = outputs.scatter(-1, targets[:, None], float("-inf")).amax(-1)
            return torch.relu(margin + others - true).mean()

        return loss
