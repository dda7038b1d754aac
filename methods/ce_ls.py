"""Label-smoothed cross-entropy (Szegedy et al., CVPR 2016, "Rethinking the Inception Architecture")."""

from __future__ import annotations

import torch.nn.functional as F

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between


class LabelSmoothedCE(Method):
    """Label-smoothed CE (Szegedy et al., CVPR 2016): targets (1 - smoothing) one-hot + smoothing / K.

    The paper's smoothing 0.1 by default.
    """

    name = "ce-ls"
    params = {"smoothing": 0.1}
    param_domains = {"smoothing": between(0, 1, high_open=True)}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "logits":
            return f"ce-ls needs class logits; {task.name} outputs {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        smoothing = float(self.p["smoothing"])
        return lambda outputs, targets: F.cross_entropy(outputs, targets, label_smoothing=smoothing)
