"""Batch-level average-precision surrogates on one ranked list (Smooth-AP, FastAP, blackbox ranks) + a score memory.

Every function takes 1-D ``scores``, binary ``labels`` and ``weights`` (1 = item present, 0 = an empty
slot of the memory) and returns a 0-d loss ``1 - AP~``; a list without positives gives 0 (no gradient),
decided arithmetically so nothing syncs with the host. All are vectorised (n x n or bins x n tensors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..plugins.contracts import Task


def ap_task_reason(method: str, task: Task) -> str | None:
    """None when the task ranks one binary score by AP (logits decoded to a score, 0/1 targets), else why not."""
    metric = task.metric_name.lower().replace(" ", "")
    if task.output_kind != "logits" or metric not in {"ap", "averageprecision"}:
        return f"{method} needs a task scored by average precision of a decoded score; {task.name} has " \
               f"{task.metric_name} on {task.output_kind}"
    return None


def standardise(scores: Tensor, weights: Tensor, eps: float = 1e-6) -> Tensor:
    """(s - mean) / std over the present items of the list: rank-preserving (AP unchanged) and scale-free.

    The papers rank L2-normalised embeddings, whose similarity scale is fixed; a raw logit-difference score
    is not, and under a fixed SGD protocol it drifts to magnitudes where tanh / sigmoid relaxations and the
    blackbox perturbation stop giving gradients (measured: Smooth-AP on raw tanh(s/2) collapsed to AP 0.2 on
    mnist-ap quick). Standardising removes that drift: scaling all scores up no longer changes the loss.
    """
    w = weights.to(scores.dtype)
    count = w.sum().clamp_min(1.0)
    mean = (scores * w).sum() / count
    var = ((scores - mean).square() * w).sum() / count
    return (scores - mean) / (var + eps).sqrt()


def _finish(ap_sum: Tensor, n_pos: Tensor) -> Tensor:
    """1 - AP, or 0 when the list holds no positive (no host sync: a multiplication, not a branch)."""
    return (n_pos > 0).to(ap_sum.dtype) * (1.0 - ap_sum / n_pos.clamp_min(1.0))


def smooth_ap(sim: Tensor, labels: Tensor, weights: Tensor, temperature: float) -> Tensor:
    """Smooth-AP (Brown et al., ECCV 2020): ranks with the indicator replaced by sigmoid(diff / temperature).

    AP~ = 1/|P| sum_{i in P} (1 + sum_{j in P, j != i} s_ij) / (1 + sum_{j != i} s_ij),
    s_ij = sigmoid((sim_j - sim_i) / temperature).
    """
    y, w = labels.to(sim.dtype), weights.to(sim.dtype)
    off_diag = 1.0 - torch.eye(sim.shape[0], device=sim.device, dtype=sim.dtype)
    above = torch.sigmoid((sim[None, :] - sim[:, None]) / temperature) * off_diag * w[None, :]
    rank_all = 1.0 + above.sum(1)
    rank_pos = 1.0 + (above * y[None, :]).sum(1)
    pos = y * w
    return _finish((pos * rank_pos / rank_all).sum(), pos.sum())


def fast_ap(dist: Tensor, labels: Tensor, weights: Tensor, bins: int, max_dist: float = 4.0) -> Tensor:
    """FastAP (Cakir et al., CVPR 2019): AP from soft (triangular-kernel) histograms of distances in [0, max_dist].

    AP~ = 1/N+ sum_b h+_b H+_b / H_b over bin centres b (H: cumulative counts, + : positives only).
    """
    y, w = labels.to(dist.dtype), weights.to(dist.dtype)
    delta = max_dist / bins
    centres = torch.linspace(0.0, max_dist, bins + 1, device=dist.device, dtype=dist.dtype)
    pulse = torch.relu(1.0 - (dist[None, :] - centres[:, None]).abs() / delta) * w[None, :]  # (bins+1, n)
    h_pos, h_all = pulse @ y, pulse.sum(1)
    cum_pos, cum_all = h_pos.cumsum(0), h_all.cumsum(0)
    terms = torch.where(cum_all > 0, h_pos * cum_pos / cum_all.clamp_min(1e-12), torch.zeros_like(cum_all))
    return _finish(terms.sum(), (y * w).sum())


def normalised_rank(scores: Tensor) -> Tensor:
    """Rank 1 for the highest score, divided by the list length (ties broken by position), as Rolinek et al."""
    order = torch.argsort(scores, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, scores.shape[0] + 1, device=scores.device)
    return ranks.to(scores.dtype) / scores.shape[0]


class BlackboxRanker(torch.autograd.Function):
    """Ranking as a blackbox solver (Vlastelica et al. 2020; Rolinek et al., CVPR 2020).

    Forward: exact normalised ranks. Backward: the gradient of the piecewise-linear interpolation,
    ``-(rank(s) - rank(s + lambda * dL/drank)) / lambda``.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, lam: float) -> Tensor:  # type: ignore[override]
        ranks = normalised_rank(scores)
        ctx.lam = lam
        ctx.save_for_backward(scores, ranks)
        return ranks

    @staticmethod
    def backward(ctx, grad_ranks: Tensor):  # type: ignore[override]
        scores, ranks = ctx.saved_tensors
        perturbed = normalised_rank(scores + ctx.lam * grad_ranks)
        return -(ranks - perturbed) / ctx.lam, None


