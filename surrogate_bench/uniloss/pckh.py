"""PCKh refactored: per heatmap, (pixel inside the PCKh radius, pixel outside) pairs.

A visible joint is correct iff its heatmap's argmax lies within ``radius_factor x head size`` of the
joint, i.e. iff some inside pixel beats every outside pixel: g = any over inside of all over outside.
Targets: (N, J, C) float with [..., 0:2] the joint (x, y) in heatmap pixels, [..., 2] visibility,
[..., 3] head size in heatmap pixels; a pixel's coordinates are its integer (column, row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..plugins.errors import SuiteError
from .interpolation import AnchorSpec
from .refactoring import Comparisons, Refactoring


def _gumbel_argmax(log_weights: Tensor) -> Tensor:
    """One sample per row, P(i) ∝ exp(log_weights[i]), fixed shape and no host sync (Gumbel-max)."""
    u = torch.rand_like(log_weights).clamp_min(1e-20)
    return (log_weights - torch.log(-torch.log(u))).argmax(-1)


_BIT_MASKS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def _random_bits(shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Independent fair random bits: one random byte per 8 bits (an eighth of the draws of ``rand < 0.5``)."""
    n = 1
    for d in shape:
        n *= d
    raw = torch.randint(0, 256, ((n + 7) // 8,), dtype=torch.uint8, device=device)
    return (raw[:, None] & _BIT_MASKS.to(device)).ne(0).view(-1)[:n].view(shape)


@dataclass
class PCKhRefactoring(Refactoring):
    """Comparisons ``c[k, i, j] = s_k[in_i] - s_k[j]``: shape (K = N*J, M, H*W).

    The M pixels nearest the joint are the inside candidates (fixed shape, no sync); those within the
    radius are valid rows, pixels beyond it are valid columns. With at most ``max_inside`` pixels
    inside the radius g is exact; beyond that the farthest inside pixels are left out of both sets.
    Anchors are structured (never a dense T x l matrix): see :meth:`anchors`.
    """

    radius_factor: float = 0.5
    max_inside: int = 64
    structured = True  # class attribute (no annotation): not a dataclass field

    def comparisons(self, outputs: Tensor, targets: Tensor) -> Comparisons:
        n, j, h, w = outputs.shape
        s = outputs.reshape(n * j, h * w)
        t = targets.reshape(n * j, -1).double()
        ys, xs = torch.meshgrid(torch.arange(h, device=s.device, dtype=torch.float64),
                                torch.arange(w, device=s.device, dtype=torch.float64), indexing="ij")
        dist = ((xs.reshape(1, -1) - t[:, 0:1]) ** 2 + (ys.reshape(1, -1) - t[:, 1:2]) ** 2).sqrt()  # (K, m)
        far = dist / t[:, 3:4] > self.radius_factor  # divided first, as metrics.pckh_correct does
        vis = t[:, 2] > 0
        idx = (-dist).topk(min(self.max_inside, h * w), dim=1).indices
        inside = ~far.gather(1, idx) & vis[:, None]  # (K, M)
        outside = far & vis[:, None]  # (K, m)
        c = s.gather(1, idx)[:, :, None] - s[:, None, :]
        valid = inside[:, :, None] & outside[:, None, :]
        return Comparisons(c, valid, {"inside": inside, "outside": outside, "visible": vis})

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        inside, outside, vis = cmp.context["inside"], cmp.context["outside"], cmp.context["visible"]
        row_ok = (binaries | ~outside[:, None, :]).all(-1) & inside  # (T, K, M)
        correct = row_ok.any(-1) & vis  # (T, K)
        return correct.sum(-1).float() / vis.sum().clamp_min(1)

    def anchors(self, cmp: Comparisons, u: Tensor, spec: AnchorSpec,
                record: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Best, good (truth with random valid bits flipped), nearby (current with all wrong bits of one
        random pixel flipped toward the truth, as in the paper), bad (uniformly random bits).

        ``record`` (tests, tiny sizes only) receives the same anchors as dense (T, *S) configurations.
        """
        if spec.nearby_flips != 1:
            raise SuiteError("uniloss on PCKh: a nearby anchor flips the bits of exactly one pixel (nearby_flips=1)")
        inside, outside, vis = cmp.context["inside"], cmp.context["outside"], cmp.context["visible"]
        k_maps, m_in, m = cmp.shape
        dev = u.device
        n_vis = vis.sum().clamp_min(1).to(u.dtype)
        u_flat = u.reshape(-1)
        neg = u.clamp_max(0.0)  # the wrong part of u (c <= 0)
        with torch.no_grad():
            wrong = cmp.valid & ~self.signs(cmp)
            lost = wrong.sum(-1)  # (K, M): outside pixels beating each inside pixel
            correct = (inside & (lost == 0)).any(-1)  # (K,)
            base = (correct & vis).sum().to(u.dtype)

        # best
        if record is not None:
            record.append(self.truth(cmp)[None])
        dots = [u.sum()[None]]
        values = [((inside.any(-1) & vis).sum().to(u.dtype) / n_vis)[None]]

        # good: F uniformly random valid bits of the truth flipped
        if spec.n_good > 0 and spec.good_flips > 0:
            with torch.no_grad():
                shape = (spec.n_good, spec.good_flips)
                pairs = inside.sum(-1) * outside.sum(-1)  # (K,)
                kk = _gumbel_argmax(pairs.to(u.dtype).log().expand(*shape, -1))
                ii = _gumbel_argmax(inside.to(u.dtype).log()[kk])
                jj = _gumbel_argmax(outside.to(u.dtype).log()[kk])
                flat = (kk * m_in + ii) * m + jj
                dup = (flat[:, :, None] == flat[:, None, :]).tril(-1).any(-1)  # keep first occurrence
                flip = cmp.valid.reshape(-1)[flat] & ~dup
                hits = torch.zeros(spec.n_good, k_maps * m_in, device=dev).scatter_add_(
                    1, kk * m_in + ii, flip.to(torch.float32))
                ok = ((hits.view(spec.n_good, k_maps, m_in) == 0) & inside).any(-1) & vis
                values.append(ok.sum(-1).to(u.dtype) / n_vis)
            dots.append(u.sum() - 2.0 * (u_flat[flat] * flip).sum(-1))
            if record is not None:
                flips = torch.zeros(spec.n_good, u.numel(), dtype=torch.int64, device=dev).scatter_add_(
                    1, flat, flip.long()) > 0
                record.append(((cmp.valid.reshape(-1) ^ flips) & cmp.valid.reshape(-1)).view(-1, *cmp.shape))

        # nearby: the current configuration with one pixel's wrong bits set right
        if spec.n_nearby > 0:
            with torch.no_grad():
                cand = torch.cat([(lost > 0).reshape(-1), wrong.any(1).reshape(-1)])  # rows, then columns
                pick = _gumbel_argmax(cand.to(u.dtype).log().expand(spec.n_nearby, -1))
                is_row = pick < k_maps * m_in
                kk = torch.where(is_row, pick // m_in, (pick - k_maps * m_in) // m)
                ii = (pick % m_in).clamp_max(m_in - 1)
                jj = (pick - k_maps * m_in).clamp_min(0) % m
                row_new = correct[kk] | inside[kk, ii]
                lost_after = lost[kk] - wrong[kk, :, jj].to(lost.dtype)  # (T, M)
                col_new = (inside[kk] & (lost_after == 0)).any(-1)
                new = torch.where(is_row, row_new, col_new)
                values.append((base - (correct[kk] & vis[kk]).to(u.dtype) + (new & vis[kk]).to(u.dtype)) / n_vis)
            pix_neg = torch.cat([neg.sum(-1).reshape(-1), neg.sum(1).reshape(-1)])
            dots.append(u.abs().sum() + 2.0 * pix_neg[pick])
            if record is not None:
                t = torch.arange(spec.n_nearby, device=dev)
                fix = torch.zeros(spec.n_nearby, *cmp.shape, dtype=torch.bool, device=dev)
                fix[t[is_row], kk[is_row], ii[is_row], :] = True
                fix[t[~is_row], kk[~is_row], :, jj[~is_row]] = True
                record.append(self.signs(cmp) | (fix & cmp.valid))

        # bad: uniformly random configurations (dense random bits; O(T x l) but never T x l floats kept)
        if spec.n_bad > 0:
            bits = _random_bits((spec.n_bad, *cmp.shape), dev)
            with torch.no_grad():
                row_ok = (bits | ~outside[:, None, :]).all(-1) & inside
                values.append((row_ok.any(-1) & vis).sum(-1).to(u.dtype) / n_vis)
            dots.append(2.0 * (bits.view(spec.n_bad, -1).to(u.dtype) @ u_flat) - u.sum())
            if record is not None:
                record.append(bits & cmp.valid)
        return torch.cat(dots), torch.cat(values)
