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
    cdf = candidates.cumsum(0, dtype=torch.float32)  # integral counts: exact below 2^24 candidates
    draw = torch.rand(n, k, device=candidates.device).mul_(cdf[-1])  # #(cdf <= draw) = #(cdf <= floor(draw))
    idx = torch.searchsorted(cdf, draw, right=True).clamp_max_(candidates.numel() - 1)
    ok = candidates[idx]
    if k > 1:  # a single pick per row cannot repeat
        ok &= ~(idx[:, :, None] == idx[:, None, :]).tril(-1).any(-1)
    return idx, ok


_SHIFTS: dict[torch.device, Tensor] = {}  # 0..63 per device, made once (no per-step host-to-device copy)


def random_bits(n: int, l: int, device: torch.device) -> Tensor:
    """(n, l) uniformly random bools, 64 per random draw (a draw per bit is most of the anchors' cost)."""
    words = torch.randint(-(1 << 63), (1 << 63) - 1, (n, (l + 63) // 64, 1), device=device)
    shifts = _SHIFTS.get(device)
    if shifts is None:
        shifts = _SHIFTS[device] = torch.arange(64, device=device)
    return ((words >> shifts) & 1).to(torch.uint8).view(torch.bool).view(n, -1)[:, :l]


def _picked(n: int, l: int, idx: Tensor, ok: Tensor) -> Tensor:
    """(n, l) bool mask, True at the real picks ``idx[ok]`` (a plain scatter of ``ok`` would let a row's
    repeated, not-ok pick overwrite its first one in an unspecified order)."""
    if idx.shape[1] == 1:
        return torch.zeros(n, l, dtype=torch.bool, device=idx.device).scatter_(1, idx, ok)
    return torch.zeros(n, l, dtype=torch.int32, device=idx.device).scatter_add_(1, idx, ok.int()) > 0


def sample_dense_anchors(truth: Tensor, current: Tensor, valid: Tensor, spec: AnchorSpec) -> Tensor:
    """(T, l) bool anchors: the best (truth), good (truth with random valid bits flipped), nearby (current
    with random wrong bits flipped toward the truth), bad (uniformly random; g ignores invalid positions).

    Built as one (T, l) matrix of base rows plus one scatter of flipped bits per anchor kind (few ops: the
    step's cost on CPU and GPU alike is the number of ops, not their size)."""
    truth, current, valid = truth.flatten(), current.flatten(), valid.flatten()
    l = truth.numel()
    n_good = spec.n_good if spec.good_flips and l else 0
    n_near = spec.n_nearby if spec.nearby_flips and l else 0
    rows = [truth[None].expand(1 + spec.n_good, l), current[None].expand(spec.n_nearby, l)]
    if spec.n_bad:
        rows.append(random_bits(spec.n_bad, l, truth.device))
    anchors = torch.cat(rows)
    if n_good:
        idx, ok = random_positions(valid, n_good, spec.good_flips)
        anchors[1:1 + n_good].bitwise_xor_(_picked(n_good, l, idx, ok))
    if n_near:  # truth is on at every valid bit (oriented comparisons): setting a wrong bit right turns it on
        idx, ok = random_positions(valid & ~current, n_near, spec.nearby_flips)
        anchors[1 + spec.n_good:1 + spec.n_good + n_near].bitwise_or_(_picked(n_near, l, idx, ok))
    return anchors


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
    """g~(u): the interpolated metric at relaxed binaries u over freshly sampled anchors (autograd path)."""
    dots, values = ref.anchors(cmp, u, spec)
    n_valid = cmp.valid.sum().to(u.dtype)
    return idw_from_dots(dots, values, (u * u).sum(), n_valid)


def dense_idw(c: Tensor, valid: Tensor, anchors: Tensor, values: Tensor, scale: float, gain: float = 1.0,
              release_sign: bool = False) -> Tensor:
    """g~ over dense anchors from the comparisons c, relaxation included, with a closed-form gradient.

    Same value and gradient as ``idw_from_dots(dense_anchor_dots(relax(c)))`` under autograd, in a
    couple of dozen ops instead of a hundred (on CPU and GPU alike the cost is the op count). With B
    the {0,1} anchors and u = tanh(c scale) on valid entries (0 elsewhere):
    ``d_t^2 = ||u + 1||^2 - 4 (B u)_t`` over valid entries, and with
    ``beta_t = (g_t - g~) w_t / (d_t^2 sum w)`` (0 where d was clamped),
    ``dg~/du = 2 B^T beta - sum(beta) (u + 1)``. The gradient G = gain dg~/dc is computed without
    autograd and attached as ``s + (g~ - s)`` with ``s = sum(c G)``: the value is g~ and autograd sees
    dvalue/dc = G through two cheap built-in nodes (no Python backward). ``gain`` scales G only.

    ``release_sign`` reproduces the released classification / AP code's backward, which writes the
    quotient rule's second term with the wrong sign: g~ = N / D with N = sum g_t w_t, D = sum w_t has
    dg~/du = N'/D - g~ D'/D, the release computes N'/D + g~ D'/D, i.e. ``beta_t`` with
    ``(g_t + g~)`` in place of ``(g_t - g~)``. The value is unchanged.
    """
    need_grad = torch.is_grad_enabled() and c.requires_grad
    with torch.no_grad():
        dtype = torch.promote_types(c.dtype, torch.float32)
        mask = valid.reshape(-1).view(torch.uint8).to(dtype)  # via uint8: bool -> float is a slow path
        bits = anchors.view(torch.uint8).to(dtype)
        t = torch.tanh(c.reshape(-1).to(dtype) * scale)
        u = t * mask
        up = u + mask  # u + 1 on valid entries, 0 elsewhere
        d2 = torch.addmv(up.dot(up).expand(bits.shape[0]), bits, u, alpha=-4.0)  # ||a_t - u||^2, (T,)
        d2c = d2.clamp_min(EPS * EPS)
        d = d2c.sqrt()
        w = d.min() / d  # rescaled weights: the ratio is unchanged, overflow impossible
        w_sum = w.sum()
        vals = values.to(dtype)
        g = w.dot(vals) / w_sum
        if not need_grad:
            return g
        beta = ((vals + g) if release_sign else (vals - g)) * w / (d2c * w_sum) * (d2 > EPS * EPS)
        grad_u = torch.addmv(up * -beta.sum(), bits.t(), beta, alpha=2.0)
        grad_c = (grad_u * (mask - u * u) * (scale * gain)).view(c.shape).to(c.dtype)  # du/dc = (1 - t^2) scale
    s = (c * grad_c).sum()
    return s + (g.to(s.dtype) - s.detach())


def uniloss_value(ref: "Refactoring", outputs: Tensor, targets: Tensor, spec: AnchorSpec,
                  temperature: float = 1.0, gain: float = 1.0, release_sign: bool = False) -> Tensor:
    """The UniLoss estimate of the batch metric (0-d, differentiable); the loss is its negative.

    ``gain`` scales the gradient, not the value. Dense refactorings take the fused :func:`dense_idw`;
    structured ones (``ref.structured``, e.g. PCKh) their own closed-form anchor dots under autograd.
    ``release_sign`` (dense only): the released NumPy backward's sign error, see :func:`dense_idw`; the
    pose release differentiates with autograd, so structured refactorings keep the true gradient.
    """
    cmp = ref.comparisons(outputs, targets)
    if not ref.structured:
        with torch.no_grad():
            anchors = sample_dense_anchors(ref.truth(cmp), ref.signs(cmp), cmp.valid, spec)
            values = ref.g(anchors.view(-1, *cmp.shape), cmp)
        return dense_idw(cmp.c, cmp.valid, anchors, values, 0.5 / temperature, gain, release_sign)
    value = interpolate(ref, cmp, relax(cmp, temperature), spec)
    if gain != 1.0:
        value = value + (gain - 1.0) * (value - value.detach())
    return value
