"""Blackbox-differentiated AP (Rolinek et al., CVPR 2020, "Optimizing Rank-based Metrics with Blackbox
Differentiation"): exact ranks forward, interpolated ranks backward."""

from __future__ import annotations

from torch import Tensor

from surrogate_bench.plugins.contracts import POSITIVE, LossFn, Method, Task, between
from surrogate_bench.losses.ap_surrogates import ScoreMemory, ap_task_reason, standardise, blackbox_ap


class BlackboxAP(Method):
    """Blackbox AP (Rolinek et al., CVPR 2020): 1 - exact batch AP, ranks differentiated by interpolation.

    Ranks the task's decoded score standardised over the list, so that lambda's perturbation has a fixed scale
    (the paper ranks cosines of L2-normalised embeddings). λ=4: not checked against the paper's tables here.
    ``queue``: the paper's "score memory" (scores of past batches, no gradient) counted in items;
    ``margin``: the paper's score margin, applied deterministically (the authors' code draws it at random).
    """

    name = "blackbox-ap"
    params = {"lam": 4.0, "margin": 0.0, "queue": 0}
    param_domains = {"lam": POSITIVE, "margin": between(0, 1), "queue": between(0, 1_000_000)}

    def supports(self, task: Task) -> str | None:
        return ap_task_reason(self.name, task)

    def make_loss(self, task: Task) -> LossFn:
        lam, margin, memory = float(self.p["lam"]), float(self.p["margin"]), ScoreMemory(int(self.p["queue"]))

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            scores, labels, weights = memory.extend(task.decode(outputs), targets > 0)
            return blackbox_ap(standardise(scores, weights), labels, weights, lam, margin)

        return loss
