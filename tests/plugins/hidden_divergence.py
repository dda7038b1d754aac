"""Test-only method: a loss whose value stays finite (0) while its gradient turns every parameter NaN, as a
rank-based AP loss can on NaN scores -- the run must still fail as diverged."""

from __future__ import annotations

from surrogate_bench.plugins.contracts import LossFn, Method, Task


class HiddenDivergence(Method):
    """``nan_to_num(outputs * nan).sum()``: value 0, gradient NaN (0 * nan) into the network."""

    name = "hidden-divergence"

    def make_loss(self, task: Task) -> LossFn:
        def loss_fn(outputs, targets):
            return (outputs * float("nan")).nan_to_num(0.0).sum()

        return loss_fn
