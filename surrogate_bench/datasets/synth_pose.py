"""Procedural stick-figure pose images drawn in torch from a seed (an offline stand-in for MPII).

Each image holds one figure (head disc, torso, arms, legs; varied size, position, tilt and limb
angles) over a smooth random background with clutter (segments, rectangles, discs). Joints follow
the 16 MPII indices (9 = head top, the far edge of the head disc from the neck). Drawing is
vectorised over a chunk of images: one anti-aliased layer (all images at once) per shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

NUM_JOINTS = 16
# MPII joint order: 0 r-ankle 1 r-knee 2 r-hip 3 l-hip 4 l-knee 5 l-ankle 6 pelvis 7 thorax
# 8 upper-neck 9 head-top 10 r-wrist 11 r-elbow 12 r-shoulder 13 l-shoulder 14 l-elbow 15 l-wrist
LIMBS = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (12, 11), (11, 10), (13, 14), (14, 15),
         (12, 13), (7, 8))
TORSO = (6, 7)
HEAD_RATIO = 0.1  # head radius / figure height: a big cartoon head, so PCKh radii span pixels at 32 x 32


@dataclass
class SynthPose:
    """A generated split: uint8 images N x 3 x S x S, joints N x 16 x 2 (input pixels, pixel centres at
    integers), visible N x 16, head boxes N x 2 x 2 [[x1, y1], [x2, y2]] around the head disc."""

    images: Tensor
    joints: Tensor
    visible: Tensor
    head_boxes: Tensor


def _rot(v: Tensor, a: Tensor) -> Tensor:
    """Rotate 2-vectors v (n x 2) by angles a (n) in image coordinates."""
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([v[:, 0] * c - v[:, 1] * s, v[:, 0] * s + v[:, 1] * c], dim=1)


def _skeleton(n: int, size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random figures: joints n x 16 x 2 and head centres + radii n x 3 (input pixels)."""
    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    h = u(0.45, 0.85) * size  # figure height
    tilt = u(-0.5, 0.5)
    up = torch.stack([torch.sin(tilt), -torch.cos(tilt)], 1)
    right = torch.stack([torch.cos(tilt), torch.sin(tilt)], 1)
    down = -up
    hh = h[:, None]
    pelvis = torch.stack([u(0.3, 0.7) * size, u(0.5, 0.62) * size], 1)
    thorax = pelvis + 0.28 * hh * up
    neck = thorax + 0.06 * hh * up
    head_dir = _rot(up, u(-0.4, 0.4))
    r_head = HEAD_RATIO * h
    head_c = neck + r_head[:, None] * head_dir
    head_top = neck + 2 * r_head[:, None] * head_dir
    j = torch.zeros(n, NUM_JOINTS, 2)
    j[:, 6], j[:, 7], j[:, 8], j[:, 9] = pelvis, thorax, neck, head_top
    j[:, 2], j[:, 3] = pelvis - 0.06 * hh * right, pelvis + 0.06 * hh * right
    j[:, 12], j[:, 13] = thorax - 0.09 * hh * right, thorax + 0.09 * hh * right
    for hip, knee, ankle in ((2, 1, 0), (3, 4, 5)):
        thigh = _rot(down, u(-0.8, 0.8))
        j[:, knee] = j[:, hip] + 0.23 * hh * thigh
        j[:, ankle] = j[:, knee] + 0.23 * hh * _rot(thigh, u(-1.2, 1.2))
    for sho, elb, wri in ((12, 11, 10), (13, 14, 15)):
        upper = _rot(down, u(-2.8, 2.8))
        j[:, elb] = j[:, sho] + 0.15 * hh * upper
        j[:, wri] = j[:, elb] + 0.14 * hh * _rot(upper, u(-2.2, 2.2))
    return j, torch.cat([head_c, r_head[:, None]], 1)