def blackbox_ap(scores: Tensor, labels: Tensor, weights: Tensor, lam: float, margin: float = 0.0) -> Tensor:
    """1 - AP of exact ranks, AP = 1/|P| sum_{i in P} rank+_i / rank_i, differentiated through the blackbox ranker.

    Absent items (weight 0) are sent to the bottom of the list; ``margin`` shifts positives down and negatives
    up by margin/2 before ranking (the paper's score margin, deterministic here). Ranks among positives
    carry no gradient (as in the authors' code).
    """
    y, w = labels.to(scores.dtype), weights.to(scores.dtype)
    pos = y * w
    shifted = scores - margin * (y - 0.5)
    shifted = torch.where(w > 0, shifted, torch.full_like(shifted, float("-inf")).detach())
    ranks = BlackboxRanker.apply(shifted, lam)
    with torch.no_grad():  # positives first (ranks <= 1 < 2), then by rank: rank within the positives
        rank_pos = normalised_rank(2.0 * pos - ranks)
    return _finish((pos * rank_pos / ranks).sum(), pos.sum())


class ScoreMemory:
    """A ring buffer of the last ``size`` (score, label) pairs seen in training (cross-batch memory).

    ``extend`` returns the batch followed by the memory (detached: past scores carry no gradient; the
    current batch is ranked against them), then stores the batch. The write position advances by the
    batch size, a shape, so nothing syncs with the host. ``size=0`` is the plain batch.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.scores: Tensor | None = None
        self.labels: Tensor | None = None
        self.valid: Tensor | None = None
        self.ptr = 0

    def extend(self, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ones = torch.ones_like(scores)
        if self.size <= 0:
            return scores, labels.to(scores.dtype), ones
        if self.scores is None or self.scores.device != scores.device:
            self.scores = torch.zeros(self.size, device=scores.device, dtype=scores.dtype)
            self.labels = torch.zeros_like(self.scores)
            self.valid = torch.zeros_like(self.scores)
        assert self.labels is not None and self.valid is not None
        y = labels.to(scores.dtype)
        out = (torch.cat([scores, self.scores.to(scores.dtype)]), torch.cat([y, self.labels]),
               torch.cat([ones, self.valid]))
        k = min(scores.shape[0], self.size)
        idx = (self.ptr + torch.arange(k, device=scores.device)) % self.size
        self.scores[idx] = scores[-k:].detach().to(self.scores.dtype)
        self.labels[idx] = y[-k:]
        self.valid[idx] = 1.0
        self.ptr = (self.ptr + k) % self.size
        return out
