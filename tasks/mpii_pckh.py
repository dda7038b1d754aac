"""MPII single-person PCKh@0.5 (UniLoss, ECCV 2020): head top only by default, 1-stack hourglass, 256 -> 64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import Profile, Split, TaskData, between
from surrogate_bench.datasets.mpii import (HINT, annotation_file, crop_boxes, find_dir, load_crops, mpii_files,
                                           read_annotations, read_ground_truth)
from surrogate_bench.plugins.errors import DataCorrupt, DataUnavailable, SuiteError
from surrogate_bench.taskkit.metrics import SC_BIAS, head_sizes, pckh_correct
from surrogate_bench.taskkit.pose_task import HEAD, VIS, PoseTask
from surrogate_bench.taskkit.pose_warp import WarpSettings, mirror_order, warp_pose_batch

# extra target channels (after x, y, visible, head size in heatmap pixels)
CX, CY, SIDE, PERSON, GTX, GTY, GTVIS, BOX = 4, 5, 6, 7, 8, 9, 10, slice(11, 15)
NUM_CHANNELS = 15
HEAD_TOP, UPPER_NECK = 9, 8


class MpiiPCKh(PoseTask):
    """MPII with the official PCKh: predictions mapped back to image pixels, scored against mpii_gt_val.mat.

    MPII's test labels are private, so (as in the UniLoss paper) both ``val`` and ``test`` are the
    standard 2958-person validation split; ``test_metric`` is the final model's. Targets are
    N x J x 15: x, y, visible, head size (heatmap px), crop centre x, y (0-based image px), crop side,
    person index in mpii_val.json (-1 for training persons), gt x, y (1-based image px, as the .mat),
    gt visible, head box x1, y1, x2, y2. Validation persons are scored exactly as the official code
    does; training persons (no head boxes in MMPose's files) get a head size estimated from the
    head-top-to-neck length (median ratio on the validation ground truth), at heatmap scale.
    Training augmentation as the UniLoss release (Newell et al.): per-channel colour scaling, and a warp
    of the stored crop (``scale_factor``, ``rotation`` with ``rotation_prob``, ``flip`` with the left/right
    joint swap) that moves joints and head sizes with the image (:meth:`train_batch`). Unlike the release,
    which re-crops the original photo, a zoom-out shows black beyond the stored crop.
    """

    # score adds the official image-pixel rule for validation persons only; training batches (PERSON < 0)
    # are scored at heatmap scale, which the pose refactoring reproduces (check_refactoring passes)
    inherits_refactoring = True

    name = "mpii-pckh"
    params = {"joints": (HEAD_TOP,), "input_size": 256, "heatmap_size": 64, "width": 256, "depth": 4,
              "color_jitter": 0.2, "workers": 8, "scale_factor": 0.25, "rotation": 30.0, "rotation_prob": 0.6,
              "flip": 0.5}
    param_domains = {**PoseTask.param_domains, "workers": between(1, 256), "scale_factor": between(0, 0.9),
                     "rotation": between(0, 180), "rotation_prob": between(0, 1), "flip": between(0, 1)}
    data_hint = HINT.format(root="<data-root>")
    profiles = {
        "smoke": Profile(epochs=1, batch_size=6, optimizer="rmsprop", lr=2.5e-4, train_size=24, val_size=12,
                         test_size=12, eval_batch_size=12),
        "quick": Profile(epochs=3, batch_size=6, optimizer="rmsprop", lr=2.5e-4, train_size=3000, val_size=500,
                         eval_batch_size=64),
        "paper": Profile(epochs=50, batch_size=6, optimizer="rmsprop", lr=2.5e-4, milestones=(30, 40),
                         gamma=0.25, eval_batch_size=64),
    }

    def validate(self) -> None:
        super().validate()
        for key in ("scale_factor", "rotation", "rotation_prob", "flip"):
            if not self.p[key] >= 0:
                raise SuiteError(f"task {self.name!r}: {key} must be >= 0, got {self.p[key]}")
        if not (self.p["scale_factor"] < 1 and self.p["rotation_prob"] <= 1 and self.p["flip"] <= 1):
            raise SuiteError(f"task {self.name!r}: scale_factor must be < 1, rotation_prob and flip <= 1")
        if self.p["flip"] > 0 and mirror_order(list(self.p["joints"])) is None:
            raise SuiteError(f"task {self.name!r}: flips swap left and right joints, so joints {self.p['joints']} "
                             "must include each chosen joint's mirror (or set flip=0)")

    def warp_settings(self) -> WarpSettings:
        return WarpSettings(float(self.p["scale_factor"]), float(self.p["rotation"]), float(self.p["rotation_prob"]),
                            float(self.p["flip"]))

    def train_batch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Warp the uint8 crops (black outside) and their targets alike, then colour-jitter and normalise."""
        s = self.warp_settings()
        if s.scale_factor == 0 and (s.rotation == 0 or s.rotation_prob == 0) and s.flip_prob == 0:
            return super().train_batch(x, y, generator)
        images, y = warp_pose_batch(x.float(), y, self.heatmap_size[0], list(self.p["joints"]), s, generator)
        return self.inputs(images, train=True, generator=generator), y

    def data_files(self, data_root: Path) -> list[Path]:
        return mpii_files(data_root)

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        root = Path(data_root)
        folder = find_dir(root)
        train_file = annotation_file(folder, "mpii_train.json") if folder else None
        gt_file = annotation_file(folder, "mpii_gt_val.mat") if folder else None
        if folder is None or train_file is None or gt_file is None:
            where = folder or root / "mpii"
            raise DataUnavailable(f"MPII training data not found under {where} (need images/, mpii_train.json, "
                                  f"mpii_val.json, mpii_gt_val.mat); " + HINT.format(root=root))
        val_file = annotation_file(folder, "mpii_val.json")
        assert val_file is not None
        train, val = read_annotations(train_file), read_annotations(val_file)
        gt = read_ground_truth(gt_file)
        self._check_alignment(val, gt, val_file, gt_file)
        seg_ratio, side_ratio = self._head_ratios(val, gt)
        size = int(self.p["input_size"])
        workers = int(self.p["workers"])
        train_split = Split(load_crops(folder, train, size, workers), self._train_targets(train, seg_ratio, side_ratio))
        val_split = Split(load_crops(folder, val, size, workers), self._val_targets(val, gt))
        return TaskData(train=train_split, val=val_split, test=val_split)

    # -- targets ---------------------------------------------------------------------
    @staticmethod
    def _check_alignment(val: list[dict], gt, val_file: Path, gt_file: Path) -> None:
        """Entry i of mpii_val.json must be column i of mpii_gt_val.mat."""
        if len(val) > len(gt.joints):
            raise DataCorrupt(f"{val_file} has {len(val)} persons but {gt_file} only {len(gt.joints)}")
        joints = np.array([e["joints"] for e in val], dtype=np.float64).reshape(-1, 16, 2)
        vis = gt.visible[: len(val)] > 0
        err = np.abs(joints - gt.joints[: len(val)]).max(-1)[vis]
        if err.size and err.max() > 0.01:
            bad = int(np.argwhere((np.abs(joints - gt.joints[: len(val)]).max(-1) > 0.01) & vis)[0, 0])
            raise DataCorrupt(f"{val_file} entry {bad} does not match column {bad} of {gt_file}; expected the "
                              "standard 2958-person MPII validation split in the same order")

    @staticmethod
    def _head_ratios(val: list[dict], gt) -> tuple[float, float]:
        """Median head size / head-top-to-neck length, and head size / crop side, on the validation gt."""
        sizes = SC_BIAS * np.linalg.norm(gt.head_boxes[:, 1] - gt.head_boxes[:, 0], axis=-1)
        both = (gt.visible[:, HEAD_TOP] > 0) & (gt.visible[:, UPPER_NECK] > 0)
        seg = np.linalg.norm(gt.joints[:, HEAD_TOP] - gt.joints[:, UPPER_NECK], axis=-1)
        ok = both & (seg > 0)
        seg_ratio = float(np.median(sizes[ok] / seg[ok])) if ok.any() else float("nan")
        _, side = crop_boxes(val)
        side_ratio = float(np.median(sizes[: len(val)] / side.numpy())) if len(val) else float("nan")
        return seg_ratio, side_ratio

    def _to_heatmap(self, xy_img0: Tensor, center: Tensor, side: Tensor) -> Tensor:
        """0-based image pixels -> heatmap pixels (pixel centres at integers at both scales)."""
        h = float(self.heatmap_size[0])
        return (xy_img0 - center[:, None]) / side[:, None, None] * h + h / 2 - 0.5

    def _targets(self, entries: list[dict], joints_img: np.ndarray, visible: np.ndarray, head_img: np.ndarray,
                 person: np.ndarray, boxes: np.ndarray) -> Tensor:
        """Assemble the N x J x 15 target tensor (float32) for the task's joints."""
        sel = list(self.p["joints"])
        center, side = crop_boxes(entries)
        xy = torch.from_numpy(joints_img[:, sel])
        n, j = xy.shape[:2]
        y = torch.zeros(n, j, NUM_CHANNELS, dtype=torch.float64)
        y[..., 0:2] = self._to_heatmap(xy - 1.0, center, side)
        y[..., VIS] = torch.from_numpy(visible[:, sel])
        y[..., HEAD] = (torch.from_numpy(head_img) / side * self.heatmap_size[0])[:, None]
        y[..., CX], y[..., CY], y[..., SIDE] = center[:, 0, None], center[:, 1, None], side[:, None]
        y[..., PERSON] = torch.from_numpy(person.astype(np.float64))[:, None]
        y[..., GTX:GTY + 1] = xy
        y[..., GTVIS] = torch.from_numpy(visible[:, sel])
        y[..., BOX] = torch.from_numpy(boxes.reshape(-1, 4))[:, None]
        return y.float()

    def _val_targets(self, val: list[dict], gt) -> Tensor:
        n = len(val)
        return self._targets(val, gt.joints[:n], gt.visible[:n], head_sizes(torch.from_numpy(gt.head_boxes[:n])).numpy(),
                             np.arange(n), gt.head_boxes[:n])

    def _train_targets(self, train: list[dict], seg_ratio: float, side_ratio: float) -> Tensor:
        joints = np.array([e["joints"] for e in train], dtype=np.float64).reshape(-1, 16, 2)
        vis = (np.array([e["joints_vis"] for e in train], dtype=np.float64).reshape(-1, 16) > 0).astype(np.float64)
        seg = np.linalg.norm(joints[:, HEAD_TOP] - joints[:, UPPER_NECK], axis=-1)
        _, side = crop_boxes(train)
        both = (vis[:, HEAD_TOP] > 0) & (vis[:, UPPER_NECK] > 0) & (seg > 0)
        head = np.where(both, seg_ratio * seg, side_ratio * side.numpy())
        return self._targets(train, joints, vis, head, -np.ones(len(train)), np.zeros((len(train), 2, 2)))

    def random_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Random heatmaps and targets of *training* persons (person -1: scored at heatmap scale, the rule the
        refactoring encodes); validation persons' official image-pixel rule is checked against the official
        code by the PCKh tests instead."""
        out, t = super().random_batch(n, generator)
        y = torch.zeros(*t.shape[:2], NUM_CHANNELS, dtype=torch.float64)
        y[..., :t.shape[-1]] = t
        y[..., SIDE], y[..., PERSON] = float(self.p["input_size"]), -1.0
        return out, y

    # -- metric ----------------------------------------------------------------------
    def to_image(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """Heatmap-pixel predictions -> 1-based image pixels (the frame of mpii_gt_val.mat)."""
        h = float(self.heatmap_size[0])
        side = targets[..., SIDE:SIDE + 1].double()
        centre = targets[..., CX:CY + 1].double()
        return centre + side * ((predictions.double() + 0.5) / h - 0.5) + 1.0

    def correct(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """N x J: validation persons by the official rule in image pixels, others at heatmap scale."""
        official = pckh_correct(self.to_image(predictions, targets), targets[..., GTX:GTY + 1],
                                head_sizes(targets[:, 0, BOX].reshape(-1, 2, 2)), targets[..., GTVIS],
                                self.threshold)
        approx = super().correct(predictions, targets)
        return torch.where(targets[..., PERSON] >= 0, official, approx)

    def score(self, predictions: Tensor, targets: Tensor) -> float:
        hits = self.correct(predictions, targets)
        vis = torch.where(targets[..., PERSON] >= 0, targets[..., GTVIS], targets[..., VIS]) > 0
        count = vis.sum()
        return float(hits.sum() / count) if int(count) > 0 else float("nan")
