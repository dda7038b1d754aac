"""Top-1 accuracy refactored: a sample is correct iff its target score beats every other class score."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .refactoring import Comparisons, Refactoring


@dataclass
class AccuracyRefactoring(Refactoring):
    """Comparisons ``c[i, k] = s[i, y_i] - s[i, j_k]`` over the other classes j_k: shape (n, p-1).

    ``top_k`` keeps only each sample's k highest-scoring other classes (the release uses 20 for
    CIFAR-100); g stays exact for real scores because the kept classes include the strongest rival.
    """

    top_k: int | None = None

    def comparisons(self, outputs: Tensor, targets: Tensor) -> Comparisons:
        n, p = outputs.shape
        y = targets.reshape(-1).long()
        target_score = outputs.gather(1, y[:, None])
        k = p - 1 if self.top_k is None or self.top_k <= 0 else min(self.top_k, p - 1)
        if k < p - 1:
            rivals = outputs.detach().scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices
        else:
            j = torch.arange(p - 1, device=outputs.device).expand(n, -1)
            rivals = j + (j >= y[:, None])  # every class but the target, no data-dependent shape
        c = target_score - outputs.gather(1, rivals)
        return Comparisons(c, torch.ones_like(c, dtype=torch.bool))

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        return (binaries | ~cmp.valid).all(-1).float().mean(-1)
