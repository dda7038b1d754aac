"""Cross-entropy on logits: the usual baseline for classification and AP tasks."""

from __future__ import annotations

import torch.nn.functional as F

from surrogate_bench.plugins.contracts import UNIT, LossFn, Method, Task


class CrossEntropy(Method):
    """Softmax cross-entropy against class indices (2-class for mnist-ap, as in the UniLoss paper)."""

    name = "ce"
    params = {"label_smoothing": 0.0}
    param_domains = {"label_smoothing": UNIT}

    def supports(self, task: Task) -> str | None:
        return None if task.output_kind == "logits" else f"ce needs class logits; {task.name} outputs {task.output_kind}"

    def make_loss(self, task: Task) -> LossFn:
        smoothing = float(self.p["label_smoothing"])
        return lambda outputs, targets: F.cross_entropy(outputs, targets, label_smoothing=smoothing)
