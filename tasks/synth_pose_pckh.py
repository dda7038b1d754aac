"""Synthetic stick-figure pose, PCKh@0.5 of the head top: an offline, seeded stand-in for MPII."""

from __future__ import annotations

from pathlib import Path

import torch

from surrogate_bench.plugins.contracts import SEED, Profile, Split, TaskData, between
from surrogate_bench.datasets.synth_pose import make_synth_pose, split_seed
from surrogate_bench.taskkit.metrics import head_sizes
from surrogate_bench.taskkit.pose_task import HEAD, PoseTask


class SynthPosePCKh(PoseTask):
    """Figures drawn from ``seed`` (no files needed); 1-stack hourglass, 64 px input -> 32 x 32 heatmaps.

    Sizes are chosen for CPU runs (a quick run in minutes); ``input_size=128 heatmap_size=64 width=256``
    gives the MPII-like 64 x 64 heatmaps on a GPU.

    Head size = 0.6 x the diagonal of the head disc's bounding box, as MPII defines it; the targets
    are N x J x 4 (x, y, visible, head size), all in heatmap pixels.
    """

    name = "synth-pose-pckh"
    params = {"joints": (9,), "input_size": 64, "heatmap_size": 32, "width": 32, "depth": 4,
              "color_jitter": 0.2, "seed": 0, "train_size": 2000, "val_size": 200, "test_size": 500,
              "clutter": 9}
    param_domains = {**PoseTask.param_domains, "input_size": between(16, 1024), "seed": SEED,
                     "train_size": between(1, 200_000), "val_size": between(0, 200_000),
                     "test_size": between(1, 200_000), "clutter": between(0, 1000)}
    data_hint = "generated from the task's seed; needs no files"
    profiles = {
        "smoke": Profile(epochs=1, batch_size=16, optimizer="rmsprop", lr=1e-3, train_size=32, val_size=32,
                         test_size=32, eval_batch_size=32, amp=True),
        # 7 epochs of the 2000 training figures (was 12: 6-13 min per run on one CPU thread): the most that keeps
        # a UniLoss run under 3 minutes (README, "The quick profile")
        "quick": Profile(epochs=7, batch_size=16, optimizer="rmsprop", lr=1e-3, eval_batch_size=100),
        # the UniLoss MPII training schedule on synthetic data; no paper used this task, so no `paper` profile
        "mpii-schedule": Profile(epochs=50, batch_size=6, optimizer="rmsprop", lr=2.5e-4, milestones=(30, 40),
                                 gamma=0.25, eval_batch_size=100),
    }

    def refactoring(self) -> "PCKhRefactoring":
        """UniLoss with 32 inside candidates (the default 64 is sized for MPII): heads here are at most
        4.62 heatmap pixels (head radius 0.1 x figure height <= 0.085 x 64 input px), so the PCKh radius is
        <= 2.31 px and at most 21 pixels lie inside it -- g stays exact at half the comparisons."""
        from surrogate_bench.uniloss import PCKhRefactoring

        return PCKhRefactoring(radius_factor=self.threshold, max_inside=32)

    def random_batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """As PoseTask's, with head sizes 1.5-4.6 heatmap pixels: this task's figures never have larger heads,
        which is what keeps ``g`` exact with 32 inside candidates (see ``refactoring``)."""
        out, t = super().random_batch(n, generator)
        t[..., HEAD] = 1.5 + (t[..., HEAD] - 1.5) * (3.1 / 6.0)
        return out, t

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        splits = [self._split(i, int(self.p[key])) for i, key in enumerate(("train_size", "val_size", "test_size"))]
        return TaskData(*splits)

    def data_files(self, data_root: Path) -> list[Path]:
        """No files: the figures are generated from the task's parameters (in the run key) by code in the
        code fingerprint (datasets/synth_pose.py)."""
        return []

    def _split(self, index: int, n: int) -> Split:
        """Generate one split; joints and head size converted from input to heatmap pixels."""
        data = make_synth_pose(n, int(self.p["input_size"]), split_seed(int(self.p["seed"]), index),
                               clutter=int(self.p["clutter"]))
        joints = list(self.p["joints"])
        s = float(self.stride)
        xy = (data.joints[:, joints] + 0.5) / s - 0.5  # pixel centres stay at integers at both scales
        head = (head_sizes(data.head_boxes).float() / s)[:, None].expand(-1, len(joints))
        y = torch.cat([xy, data.visible[:, joints, None], head[..., None]], dim=-1).contiguous()
        return Split(data.images, y)
