"""Heatmap helpers for pose tasks: Gaussian target maps and argmax decoding, vectorised over N x J.

Coordinates are heatmap pixels with pixel centres at integer coordinates (x = column, y = row).
"""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_heatmaps(xy: Tensor, visible: Tensor, size: tuple[int, int], sigma: float,
                      radius: float | None = None) -> Tensor:
    """N x J x 2 joints -> N x J x H x W Gaussian bumps with peak 1 at the joint's nearest pixel.

    As in Newell et al. / MMPose: the centre is rounded to a pixel, the bump is cut to a square
    window of half-width ``radius`` (default 3 sigma: 7 x 7 at sigma 1); invisible joints give an
    all-zero map. Separable, so the cost is N x J x (H + W) exponentials plus one outer product.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = size
    r = 3.0 * sigma if radius is None else float(radius)
    centre = torch.floor(xy.float() + 0.5)  # N x J x 2
    xs = torch.arange(w, device=xy.device, dtype=torch.float32)
    ys = torch.arange(h, device=xy.device, dtype=torch.float32)
    dx = xs - centre[..., 0:1]  # N x J x W
    dy = ys - centre[..., 1:2]  # N x J x H
    gx = torch.exp(-dx.square() / (2 * sigma ** 2)) * (dx.abs() <= r)
    gy = torch.exp(-dy.square() / (2 * sigma ** 2)) * (dy.abs() <= r)
    gy = gy * (visible > 0).float()[..., None]
    return gy[..., :, None] * gx[..., None, :]


def argmax_decode(heatmaps: Tensor) -> Tensor:
    """N x J x H x W -> N x J x 2 float (x, y) of each map's maximum (first one on ties)."""
    w = heatmaps.shape[-1]
    idx = heatmaps.flatten(-2).argmax(dim=-1)
    return torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1).float()
