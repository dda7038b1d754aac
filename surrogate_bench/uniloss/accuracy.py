"""Top-1 accuracy refactored: a sample is correct iff its target score beats every other class score."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .refactoring import Comparisons, Refactoring


@dataclass
class AccuracyRefactoring(Refactoring):
    """Comparisons ``c[j, i] = s[i, y_i] - s[i, j]`` for every class j: shape (p, n), the target's own
    entry (0) marked invalid — two ops each way, and no data-dependent shape.

    Class-major, so that g's "all binaries of a sample" is a reduction over an outer dimension (a
    vectorised pass, unlike a reduction over a short innermost one). ``top_k`` keeps only each sample's
    k highest-scoring other classes, shape (k, n) (the release uses 20 for CIFAR-100); g stays exact
    for real scores because the kept classes include the strongest rival.
    """

    top_k: int | None = None

    def comparisons(self, outputs: Tensor, targets: Tensor) -> Comparisons:
        n, p = outputs.shape
        y = targets.reshape(1, -1).long()
        by_class = outputs.t()  # (p, n) view
        target_score = by_class.gather(0, y)
        k = p - 1 if self.top_k is None or self.top_k <= 0 else min(self.top_k, p - 1)
        if k < p - 1:
            rivals = by_class.detach().scatter(0, y, float("-inf")).topk(k, dim=0).indices
            c = target_score - by_class.gather(0, rivals)
            return Comparisons(c, torch.ones_like(c, dtype=torch.bool))
        return Comparisons(target_score - by_class, _classes(p, outputs.device) != y)

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        ok = (binaries | ~cmp.valid).view(torch.uint8).amin(-2)  # (T, n): 1 iff every binary holds
        return ok.sum(-1, dtype=torch.float32) / ok.shape[-1]


_CLASSES: dict[tuple[int, torch.device], Tensor] = {}


def _classes(p: int, device: torch.device) -> Tensor:
    """(p, 1) class indices on ``device``, made once per (p, device)."""
    key = (p, device)
    if key not in _CLASSES:
        _CLASSES[key] = torch.arange(p, device=device)[:, None]
    return _CLASSES[key]
