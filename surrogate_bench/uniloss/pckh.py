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
    release_anchors: bool = False  # the pose release's per-map anchors (see release_anchors_dots)
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
        With ``release_anchors`` the pose release's anchors are used instead (:func:`release_anchor_dots`).
        """
        if self.release_anchors:
            return release_anchor_dots(cmp, u, spec, record)
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


def release_good_flips(n_inside: Tensor) -> Tensor:
    """The pose release's number of (inside, outside) pairs a good anchor sets wrong: max(int(3.6 n - 28), 2 n)."""
    return torch.maximum((3.6 * n_inside.double() - 28).trunc(), 2.0 * n_inside.double()).long()


def _uniform_index(mask: Tensor, count: int) -> Tensor:
    """(K, count) uniform picks among the True entries of each row of ``mask`` (K, L) (inverse CDF; an
    empty row gives index 0, which callers mask)."""
    cdf = mask.cumsum(-1, dtype=torch.float32)
    draw = torch.rand(mask.shape[0], count, device=mask.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, draw.contiguous(), right=True).clamp_max_(mask.shape[1] - 1)


def release_anchor_dots(cmp: Comparisons, u: Tensor, spec: AnchorSpec,
                        record: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The UniLoss pose release's anchors, per heatmap, then combined across heatmaps.

    Per map (release ``_generate_bi_points`` + ``Nearby_sampling``): the truth; ``n_good`` truths with
    :func:`release_good_flips` random (inside, outside) pairs set wrong (drawn with replacement); ``n_bad``
    uniformly random configurations; ``n_nearby // 2`` copies of the current configuration with one random
    inside pixel's whole row set right, and the rest with one random outside pixel's whole column set wrong;
    the current configuration. Each map's list is shuffled independently and anchor t of the batch is the
    t-th entry of every map (squared distances add over maps, values average over visible maps), as the
    release does. Returns (a_t . u, g(a_t)) like :meth:`PCKhRefactoring.anchors`.
    """
    inside, outside, vis = cmp.context["inside"], cmp.context["outside"], cmp.context["visible"]
    k_maps, m_in, m = cmp.shape
    dev = u.device
    n_good, n_bad = spec.n_good, spec.n_bad
    n_rows = spec.n_nearby // 2
    n_cols = spec.n_nearby - n_rows
    f_max = int(release_good_flips(torch.tensor(m_in)))
    total = u.reshape(k_maps, -1).sum(-1)  # a . u of the truth (u is 0 on invalid entries)
    current = u.abs().reshape(k_maps, -1).sum(-1)  # a . u of the current configuration
    with torch.no_grad():
        n_in = inside.sum(-1)
        has_out = outside.any(-1)
        wrong = cmp.valid & ~((cmp.c.detach() > 0) & cmp.valid)
        correct = (inside & (wrong.sum(-1) == 0)).any(-1) & vis
        # good: F_k pairs per map, with replacement; a pair drawn twice is set wrong once
        rows = (torch.rand(k_maps, n_good, f_max, device=dev) * n_in[:, None, None]).long()  # inside: a prefix
        cols = _uniform_index(outside, n_good * f_max).view(k_maps, n_good, f_max)
        used = (torch.arange(f_max, device=dev) < release_good_flips(n_in)[:, None, None]) & has_out[:, None, None]
        flat = torch.where(used, rows * m + cols, -1).sort(-1).values
        first = flat >= 0
        first[..., 1:] &= flat[..., 1:] != flat[..., :-1]
        flat = flat.clamp_min(0)
        hits = torch.zeros(k_maps, n_good, m_in, device=dev).scatter_add_(2, flat // m, first.float())
        good_val = ((hits == 0) & inside[:, None]).any(-1) & vis[:, None]
        bad_bits = torch.rand(k_maps, n_bad, m_in, m, device=dev) < 0.5
        bad_val = ((bad_bits | ~outside[:, None, None]).all(-1) & inside[:, None]).any(-1) & vis[:, None]
        row_pick = (torch.rand(k_maps, n_rows, device=dev) * n_in[:, None]).long().clamp_max(m_in - 1)
        col_pick = _uniform_index(outside, n_cols)
        row_val = (n_in > 0)[:, None].expand(-1, n_rows) & vis[:, None]
        col_val = (correct & ~has_out)[:, None].expand(-1, n_cols)
        best_val = inside.any(-1) & vis
        values = torch.cat([best_val[:, None], good_val, bad_val, row_val, col_val, correct[:, None]], 1)
        perm = torch.rand(values.shape, device=dev).argsort(-1)
    u_maps = u.reshape(k_maps, -1)
    good_dot = total[:, None] - 2.0 * (u_maps.gather(1, flat.view(k_maps, -1)).view(flat.shape) * first).sum(-1)
    bad_dot = 2.0 * torch.einsum("kbl,kl->kb", bad_bits.view(k_maps, n_bad, -1).to(u.dtype), u_maps) - total[:, None]
    row_dot = current[:, None] + 2.0 * u.clamp_max(0.0).sum(-1).gather(1, row_pick)
    col_dot = current[:, None] - 2.0 * u.clamp_min(0.0).sum(1).gather(1, col_pick) * has_out[:, None]
    dots = torch.cat([total[:, None], good_dot, bad_dot, row_dot, col_dot, current[:, None]], 1)
    if record is not None:
        signs = (cmp.c.detach() > 0) & cmp.valid
        good = torch.zeros(k_maps, n_good, m_in * m, dtype=torch.int64, device=dev).scatter_add_(2, flat, first.long())
        good = cmp.valid[:, None] & (good.view(k_maps, n_good, m_in, m) == 0)
        ar = torch.arange(k_maps, device=dev)[:, None]
        row_cfg = signs[:, None].repeat(1, n_rows, 1, 1)
        row_cfg[ar, torch.arange(n_rows, device=dev), row_pick] |= outside[:, None, :].expand(-1, n_rows, -1) \
            & inside.gather(1, row_pick)[..., None]
        col_cfg = signs[:, None].repeat(1, n_cols, 1, 1)
        col_cfg[ar, torch.arange(n_cols, device=dev), :, col_pick] &= ~has_out[:, None, None]
        cfg = torch.cat([cmp.valid[:, None], good, bad_bits & cmp.valid[:, None], row_cfg, col_cfg, signs[:, None]], 1)
        record.append(cfg.gather(1, perm[..., None, None].expand(-1, -1, m_in, m)).transpose(0, 1))
    n_vis = vis.sum().clamp_min(1).to(u.dtype)
    return dots.gather(1, perm).sum(0), values.gather(1, perm).sum(0).to(u.dtype) / n_vis
