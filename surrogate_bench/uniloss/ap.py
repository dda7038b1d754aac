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
        neg = ~pos
        c = s[:, None] - s[None, :]
        valid = pos[:, None] & neg[None, :]
        return Comparisons(c, valid, {"pos": pos, "neg": neg, "n_pos": pos.sum(dtype=torch.float32)})

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        ctx = cmp.context
        n = ctx["pos"].numel()
        # k_i: negatives above positive i; negatives get +inf so that they sort last and add r/(r+inf) = 0
        k = (cmp.valid & ~binaries).view(torch.uint8).sum(-1, dtype=torch.float32)
        k = k.masked_fill(ctx["neg"], float("inf")).sort(-1).values
        r = _ranks(n, binaries.device)
        # no positive: 0 / 0 -> NaN -> 1 (AP of a batch without positives is defined as 1: constant loss)
        return ((r / (r + k)).sum(-1) / ctx["n_pos"]).nan_to_num_(nan=1.0)


_RANKS: dict[tuple[int, torch.device], Tensor] = {}


def _ranks(n: int, device: torch.device) -> Tensor:
    """1..n as float32 on ``device``, made once per (n, device)."""
    key = (n, device)
    if key not in _RANKS:
        _RANKS[key] = torch.arange(1, n + 1, device=device, dtype=torch.float32)
    return _RANKS[key]
