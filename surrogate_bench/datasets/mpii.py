"""MPII single-person data in the MMPose layout: person crops around the annotated centre/scale.

Layout (``<root>/mpii`` or ``<root>/mpii-mini``; annotation files directly there or in ``annotations/``):
``images/*.jpg``, ``mpii_train.json``, ``mpii_val.json`` (lists of {image, joints 16x2, joints_vis,
center, scale}, MATLAB 1-based pixel coordinates) and ``mpii_gt_val.mat`` (the official evaluation's
ground truth; column i belongs to entry i of mpii_val.json).

Crop box (as MMPose): centre y += 15 x scale, side = 1.25 x scale x 200 px; resampled bilinearly
(torch ``grid_sample``, zero padding) to ``input_size`` and stored as uint8.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..plugins.errors import DataCorrupt, DataUnavailable

HINT = ("MPII: download the images tar (mpii_human_pose_v1.tar.gz) from http://human-pose.mpi-inf.mpg.de "
        "and extract its images/ into {root}/mpii/images/; put MMPose's mpii_train.json, mpii_val.json and "
        "mpii_gt_val.mat (https://download.openmmlab.com/mmpose/datasets/mpii_annotations.tar) in {root}/mpii/")
BOX_ENLARGE = 1.25
CENTER_SHIFT = 15.0  # pixels x scale, added to the centre's y (MMPose)


@dataclass
class MPIIGroundTruth:
    """The official validation ground truth, persons first: joints N x 16 x 2, head boxes N x 2 x 2, visible N x 16."""

    joints: np.ndarray
    head_boxes: np.ndarray
    visible: np.ndarray


def find_dir(root: Path) -> Path | None:
    """``<root>/mpii`` or ``<root>/mpii-mini`` (the first that has mpii_val.json), else None."""
    for cand in (root / "mpii", root / "mpii-mini", root):
        if annotation_file(cand, "mpii_val.json") is not None:
            return cand
    return None


def annotation_file(folder: Path, name: str) -> Path | None:
    for cand in (folder / name, folder / "annotations" / name):
        if cand.is_file():
            return cand
    return None


def mpii_files(root: Path) -> list[Path]:
    """The annotation files and every image the MPII task may read; DataUnavailable without the annotations."""
    folder = find_dir(Path(root))
    names = ("mpii_train.json", "mpii_val.json", "mpii_gt_val.mat")
    files = [annotation_file(folder, n) for n in names] if folder else [None]
    if folder is None or any(f is None for f in files):
        raise DataUnavailable(f"MPII annotations ({', '.join(names)}) not found under {folder or root}; "
                              + HINT.format(root=root))
    images = sorted(p for p in (folder / "images").rglob("*") if p.is_file())
    return [f for f in files if f is not None] + images


def read_annotations(path: Path) -> list[dict]:
    """The MMPose list of person entries; DataCorrupt naming the file when it is not that."""
    try:
        entries = json.loads(path.read_text())
        for e in entries:
            if not (isinstance(e["image"], str) and np.shape(e["joints"]) == (16, 2)
                    and np.shape(e["joints_vis"]) == (16,) and np.shape(e["center"]) == (2,)):
                raise ValueError(f"bad entry {e.get('image')!r}")
            float(e["scale"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataCorrupt(f"{path}: not an MMPose MPII annotation list ({exc}); expected a JSON list of "
                          "{image, joints 16x2, joints_vis 16, center 2, scale}") from None
    return entries


def read_ground_truth(path: Path) -> MPIIGroundTruth:
    """mpii_gt_val.mat: pos_gt_src 16x2xN, headboxes_src 2x2xN, jnt_missing 16xN -> persons first."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        pos, boxes, missing = mat["pos_gt_src"], mat["headboxes_src"], mat["jnt_missing"]
    except Exception as exc:
        raise DataCorrupt(f"{path}: not the MPII evaluation file ({type(exc).__name__}: {exc}); expected "
                          "pos_gt_src 16x2xN, headboxes_src 2x2xN, jnt_missing 16xN") from None
    n = pos.shape[-1]
    if pos.shape != (16, 2, n) or boxes.shape != (2, 2, n) or missing.shape != (16, n):
        raise DataCorrupt(f"{path}: shapes {pos.shape}, {boxes.shape}, {missing.shape}; expected "
                          f"16x2xN, 2x2xN, 16xN")
    return MPIIGroundTruth(joints=np.transpose(pos, (2, 0, 1)).astype(np.float64),
                           head_boxes=np.transpose(boxes, (2, 0, 1)).astype(np.float64),
                           visible=(1 - np.transpose(missing, (1, 0))).astype(np.float64))


def crop_boxes(entries: list[dict]) -> tuple[Tensor, Tensor]:
    """Per person: crop centre N x 2 (0-based pixel coordinates) and box side N (pixels)."""
    center = torch.tensor([e["center"] for e in entries], dtype=torch.float64).view(-1, 2)
    scale = torch.tensor([float(e["scale"]) for e in entries], dtype=torch.float64)
    center[:, 1] += CENTER_SHIFT * scale
    return center - 1.0, scale * 200.0 * BOX_ENLARGE


def _load_image(path: Path) -> Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except Exception as exc:
        raise DataCorrupt(f"{path}: cannot decode the image ({type(exc).__name__}: {exc}); expected a JPEG") from None


def crop_persons(image: Tensor, center: Tensor, side: Tensor, out: int) -> Tensor:
    """uint8 3 x H x W image, P crop centres (0-based px) and sides -> uint8 P x 3 x out x out (one grid_sample)."""
    h, w = image.shape[-2:]
    steps = (torch.arange(out, dtype=torch.float64) + 0.5) / out - 0.5  # output pixel centres, box units
    px = center[:, 0, None] + side[:, None] * steps  # P x out, image pixel coordinates
    py = center[:, 1, None] + side[:, None] * steps
    gx = (2 * px + 1) / w - 1  # align_corners=False: pixel p's centre is at (2p + 1) / size - 1
    gy = (2 * py + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1).float()
    src = image.float()[None].expand(len(center), -1, -1, -1)
    crops = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.round_().clamp_(0, 255).to(torch.uint8)


def load_crops(folder: Path, entries: list[dict], out: int, workers: int = 8) -> Tensor:
    """All persons' crops, uint8 N x 3 x out x out; images decoded in threads, one grid_sample per image."""
    center, side = crop_boxes(entries)
    by_image: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_image.setdefault(e["image"], []).append(i)
    crops = torch.zeros(len(entries), 3, out, out, dtype=torch.uint8)
    missing = [name for name in by_image if not (folder / "images" / name).is_file()]
    if missing:
        raise DataUnavailable(f"{len(missing)} MPII images missing under {folder / 'images'} "
                              f"(first: {missing[0]}); " + HINT.format(root=folder.parent))

    def work(name: str) -> None:
        idx = torch.tensor(by_image[name])
        crops[idx] = crop_persons(_load_image(folder / "images" / name), center[idx], side[idx], out)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, by_image))
    return crops
