"""Differentiable Spearman correlation: soft ranks from diffsort sorting networks against exact ranks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffsort import DiffSortNet
from torch import Tensor


def exact_rank(x: Tensor) -> Tensor:
    """Ranks along the last dim, 0-based, ties averaged (``scipy.stats.rankdata(x) - 1``), vectorised."""
    s = x.sort(dim=-1).values.contiguous()
    xc = x.contiguous()
    lo = torch.searchsorted(s, xc, right=False)
    hi = torch.searchsorted(s, xc, right=True)
    return (lo + hi - 1).to(torch.promote_types(x.dtype, torch.float32)) / 2


def pearson(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson correlation along the last dim."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Exact Spearman correlation along the last dim (Pearson of tie-averaged ranks)."""
    return pearson(exact_rank(a), exact_rank(b))


@dataclass
class SoftRanker:
    """Soft ranks by a diffsort network; every setting pinned (diffsort's default changed across versions).

    Values are standardised per row before sorting so that ``steepness`` means the same at any loss scale
    (ranks are invariant to that affine map).
    """

    network: str = "bitonic"
    steepness: float = 10.0
    distribution: str = "logistic_phi"
    art_lambda: float = 0.25
    standardize: bool = True
    _nets: dict = field(default_factory=dict, repr=False)

    def sorter(self, size: int, device: torch.device) -> DiffSortNet:
        key = (size, str(device))
        if key not in self._nets:
            self._nets[key] = DiffSortNet(self.network, size, device=str(device), steepness=self.steepness,
                                          art_lambda=self.art_lambda, distribution=self.distribution)
        return self._nets[key]

    def __call__(self, x: Tensor) -> Tensor:
        """Soft 0-based ascending ranks of each row of a (G, n) matrix."""
        if self.standardize:
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-8)
        _, perm = self.sorter(x.shape[-1], x.device)(x)  # perm[g, i, j]: weight of input i at position j
        positions = torch.arange(x.shape[-1], device=x.device, dtype=perm.dtype)
        return (perm * positions).sum(-1)


def soft_spearman(loss: Tensor, metric: Tensor, ranker: SoftRanker) -> Tensor:
    """Differentiable Spearman of (G, n) loss values (soft ranks) with metric values (exact ranks), per row."""
    return pearson(ranker(loss), exact_rank(metric.to(loss.dtype)))
