"""Exact metrics, vectorised in torch: average precision, accuracy, PCKh.

Each is tested against a reference implementation (scikit-learn; the official MPII formula).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """AP as scikit-learn defines it: sum over thresholds of (R_n - R_{n-1}) * P_n; ties share a threshold.

    NaN when there is no positive label.
    """
    s = scores.detach().flatten().double().cpu()
    y = labels.detach().flatten().cpu().double()
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(s, descending=True, stable=True)
    s, y = s[order], y[order]
    tps, fps = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last index of each run of tied scores closes a threshold
    tps, fps = tps[last], fps[last]
    precision = tps / (tps + fps)
    recall = tps / n_pos
    d_recall = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((d_recall * precision).sum())


def interpolated_average_precision(scores: Tensor, labels: Tensor) -> float:
    """VOC all-point *interpolated* AP (the UniLoss release's MNIST metric): the area under the precision
    envelope (at each recall, the best precision at that recall or beyond), from scikit-learn's
    precision-recall curve (ties share a threshold). It is >= :func:`average_precision`. NaN without positives.
    """
    from sklearn.metrics import precision_recall_curve

    y = labels.detach().flatten().cpu().numpy().astype(bool)
    if not y.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, scores.detach().flatten().double().cpu().numpy())
    precision, recall = precision[::-1], recall[::-1]  # recall ascending from 0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1] (ties go to the lowest class index, like argmax)."""
    return float((logits.detach().argmax(dim=-1) == labels.detach()).double().mean())


# -- PCKh (MPII) -----------------------------------------------------------------------------
SC_BIAS = 0.6
"""MPII head size = SC_BIAS x the head box diagonal (the official evaluation's constant)."""

MPII_MEAN_EXCLUDED = (6, 7)
"""Pelvis and thorax: left out of the official MPII "Mean" (of the 16 standard joints)."""


@dataclass(frozen=True)
class PCKhResult:
    """PCKh in percent: ``per_joint`` (J,), its visible ``count`` (J,), and the count-weighted ``mean``.

    ``per_joint`` is NaN for a joint with no visible instance; ``mean`` = correct / visible over
    the joints chosen by ``mean_joints`` (the official "Mean" weights joints by their counts).
    """

    per_joint: Tensor
    count: Tensor
    mean: float


def head_sizes(head_boxes: Tensor) -> Tensor:
    """N x 2 x 2 boxes [[x1, y1], [x2, y2]] -> N head sizes SC_BIAS x ||(x2 - x1, y2 - y1)||."""
    boxes = torch.as_tensor(head_boxes, dtype=torch.float64)
    return SC_BIAS * torch.linalg.vector_norm(boxes[:, 1] - boxes[:, 0], dim=-1)


def pckh_correct(pred_xy: Tensor, gt_xy: Tensor, head_size: Tensor, visible: Tensor,
                 threshold: float = 0.5) -> Tensor:
    """N x J bool: visible and ||pred - gt|| / head size <= threshold (head_size N or N x J)."""
    pred = torch.as_tensor(pred_xy, dtype=torch.float64)
    gt = torch.as_tensor(gt_xy, dtype=torch.float64, device=pred.device)
    size = torch.as_tensor(head_size, dtype=torch.float64, device=pred.device)
    size = size[:, None] if size.dim() == 1 else size
    err = torch.linalg.vector_norm(pred - gt, dim=-1) / size  # divided first, as the official code does
    return (err <= threshold) & (torch.as_tensor(visible, device=pred.device) > 0)


def pckh(pred_xy: Tensor, gt_xy: Tensor, head_boxes: Tensor, visible: Tensor, threshold: float = 0.5,
         mean_joints: Sequence[int] | None = None) -> PCKhResult:
    """The official MPII PCKh: pred/gt N x J x 2, head boxes N x 2 x 2 [[x1,y1],[x2,y2]], visible N x J.

    A joint is correct iff visible and ||pred - gt|| <= threshold x 0.6 x head-box diagonal.
    Accepts tensors or NumPy arrays; computed in float64. For the official 16-joint "Mean" pass
    ``mean_joints`` = every index but MPII_MEAN_EXCLUDED.
    """
    vis = torch.as_tensor(visible).double().cpu()
    correct = pckh_correct(pred_xy, gt_xy, head_sizes(head_boxes), vis, threshold).double().cpu()
    count = vis.gt(0).double().sum(0)
    hits = correct.sum(0)
    per_joint = 100.0 * hits / count  # NaN where a joint is never visible, as in the official code
    idx = torch.arange(len(count)) if mean_joints is None else torch.as_tensor(list(mean_joints))
    total = count[idx].sum()
    mean = float(100.0 * hits[idx].sum() / total) if total > 0 else float("nan")
    return PCKhResult(per_joint=per_joint, count=count, mean=mean)
