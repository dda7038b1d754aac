"""Test-set bootstrap interval of a task's metric: how much a single run's test number owes to which test
samples happened to be drawn (resampling test samples — images, or persons for PCKh — with replacement).

The resampled metric is the task's own ``score`` (ties, NaN rules and all), so no metric is re-implemented
here; one call per resample on decoded predictions (N x C logits, N scores, N x J x 2 joints) costs about
a second for 1000 resamples of 10k test samples, once per run.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_interval(score: Callable[[Tensor, Tensor], float], predictions: Tensor, targets: Tensor,
                       resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
                       ) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``score(predictions, targets)`` over resampled rows (first dim).

    Deterministic for a given ``seed`` (its own generator; the global RNG is untouched). None when there
    are fewer than 2 rows or every resample's score is NaN.
    """
    n = int(predictions.shape[0])
    if n < 2:
        return None
    preds, tgts = predictions.detach().cpu(), targets.detach().cpu()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=gen)
    values = torch.tensor([float(score(preds[i], tgts[i])) for i in idx], dtype=torch.float64)
    values = values[~torch.isnan(values)]
    if len(values) == 0:
        return None
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return float(low), float(high)
