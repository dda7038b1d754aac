"""FastAP (Cakir, He, Xia, Kulis, Sclaroff, CVPR 2019, "Deep Metric Learning to Rank"): histogram-binned AP."""

from __future__ import annotations

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between
from surrogate_bench.losses.ap_surrogates import ScoreMemory, ap_task_reason, standardise, fast_ap


class FastAP(Method):
    """FastAP (Cakir et al., CVPR 2019): 1 - AP from soft distance histograms of the task's decoded score.

    The score s, standardised over the ranked list (z), is mapped to the distance 2 - 2 tanh(z / 2) in (0, 4):
    the squared distance of unit vectors with cosine tanh(z / 2), the paper's (and pytorch-metric-learning's) range. ``queue`` as in smooth-ap:
    a memory of past scores (no gradient) so that batches without positives still rank.
    """

    name = "fastap"
    params = {"bins": 10, "queue": 0}
    param_domains = {"bins": between(1, 10_000), "queue": between(0, 1_000_000)}

    def supports(self, task: Task) -> str | None:
        return ap_task_reason(self.name, task)

    def make_loss(self, task: Task) -> LossFn:
        bins, memory = int(self.p["bins"]), ScoreMemory(int(self.p["queue"]))

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            scores, labels, weights = memory.extend(task.decode(outputs), targets > 0)
            return fast_ap(2.0 - 2.0 * torch.tanh(standardise(scores, weights) / 2), labels, weights, bins)

        return loss
