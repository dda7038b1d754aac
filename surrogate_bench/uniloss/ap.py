"""Average precision refactored: one binary per (positive, negative) pair of the batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .refactoring import Comparisons, Refactoring


@dataclass
class AveragePrecisionRefactoring(Refactoring):
    """Comparisons ``c[i, j] = s_i - s_j`` in a fixed n x n shape, valid for positive i, negative j.

    g: each positive's rank among positives follows from how many negatives beat it (k_i); sorting
    the k_i gives AP = mean_r r / (r + k_(r)), the AP of any ranking consistent with the pairs
    (also defined for inconsistent, cyclic configurations). A batch without a positive has no
    binaries: g = 1 for every anchor (as in the released code), so the loss is constant and its
    gradient is exactly zero but still connected to the graph; likewise without a negative
    (AP = 1). Such a batch carries no information about AP; a pointwise fallback (e.g. CE) would
    mix another objective into the comparison of surrogates, so none is added.
    """

    decode: Callable[[Tensor], Tensor] = lambda outputs: outputs  # outputs -> positive-class score (n,)

    def comparisons(self, outputs: Tensor, targets: Tensor) -> Comparisons:
        s = self.decode(outputs).reshape(-1)
        pos = targets.reshape(-1).bool()
        c = s[:, None] - s[None, :]
        valid = pos[:, None] & ~pos[None, :]
        return Comparisons(c, valid, {"pos": pos})

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        pos = cmp.context["pos"]
        n = pos.numel()
        beaten_by = (cmp.valid & ~binaries).view(torch.uint8).sum(-1)  # (T, n): negatives above each positive
        big = torch.full_like(beaten_by, n + 1)
        k = torch.where(pos, beaten_by, big).sort(-1).values.to(torch.float64)
        r = torch.arange(1, n + 1, device=pos.device, dtype=torch.float64)
        n_pos = pos.sum()
        terms = torch.where(r <= n_pos, r / (r + k), 0.0)
        ap = terms.sum(-1) / n_pos.clamp_min(1)
        return torch.where(n_pos > 0, ap, 1.0).float()
