"""Top-1 accuracy refactored: a sample is correct iff its target score beats every other class score."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .refactoring import Comparisons, Refactoring


@dataclass
class AccuracyRefactoring(Refactoring):
    """Comparisons ``c[k, i] = s[i, y_i] - s[i, j_k(i)]`` over the other classes j_k: shape (p-1, n).

    Class-major, so that g's "all binaries of a sample" is a reduction over an outer dimension (a
    vectorised pass, unlike a reduction over a short innermost one). ``top_k`` keeps only each sample's
    k highest-scoring other classes (the release uses 20 for CIFAR-100); g stays exact for real scores
    because the kept classes include the strongest rival.
    """

    top_k: int | None = None

    def comparisons(self, outputs: Tensor, targets: Tensor) -> Comparisons:
        n, p = outputs.shape
        y = targets.reshape(-1).long()
        by_class = outputs.t()  # (p, n) view
        target_score = by_class.gather(0, y[None, :])
        k = p - 1 if self.top_k is None or self.top_k <= 0 else min(self.top_k, p - 1)
        if k < p - 1:
            rivals = by_class.detach().scatter(0, y[None, :], float("-inf")).topk(k, dim=0).indices
        else:
            j = torch.arange(p - 1, device=outputs.device)[:, None]
            rivals = j + (j >= y[None, :])  # every class but the target, no data-dependent shape
        c = target_score - by_class.gather(0, rivals)
        return Comparisons(c, torch.ones_like(c, dtype=torch.bool))

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        ok = (binaries | ~cmp.valid).view(torch.uint8).amin(-2)  # (T, n): 1 iff every binary holds
        return ok.sum(-1, dtype=torch.float32) / ok.shape[-1]
