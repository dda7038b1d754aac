"""Synthetic stick-figure pose, PCKh@0.5 of the head top: an offline, seeded stand-in for MPII."""

from __future__ import annotations

from pathlib import Path

import torch

from surrogate_bench.plugins.contracts import Profile, Split, TaskData
from surrogate_bench.datasets.synth_pose import make_synth_pose, split_seed
from surrogate_bench.taskkit.metrics import head_sizes
from surrogate_bench.taskkit.pose_task import PoseTask


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
    data_hint = "generated from the task's seed; needs no files"
    profiles = {
        "smoke": Profile(epochs=1, batch_size=16, optimizer="rmsprop", lr=1e-3, train_size=32, val_size=32,
                         test_size=32, eval_batch_size=32, amp=True),
        "quick": Profile(epochs=12, batch_size=16, optimizer="rmsprop", lr=1e-3, eval_batch_size=100),
        "paper": Profile(epochs=50, batch_size=6, optimizer="rmsprop", lr=2.5e-4, milestones=(30, 40),
                         gamma=0.25, eval_batch_size=100),
    }

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
