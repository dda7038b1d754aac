"""Soft top-1 from differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022; the diffsort library)."""

from __future__ import annotations

import torch
from diffsort import DiffSortNet
from torch import Tensor

from surrogate_bench.plugins.contracts import LossFn, Method, Task, between, one_of


class SoftTop1(Method):
    """Soft top-1 by diffsort (Petersen et al., ICML 2021): -log P(target sorted first) in a soft permutation.

    A differentiable stand-in for top-1 accuracy: the soft permutation's column for the last (largest)
    position gives each class's probability of ranking first.
    """

    name = "soft-top1"
    params = {"steepness": 10.0, "network": "bitonic", "distribution": "cauchy"}
    param_domains = {"steepness": between(0, 1e6, low_open=True), "network": one_of("bitonic", "odd_even"), "distribution": one_of("cauchy", "logistic", "logistic_phi", "gaussian", "reciprocal", "optimal")}

    def supports(self, task: Task) -> str | None:
        if task.output_kind != "logits" or not task.metric_name.lower().startswith("acc") or task.num_classes < 2:
            return f"soft-top1 needs class logits scored by accuracy; {task.name} has {task.metric_name} " \
                   f"on {task.output_kind}"
        return None

    def make_loss(self, task: Task) -> LossFn:
        nets: dict[str, DiffSortNet] = {}

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            key = str(outputs.device)
            if key not in nets:
                nets[key] = DiffSortNet(self.p["network"], outputs.shape[-1], device=key,
                                        steepness=float(self.p["steepness"]), distribution=self.p["distribution"])
            _, perm = nets[key](outputs)  # perm[b, i, j]: weight of class i at ascending position j
            p_top = perm[:, :, -1].gather(-1, targets[:, None]).squeeze(-1)
            return -torch.log(p_top.clamp_min(1e-8)).mean()

        return loss