def _segment_alpha(px: Tensor, py: Tensor, a: Tensor, b: Tensor, width: Tensor) -> Tensor:
    """Anti-aliased coverage n x S x S of thick segments a->b (n x 2) of widths (n)."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    rx, ry = px - ax, py - ay  # n x 1 x S and n x S x 1: broadcast, cheap
    inv = 1.0 / (dx * dx + dy * dy).clamp_min(1e-6)
    t = (rx * (dx * inv) + ry * (dy * inv)).clamp_(0, 1)
    dist = torch.hypot(rx - t * dx, ry - t * dy)
    return dist.neg_().add_(width[:, None, None] / 2 + 0.5).clamp_(0, 1)


def _disc_alpha(px: Tensor, py: Tensor, c: Tensor, r: Tensor) -> Tensor:
    """Anti-aliased coverage n x S x S of discs centred c (n x 2) of radii r (n)."""
    dist = torch.hypot(px - c[:, 0, None, None], py - c[:, 1, None, None])
    return dist.neg_().add_(r[:, None, None] + 0.5).clamp_(0, 1)


def _render(joints: Tensor, head: Tensor, size: int, g: torch.Generator, clutter: int) -> Tensor:
    """Draw one chunk: background field, clutter, then the figure on top -> float n x 3 x S x S in [0, 1]."""
    n = joints.shape[0]
    coords = torch.arange(size, dtype=torch.float32)
    py, px = coords[None, :, None], coords[None, None, :]
    img = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear",
                        align_corners=False)
    img = 0.25 + 0.5 * img

    def paint(alpha: Tensor) -> None:
        colour = torch.rand(n, 3, 1, 1, generator=g)
        img.lerp_(colour.expand_as(img), alpha[:, None])

    for k in range(clutter):
        shape = k % 3
        if shape == 0:  # segment
            a, b = torch.rand(n, 2, generator=g) * size, torch.rand(n, 2, generator=g) * size
            paint(_segment_alpha(px, py, a, b, 1 + torch.rand(n, generator=g) * 0.04 * size))
        elif shape == 1:  # axis-aligned rectangle
            lo = torch.rand(n, 2, generator=g) * size
            hi = lo + (0.05 + 0.25 * torch.rand(n, 2, generator=g)) * size
            inside = ((px - lo[:, 0, None, None] + 0.5).clamp(0, 1) * (hi[:, 0, None, None] - px + 0.5).clamp(0, 1)
                      * (py - lo[:, 1, None, None] + 0.5).clamp(0, 1) * (hi[:, 1, None, None] - py + 0.5).clamp(0, 1))
            paint(inside)
        else:  # disc
            paint(_disc_alpha(px, py, torch.rand(n, 2, generator=g) * size,
                              (0.015 + 0.06 * torch.rand(n, generator=g)) * size))
    height = head[:, 2] / HEAD_RATIO  # the figure height the skeleton was drawn with
    body = torch.zeros(n, size, size)
    for a, b in LIMBS:
        body = torch.maximum(body, _segment_alpha(px, py, joints[:, a], joints[:, b], 0.035 * height))
    body = torch.maximum(body, _segment_alpha(px, py, joints[:, TORSO[0]], joints[:, TORSO[1]], 0.09 * height))
    paint(body)
    paint(_disc_alpha(px, py, head[:, :2], head[:, 2]))
    img = img + 0.03 * torch.randn(n, 3, size, size, generator=g)
    return img.clamp(0, 1)


def make_synth_pose(n: int, size: int, seed: int, clutter: int = 9, chunk: int = 128) -> SynthPose:
    """Generate ``n`` images of ``size`` x ``size`` deterministically from ``seed`` (CPU, chunked)."""
    g = torch.Generator().manual_seed(int(seed))
    images, joints, heads = [], [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        j, head = _skeleton(m, size, g)
        images.append(_render(j, head, size, g, clutter).mul(255).round().to(torch.uint8))
        joints.append(j)
        heads.append(head)
    joints_t = torch.cat(joints) if joints else torch.zeros(0, NUM_JOINTS, 2)
    head_t = torch.cat(heads) if heads else torch.zeros(0, 3)
    visible = ((joints_t >= -0.5) & (joints_t <= size - 0.5)).all(-1).float()
    boxes = torch.stack([head_t[:, :2] - head_t[:, 2:3], head_t[:, :2] + head_t[:, 2:3]], 1)
    imgs = torch.cat(images) if images else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return SynthPose(images=imgs, joints=joints_t, visible=visible, head_boxes=boxes)


def split_seed(seed: int, split: int) -> int:
    """Independent seeds per split, so changing one split's size leaves the others unchanged."""
    return int(seed) * 1_000_003 + 7919 * (split + 1)
