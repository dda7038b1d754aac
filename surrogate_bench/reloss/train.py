"""Train a loss network so its batch losses rank batches like the exact metric (Spearman -> -1)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from ..plugins.contracts import Task
from .collect import Batches
from .lossnets import baseline_values, loss_values
from .spearman import SoftRanker, soft_spearman


@dataclass(frozen=True)
class TrainSettings:
    """Loss-network optimisation settings (the paper's: Adam 0.01, wd 1e-3, penalty weight 10)."""

    epochs: int = 10
    group: int = 64  # batches ranked together per step
    lr: float = 0.01
    weight_decay: float = 1e-3
    gp_weight: float = 10.0
    gp_norm: str = "batch"  # "batch": norm of the whole batch's output gradient; "sample": per row (release)
    gp_batches: int = 8  # batches of each group the penalty is computed on (0 = all; the double backward is costly)
    sigma: float = 1.0  # Gaussian width of heatmap targets
    match_scale: bool = True  # rescale the trained loss so its mean gradient norm equals the baseline's


def quality(task: Task, metric: Tensor) -> Tensor:
    """The metric oriented so that higher is better."""
    return metric if task.higher_is_better else -metric


def gradient_penalty(losses: Tensor, outputs: Tensor, norm: str) -> Tensor:
    """Mean of (||d loss_b / d outputs_b||_2 - 1)^2 over batches b (batches are independent: one backward)."""
    (grad,) = torch.autograd.grad(losses.sum(), outputs, create_graph=True)
    if norm == "sample":
        norms = grad.flatten(2).norm(dim=-1)  # (G, n): one norm per prediction, as the authors' code does
    else:
        norms = grad.flatten(1).norm(dim=-1)  # (G,)
    return (norms - 1).pow(2).mean()


@torch.no_grad()
def batch_losses(net: nn.Module, task: Task, batches: Batches, sigma: float, chunk: int = 256) -> Tensor:
    """The loss network's value on each batch of a stack."""
    return torch.cat([loss_values(net, task, batches.outputs[i:i + chunk], batches.targets[i:i + chunk], sigma)
                      for i in range(0, len(batches), chunk)])


def exact_spearman(loss: Tensor, metric: Tensor) -> float:
    """scipy's Spearman correlation of loss values with metric values (NaN when either is constant)."""
    a, b = loss.double().cpu().numpy(), metric.double().cpu().numpy()
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def mean_gradient_norm(fn: Callable[[Tensor, Tensor], Tensor], batches: Batches, chunk: int = 64) -> float:
    """Mean over batches of ||d loss_b / d outputs_b||_2 (whole-batch gradient)."""
    norms = []
    for i in range(0, len(batches), chunk):
        out = batches.outputs[i:i + chunk].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(out, batches.targets[i:i + chunk]).sum(), out)
        norms.append(grad.flatten(1).norm(dim=-1))
    return float(torch.cat(norms).mean())


def match_gradient_scale(net: nn.Module, task: Task, batches: Batches, sigma: float) -> float:
    """Multiply the loss by a constant so its mean gradient norm equals the baseline loss's on ``batches``.

    Ranks (and so Spearman) are unchanged; the run's optimiser settings, tuned for the baseline, then fit.
    """
    learned = mean_gradient_norm(lambda o, t: loss_values(net, task, o, t, sigma), batches)
    base = mean_gradient_norm(lambda o, t: baseline_values(task, o, t, sigma), batches)
    scale = base / learned if learned > 0 and math.isfinite(learned) else 1.0
    net.scale.mul_(scale)
    return scale


def validation_spearman(net: nn.Module, task: Task, val: Batches, sigma: float) -> float:
    net.eval()
    return exact_spearman(batch_losses(net, task, val, sigma), quality(task, val.metric))


def train_lossnet(net: nn.Module, task: Task, train: Batches, val: Batches, settings: TrainSettings,
                  ranker: SoftRanker, gen: torch.Generator, log: Callable[[str], None]) -> dict[str, Any]:
    """Adam on -(soft Spearman of -loss with metric) + gp_weight * penalty; keeps the best validation state."""
    t0 = time.perf_counter()
    device = train.outputs.device
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    q_train = quality(task, train.metric).float()
    g = max(2, min(settings.group, len(train)))
    best = validation_spearman(net, task, val, settings.sigma)
    best_state, best_epoch, history = copy.deepcopy(net.state_dict()), 0, []
    for epoch in range(1, settings.epochs + 1):
        net.train()
        perm = torch.randperm(len(train), device=device, generator=gen)
        groups = perm[: len(perm) // g * g].view(-1, g)
        total = torch.zeros((), device=device)
        for idx in groups:
            outputs = train.outputs[idx]
            losses = loss_values(net, task, outputs, train.targets[idx], settings.sigma)
            rho = soft_spearman(losses.unsqueeze(0), q_train[idx].unsqueeze(0), ranker).squeeze(0)
            k = settings.gp_batches or g  # groups are random, so the first k batches are a random subset
            sub = train.outputs[idx[:k]].detach().requires_grad_(True)
            penalty = gradient_penalty(loss_values(net, task, sub, train.targets[idx[:k]], settings.sigma), sub,
                                       settings.gp_norm)
            objective = rho + settings.gp_weight * penalty  # rho -> -1: lower loss ranks with better metric
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            total += rho.detach()
        rho_val = validation_spearman(net, task, val, settings.sigma)
        history.append({"epoch": epoch, "train_soft_spearman": float(total / max(len(groups), 1)),
                        "val_spearman": rho_val})
        if math.isfinite(rho_val) and not (rho_val >= best):
            best, best_state, best_epoch = rho_val, copy.deepcopy(net.state_dict()), epoch
    net.load_state_dict(best_state)
    net.eval()
    scale = match_gradient_scale(net, task, val, settings.sigma) if settings.match_scale else 1.0
    base = exact_spearman(baseline_values(task, val.outputs, val.targets, settings.sigma), quality(task, val.metric))
    log(f"reloss: loss trained in {time.perf_counter() - t0:.1f}s, val Spearman {best:.4f} "
        f"(epoch {best_epoch}) vs {'mse' if task.output_kind == 'heatmaps' else 'ce'} {base:.4f}")
    return {"val_spearman": best, "baseline_spearman": base,
            "baseline": "mse" if task.output_kind == "heatmaps" else "ce", "best_epoch": best_epoch,
            "grad_scale": scale, "history": history, "n_train_batches": len(train), "n_val_batches": len(val),
            "loss_train_time_s": round(time.perf_counter() - t0, 3)}
