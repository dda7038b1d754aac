"""Whole-batch image augmentation on the data's device: padded random crop and horizontal flip, vectorised."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def crop_flip(x: Tensor, top: Tensor, left: Tensor, flip: Tensor, pad: int) -> Tensor:
    """Zero-pad N x C x H x W by ``pad`` and take, per image, the H x W window at (top, left), mirrored where ``flip``."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = top[:, None] + torch.arange(h, device=x.device)  # N x H
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + left[:, None]  # N x W
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(x: Tensor, generator: torch.Generator | None, pad: int = 4) -> Tensor:
    """Random pad-``pad`` crop and 50% horizontal flip for every image of a batch (offsets drawn on x's device)."""
    n = x.shape[0]
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    return crop_flip(x, top, left, flip, pad)


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 N x C x H x W -> float, per-channel ``(x / 255 - mean) / std``."""
    return x.float().div_(255.0).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
