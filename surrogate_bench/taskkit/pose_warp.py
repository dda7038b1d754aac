"""Geometric augmentation of pose batches: random scale, rotation and horizontal flip (with the left/right
joint swap) applied to images and joint targets alike, as the UniLoss / Newell et al. MPII training does.

Both the image and the heatmap share normalised coordinates (``align_corners=False``: pixel p of a
size-S axis is at (2p + 1) / S - 1, the crop centre at 0), so one 2x2 matrix per sample moves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# MPII joint order: r-ankle 0, r-knee 1, r-hip 2, l-hip 3, l-knee 4, l-ankle 5, pelvis 6, thorax 7, neck 8,
# head top 9, r-wrist 10, r-elbow 11, r-shoulder 12, l-shoulder 13, l-elbow 14, l-wrist 15
MPII_MIRROR = {0: 5, 1: 4, 2: 3, 3: 2, 4: 1, 5: 0, 10: 15, 11: 14, 12: 13, 13: 12, 14: 11, 15: 10}


@dataclass(frozen=True)
class WarpSettings:
    """The release's draws: scale 1 + N(0, 1) x 0.25 clipped to +-0.25 (the box grows: the person shrinks),
    rotation N(0, 1) x 30 deg clipped to +-60 with probability 0.6, horizontal flip with probability 0.5."""

    scale_factor: float = 0.25
    rotation: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5


def random_warps(n: int, settings: WarpSettings, device: torch.device,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: the 2x2 forward map M on normalised coordinates (point -> warped point), its zoom
    (head sizes scale by it) and whether it flips."""
    def draw(kind: str) -> Tensor:
        if kind == "n":
            return torch.randn(n, device=device, generator=generator)
        return torch.rand(n, device=device, generator=generator)

    sf, rf = settings.scale_factor, settings.rotation
    box = (1 + sf * draw("n")).clamp(1 - sf, 1 + sf)
    angle = (rf * draw("n")).clamp(-2 * rf, 2 * rf) * (draw("u") < settings.rotation_prob)
    flip = draw("u") < settings.flip_prob
    zoom = 1.0 / box
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad) * zoom, torch.sin(rad) * zoom
    m = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (n, 2, 2) zoom x rotation
    # applied after a flip x -> -x (as the release flips the image, then crops): negate M's first column
    m[..., 0] = m[..., 0] * torch.where(flip, -1.0, 1.0)[:, None]
    return m, zoom, flip


def warp_images(x: Tensor, m: Tensor) -> Tensor:
    """float N x C x S x S -> the same images under the forward maps ``m`` (bilinear, zero outside)."""
    inv = torch.linalg.inv(m.double()).to(x.dtype)
    theta = torch.cat([inv, torch.zeros(len(m), 2, 1, device=x.device, dtype=x.dtype)], -1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_points(xy: Tensor, m: Tensor, size: int) -> Tensor:
    """N x J x 2 pixel coordinates of a size x size map (pixel centres at integers) under the maps ``m``."""
    norm = (2 * xy + 1) / size - 1
    moved = torch.einsum("nab,njb->nja", m.to(norm.dtype), norm)
    return ((moved + 1) * size - 1) / 2


def mirror_order(joints: list[int] | tuple[int, ...]) -> list[int] | None:
    """For the chosen MPII joints: the channel each channel takes after a flip (its mirror joint), or
    None when a chosen joint's mirror is not among them (a flip could not be labelled)."""
    pos = {j: i for i, j in enumerate(joints)}
    order = []
    for j in joints:
        partner = MPII_MIRROR.get(j, j)
        if partner not in pos:
            return None
        order.append(pos[partner])
    return order


def warp_pose_batch(images: Tensor, targets: Tensor, heatmap_size: int, joints: list[int] | tuple[int, ...],
                    settings: WarpSettings, generator: torch.Generator | None = None,
                    x: int = 0, y: int = 1, vis: int = 2, head: int = 3) -> tuple[Tensor, Tensor]:
    """Warp float images and their N x J x C targets alike: joints moved (and left/right swapped on a
    flip), head sizes scaled by the zoom, joints leaving the heatmap marked invisible."""
    m, zoom, flip = random_warps(len(images), settings, images.device, generator)
    out_images = warp_images(images, m)
    t = targets.clone()
    order = mirror_order(joints)
    if order is not None and order != list(range(len(order))):
        t = torch.where(flip[:, None, None], t[:, order], t)
    t[..., x:y + 1] = warp_points(t[..., x:y + 1], m, heatmap_size).to(t.dtype)
    t[..., head] = t[..., head] * zoom[:, None].to(t.dtype)
    inside = ((t[..., x:y + 1] >= -0.5) & (t[..., x:y + 1] < heatmap_size - 0.5)).all(-1)
    t[..., vis] = t[..., vis] * inside.to(t.dtype)
    return out_images, t
