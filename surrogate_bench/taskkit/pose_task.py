"""Shared base of the heatmap pose tasks: hourglass model, Gaussian targets, argmax decoding, PCKh@0.5.

Target layout (one float tensor N x J x C, C >= 4), shared with the loss methods:
``[..., 0:2]`` joint (x, y) in heatmap pixels (pixel centres at integer coordinates),
``[..., 2]`` visible (0/1), ``[..., 3]`` head size in heatmap pixels (the PCKh normaliser, for MPII
0.6 x head-box diagonal), so the PCKh@t radius is ``t * targets[..., 3]``. Channels after 3 are
task-specific.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..plugins.contracts import UNIT, Domain, Task, between
from .heatmaps import argmax_decode, gaussian_heatmaps
from .metrics import pckh_correct
from ..models.hourglass import StackedHourglass

X, Y, VIS, HEAD = 0, 1, 2, 3
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as MMPose normalises pose crops
STD = (0.229, 0.224, 0.225)


class PoseTask(Task):
    """A single-person pose task scored by PCKh@``threshold`` (count-weighted mean over the chosen joints).

    Subclasses set ``params`` (must include ``joints``, ``input_size``, ``heatmap_size``, ``width``,
    ``depth``, ``color_jitter``) and implement ``load``.
    """

    output_kind = "heatmaps"
    metric_name = "PCKh@0.5"
    equivalence_margin = 0.01  # one point of PCKh
    metric_range = (0.0, 1.0)
    threshold: float = 0.5
    channels_last = True
    # the pose parameters every subclass shares; subclasses add their own with {**PoseTask.param_domains, ...}
    param_domains: dict[str, Domain] = {
        "joints": between(0, 15), "input_size": between(1, 1024), "heatmap_size": between(1, 512),
        "width": between(1, 4096), "depth": between(1, 8), "color_jitter": UNIT}

    def validate(self) -> None:
        from ..plugins.errors import SuiteError

        if not self.p["joints"] or any(not 0 <= j < 16 for j in self.p["joints"]):
            raise SuiteError(f"task {self.name!r}: joints must be MPII indices 0..15, got {self.p['joints']}")
        ratio = self.p["input_size"] / self.p["heatmap_size"]
        if ratio not in (1, 2, 4):
            raise SuiteError(f"task {self.name!r}: input_size / heatmap_size must be 1, 2 or 4 "
                             f"(got {self.p['input_size']} / {self.p['heatmap_size']})")
        if self.p["heatmap_size"] < 2 ** self.p["depth"]:
            raise SuiteError(f"task {self.name!r}: an hourglass of depth {self.p['depth']} halves the heatmap "
                             f"{self.p['depth']} times; heatmap_size must be >= {2 ** self.p['depth']}, "
                             f"got {self.p['heatmap_size']}")

    # -- shape of the problem --------------------------------------------------------
    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (int(self.p["heatmap_size"]), int(self.p["heatmap_size"]))

    @property
    def num_joints(self) -> int:
        return len(self.p["joints"])

    @property
    def stride(self) -> int:
        """Input pixels per heatmap pixel."""
        return int(self.p["input_size"]) // int(self.p["heatmap_size"])

    def build_model(self) -> nn.Module:
        return StackedHourglass(self.num_joints, width=int(self.p["width"]), depth=int(self.p["depth"]),
                                stride=self.stride)

    def inputs(self, x: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        """uint8 N x 3 x S x S -> normalised float; in training, per-image channel scaling (Newell et al.)."""
        xf = x.float().div_(255.0)
        jitter = float(self.p["color_jitter"])
        if train and jitter > 0:
            scale = 1.0 + jitter * (2 * torch.rand(x.shape[0], 3, 1, 1, device=x.device, generator=generator) - 1)
            xf = (xf * scale).clamp_(0.0, 1.0)
        mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
        return (xf - mean) / std

    # -- targets, decoding, metric ---------------------------------------------------
    def target_heatmaps(self, targets: Tensor, sigma: float, radius: float | None = None) -> Tensor:
        """N x J x C targets -> N x J x H x W Gaussian maps (peak 1, cut at 3 sigma, invisible all-zero)."""
        return gaussian_heatmaps(targets[..., 0:2], targets[..., VIS], self.heatmap_size, sigma, radius)

    def decode(self, outputs: Tensor) -> Tensor:
        """N x J x H x W heatmaps -> N x J x 2 argmax (x, y) in heatmap pixels."""
        return argmax_decode(outputs)

    def correct(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """N x J bool: visible and within ``threshold`` x head size (heatmap pixels) of the joint."""
        return pckh_correct(predictions, targets[..., 0:2], targets[..., HEAD], targets[..., VIS], self.threshold)

    def score(self, predictions: Tensor, targets: Tensor) -> float:
        """PCKh@0.5 in [0, 1]: correct / visible over all chosen joints (NaN if none is visible)."""
        hits = self.correct(predictions, targets)
        count = (targets[..., VIS] > 0).sum()
        return float(hits.sum() / count) if int(count) > 0 else float("nan")

    def refactoring(self) -> "PCKhRefactoring":
        """UniLoss: per heatmap, (pixel within ``threshold`` x head size, pixel beyond) pairs."""
        from ..uniloss import PCKhRefactoring

        return PCKhRefactoring(radius_factor=self.threshold)

    def random_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Random N(0, 1) heatmaps and targets: joints anywhere on the map, ~80% visible (the first always),
        head sizes 1.5-7.5 heatmap pixels (a PCKh radius small enough for the refactoring to be exact)."""
        j, (h, w) = self.num_joints, self.heatmap_size
        out = torch.randn(n, j, h, w, generator=generator, dtype=torch.float64)
        t = torch.zeros(n, j, 4, dtype=torch.float64)
        t[..., X] = torch.rand(n, j, generator=generator, dtype=torch.float64) * (w - 1)
        t[..., Y] = torch.rand(n, j, generator=generator, dtype=torch.float64) * (h - 1)
        t[..., VIS] = (torch.rand(n, j, generator=generator) < 0.8).double()
        t[0, 0, VIS] = 1.0
        t[..., HEAD] = 1.5 + 6.0 * torch.rand(n, j, generator=generator, dtype=torch.float64)
        return out, t

    def batch_metric(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """B x n x J x H x W outputs and B x n x J x C targets -> B PCKh values, in one pass."""
        b, n = outputs.shape[:2]
        hits = self.correct(self.decode(outputs.flatten(0, 1)), targets.flatten(0, 1)).view(b, n, -1)
        vis = (targets[..., VIS] > 0).view(b, n, -1)
        return hits.flatten(1).double().sum(1) / vis.flatten(1).double().sum(1)

