"""Test-only method: cross-entropy whose loss becomes NaN (or +inf) at a chosen global training step."""

from __future__ import annotations

import torch.nn.functional as F

from surrogate_bench.plugins.contracts import LossFn, Method, Task


class NonFiniteAt(Method):
    """Cross-entropy, plus NaN / inf at global step ``at_step`` (1-based) to test the non-finite guard."""

    name = "nonfinite-at"
    params = {"at_step": 20, "value": "nan"}

    def validate(self) -> None:
        from surrogate_bench.plugins.errors import SuiteError

        if self.p["value"] not in ("nan", "inf"):
            raise SuiteError(f"nonfinite-at: value must be nan or inf, got {self.p['value']!r}")

    def make_loss(self, task: Task) -> LossFn:
        bad, at, calls = float(self.p["value"]), int(self.p["at_step"]), [0]

        def loss_fn(outputs, targets):
            calls[0] += 1
            loss = F.cross_entropy(outputs, targets)
            return loss + bad if calls[0] == at else loss

        return loss_fn
