"""Stacked hourglass network (Newell, Yang, Deng, ECCV 2016), one stack by default, as in UniLoss."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class Residual(nn.Module):
    """Pre-activation bottleneck residual module: BN-ReLU-1x1 (c/2), BN-ReLU-3x3 (c/2), BN-ReLU-1x1 (c)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One recursive hourglass of ``depth`` halvings: skip branch + pooled branch, nearest upsampling."""

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.up1 = Residual(width, width)
        self.low1 = Residual(width, width)
        self.low2 = Hourglass(depth - 1, width) if depth > 1 else Residual(width, width)
        self.low3 = Residual(width, width)

    def forward(self, x: Tensor) -> Tensor:
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return self.up1(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """Stem (7x7 conv, residuals, down by ``stride`` in {1, 2, 4}), ``stacks`` hourglasses, 1x1 heads.

    With width 256, depth 4, stride 4 and one stack this is Newell et al.'s 1-stack network
    (256 x 256 input -> 64 x 64 heatmaps). Returns the last stack's heatmaps (N x J x H x W);
    intermediate supervision is not used (one stack by default).
    """

    def __init__(self, num_joints: int, width: int = 256, depth: int = 4, stacks: int = 1,
                 stride: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        if stride not in (1, 2, 4):
            raise ValueError(f"hourglass stride must be 1, 2 or 4, got {stride}")
        c1, c2 = max(width // 4, 8), max(width // 2, 8)
        stem: list[nn.Module] = [nn.Conv2d(in_channels, c1, 7, stride=2 if stride > 1 else 1, padding=3),
                                 nn.BatchNorm2d(c1), nn.ReLU(inplace=True), Residual(c1, c2)]
        if stride == 4:
            stem.append(nn.MaxPool2d(2))
        stem += [Residual(c2, c2), Residual(c2, width)]
        self.stem = nn.Sequential(*stem)
        self.stacks = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.remaps = nn.ModuleList()
        for i in range(stacks):
            self.stacks.append(nn.Sequential(
                Hourglass(depth, width), Residual(width, width),
                nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
            self.heads.append(nn.Conv2d(width, num_joints, 1))
            if i < stacks - 1:
                self.remaps.append(nn.ModuleDict({"feat": nn.Conv2d(width, width, 1),
                                                  "pred": nn.Conv2d(num_joints, width, 1)}))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        out = x
        for i, (stack, head) in enumerate(zip(self.stacks, self.heads)):
            feat = stack(x)
            out = head(feat)
            if i < len(self.remaps):
                x = x + self.remaps[i]["feat"](feat) + self.remaps[i]["pred"](out)
        return out
