"""Average precision and accuracy against scikit-learn, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score

from surrogate_bench.taskkit.metrics import accuracy, average_precision


@pytest.mark.parametrize("trial", range(40))
def test_ap_matches_sklearn_with_ties(trial: int) -> None:
    rng = np.random.default_rng(trial)
    n = int(rng.integers(2, 200))
    labels = rng.random(n) < rng.uniform(0.05, 0.6)
    labels[0] = True
    scores = rng.normal(size=n)
    if trial % 2:  # heavy ties
        scores = np.round(scores, 1)
    got = average_precision(torch.tensor(scores), torch.tensor(labels))
    assert got == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_ap_edge_cases() -> None:
    assert average_precision(torch.tensor([0.3, 0.2]), torch.tensor([1, 0])) == 1.0
    assert average_precision(torch.tensor([1.0, 1.0]), torch.tensor([1, 0])) == 0.5  # one tied threshold
    assert math.isnan(average_precision(torch.tensor([0.3, 0.2]), torch.tensor([0, 0])))


@pytest.mark.parametrize("trial", range(10))
def test_accuracy_matches_sklearn(trial: int) -> None:
    g = torch.Generator().manual_seed(trial)
    logits = torch.randn(100, 7, generator=g)
    labels = torch.randint(0, 7, (100,), generator=g)
    assert accuracy(logits, labels) == pytest.approx(accuracy_score(labels, logits.argmax(1)))


def _voc_devkit_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """The PASCAL VOC devkit's all-point interpolated AP, written as its loop (a reference for untied scores)."""
    order = np.argsort(-scores, kind="stable")
    y = labels[order].astype(float)
    tp, fp = np.cumsum(y), np.cumsum(1 - y)
    rec, prec = tp / y.sum(), tp / (tp + fp)
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def test_interpolated_ap_matches_the_voc_devkit_loop_and_bounds_exact_ap() -> None:
    from surrogate_bench.taskkit.metrics import average_precision, interpolated_average_precision

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 200))
        labels = rng.random(n) < 0.2
        labels[0] = True
        scores = rng.normal(size=n) + labels * rng.uniform(0, 3)
        voc = interpolated_average_precision(torch.tensor(scores), torch.tensor(labels))
        assert voc == pytest.approx(_voc_devkit_ap(scores, labels), abs=1e-12)
        assert voc >= average_precision(torch.tensor(scores), torch.tensor(labels)) - 1e-12
    assert np.isnan(interpolated_average_precision(torch.tensor([0.1, 0.2]), torch.tensor([0, 0])))
