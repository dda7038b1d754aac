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


@dataclass
class ReleaseAveragePrecisionRefactoring(AveragePrecisionRefactoring):
    """The released code's AP ``g`` (UniLoss release, ``ap_frombins``): a configuration whose pairs admit no
    ranking (a cycle) scores 0, and a consistent one scores *interpolated* (VOC all-point) AP.

    Vectorised: the pairs admit a ranking iff the sets of negatives each positive beats are nested (a
    bipartite orientation is acyclic iff it has no 4-cycle p > n > p' > n' > p, i.e. two positives whose
    beaten sets are not nested); sorted by size, each set must contain the next. Interpolated AP:
    mean over positives of the best precision at or below its rank.
    """

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        ctx = cmp.context
        n = ctx["pos"].numel()
        beaten = binaries & cmp.valid  # (T, n, n): positive i above negative j (rows of negatives are empty)
        size = beaten.view(torch.uint8).sum(-1, dtype=torch.int32)
        order = size.argsort(-1, descending=True)
        nested = beaten.gather(1, order[..., None].expand(-1, -1, n))
        consistent = ~(nested[:, 1:] & ~nested[:, :-1]).flatten(1).any(-1)
        k = (cmp.valid & ~binaries).view(torch.uint8).sum(-1, dtype=torch.float32)
        k = k.masked_fill(ctx["neg"], float("inf")).sort(-1).values
        precision = _ranks(n, binaries.device) / (_ranks(n, binaries.device) + k)  # 0 past the last positive
        envelope = precision.flip(-1).cummax(-1).values.flip(-1)
        ap = (envelope.sum(-1) / ctx["n_pos"]).nan_to_num_(nan=1.0)
        return ap * consistent
