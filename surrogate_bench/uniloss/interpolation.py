"""Sigmoid relaxation of the binaries and inverse-distance-weighted (IDW) interpolation of g over anchors.

Anchors are ±1 configurations (padding 0); for them ``||a - u||^2 = l - 2 a.u + ||u||^2``, so the
distances to all T anchors need only the T dot products ``a_t . u`` (one matrix-vector product in
the dense case, closed forms in structured ones) plus ``||u||^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .refactoring import Comparisons, Refactoring

EPS = 1e-6  # distance floor: IDW is exact (to ~EPS) at an anchor and finite everywhere


@dataclass(frozen=True)
class AnchorSpec:
    """How many anchors of each kind, and how many bits they flip (the paper: 16 each, 1 flip)."""

    n_good: int = 16
    good_flips: int = 1
    n_nearby: int = 16
    nearby_flips: int = 1
    n_bad: int = 16

    @property
    def total(self) -> int:
        return 1 + self.n_good + self.n_nearby + self.n_bad


def relax(cmp: "Comparisons", temperature: float) -> Tensor:
    """Relaxed binaries in [-1, 1]: ``2 sigmoid(c / T) - 1 = tanh(c / 2T)``; 0 on padding."""
    return torch.tanh(cmp.c * (0.5 / temperature)) * cmp.valid


def random_positions(candidates: Tensor, n: int, k: int) -> tuple[Tensor, Tensor]:
    """(n, k) random positions among the True entries of ``candidates`` (l,), and whether each is a real,
    first-time pick. Inverse-CDF sampling (O(l + n k log l), fixed shape, no host sync); repeats within
    a row and picks from an empty candidate set are marked False."""
    cdf = candidates.cumsum(0)
    draw = (torch.rand(n, k, device=candidates.device) * cdf[-1]).floor()
    idx = torch.searchsorted(cdf, draw.to(cdf.dtype), right=True).clamp_max(candidates.numel() - 1)
    first = ~(idx[:, :, None] == idx[:, None, :]).tril(-1).any(-1)
    return idx, candidates[idx] & first


def sample_dense_anchors(truth: Tensor, current: Tensor, valid: Tensor, spec: AnchorSpec) -> Tensor:
    """(T, l) bool anchors: the best (truth), good (truth with random valid bits flipped), nearby (current
    with random wrong bits flipped toward the truth), bad (uniformly random; g ignores invalid positions)."""
    truth, current, valid = truth.flatten(), current.flatten(), valid.flatten()
    l = truth.numel()
    parts = [truth[None]]
    if spec.n_good and spec.good_flips and l:
        idx, ok = random_positions(valid, spec.n_good, spec.good_flips)
        parts.append(truth.expand(spec.n_good, l).scatter(1, idx, truth[idx] ^ ok))
    elif spec.n_good:
        parts.append(truth.expand(spec.n_good, l))
    if spec.n_nearby and spec.nearby_flips and l:
        wrong = valid & (current != truth)
        idx, ok = random_positions(wrong, spec.n_nearby, spec.nearby_flips)
        parts.append(current.expand(spec.n_nearby, l).scatter(1, idx, torch.where(ok, truth[idx], current[idx])))
    elif spec.n_nearby:
        parts.append(current.expand(spec.n_nearby, l))
    if spec.n_bad:
        parts.append(torch.rand(spec.n_bad, l, device=truth.device) < 0.5)
    return torch.cat(parts)


def dense_anchor_dots(ref: "Refactoring", cmp: "Comparisons", u: Tensor, spec: AnchorSpec) -> tuple[Tensor, Tensor]:
    """Dense anchors as a (T x l) ±1 matrix: dots = A @ u = 2 [A > 0] @ u - sum(u) (u is 0 on padding)."""
    with torch.no_grad():
        anchors = sample_dense_anchors(ref.truth(cmp), ref.signs(cmp), cmp.valid, spec)
        values = ref.g(anchors.view(-1, *cmp.shape), cmp).to(u.dtype)
    u_flat = u.reshape(-1)
    return 2.0 * (anchors.to(u.dtype) @ u_flat) - u_flat.sum(), values


def idw_from_dots(dots: Tensor, values: Tensor, u_sq: Tensor, n_valid: Tensor) -> Tensor:
    """IDW interpolation ``sum g_t/d_t / sum 1/d_t`` with ``d_t^2 = l - 2 a_t.u + ||u||^2`` (Euclidean)."""
    d = (n_valid - 2.0 * dots + u_sq).clamp_min(EPS * EPS).sqrt()
    w = d.detach().min() / d  # rescaling by a constant leaves the ratio (and its gradient) unchanged
    return (w * values).sum() / w.sum()


def interpolate(ref: "Refactoring", cmp: "Comparisons", u: Tensor, spec: AnchorSpec) -> Tensor:
    """g~(u): the interpolated metric at relaxed binaries u over freshly sampled anchors."""
    dots, values = ref.anchors(cmp, u, spec)
    n_valid = cmp.valid.sum().to(u.dtype)
    return idw_from_dots(dots, values, (u * u).sum(), n_valid)


def uniloss_value(ref: "Refactoring", outputs: Tensor, targets: Tensor, spec: AnchorSpec,
                  temperature: float = 1.0) -> Tensor:
    """The UniLoss estimate of the batch metric (0-d, differentiable); the loss is its negative."""
    cmp = ref.comparisons(outputs, targets)
    return interpolate(ref, cmp, relax(cmp, temperature), spec)
