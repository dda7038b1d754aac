"""Smooth-AP (Brown et al., ECCV 2020, "Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval")."""

from __future__ import annotations

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between
from surrogate_bench.losses.ap_surrogates import ScoreMemory, ap_task_reason, standardise, smooth_ap


class SmoothAP(Method):
    """Smooth-AP (Brown et al., ECCV 2020): 1 - AP with sigmoid-relaxed ranks of the task's decoded score.

    The score s (mnist-ap: logit difference) is standardised over the ranked list (z) and mapped to tanh(z / 2)
    in (-1, 1), like the paper's cosines of L2-normalised embeddings; both maps keep the ranking (AP unchanged).
    Without the standardisation the raw score drifts large, tanh saturates and training collapsed (mnist-ap quick:
    AP 0.22 / 0.06, seeds 0 / 1).
    ``queue`` > 0 adds a memory of the last ``queue`` training scores (no gradient) to the ranked list: a batch
    without positives otherwise gives zero loss (at mnist-ap's paper batch 16, about 19% of batches).
    """

    name = "smooth-ap"
    params = {"temperature": 0.01, "queue": 0}
    param_domains = {"temperature": between(0, 1e6, low_open=True), "queue": between(0, 1_000_000)}

    def supports(self, task: Task) -> str | None:
        return ap_task_reason(self.name, task)

    def make_loss(self, task: Task) -> LossFn:
        temperature, memory = float(self.p["temperature"]), ScoreMemory(int(self.p["queue"]))

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            scores, labels, weights = memory.extend(task.decode(outputs), targets > 0)
            return smooth_ap(torch.tanh(standardise(scores, weights) / 2), labels, weights, temperature)

        return loss
