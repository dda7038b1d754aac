"""The step primitives of a run: the profile's optimiser, one training step, predictions and the exact metric."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn

from ..plugins.contracts import Profile, Split, Task
from ..plugins.errors import SuiteError


def make_optimizer(profile: Profile, params) -> torch.optim.Optimizer:
    """The profile's optimiser over ``params`` (SGD, RMSprop or Adam)."""
    if profile.optimizer == "sgd":
        return torch.optim.SGD(params, lr=profile.lr, momentum=profile.momentum,
                               weight_decay=profile.weight_decay, nesterov=profile.nesterov)
    if profile.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=profile.lr, weight_decay=profile.weight_decay)
    if profile.optimizer == "adam":
        return torch.optim.Adam(params, lr=profile.lr, weight_decay=profile.weight_decay)
    raise SuiteError(f"unknown optimizer {profile.optimizer!r} in profile")


def make_scheduler(profile: Profile, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
    """The profile's step schedule (lr × gamma at each milestone epoch)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(profile.milestones), profile.gamma)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when the profile asks for it; a no-op elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(task: Task, model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               generator: torch.Generator, device: torch.device, amp: bool) -> Tensor:
    """One optimisation step on a storage batch; returns the detached loss (no host sync)."""
    xb, y = task.train_batch(x, y, generator)
    with autocast(device, amp):
        out = model(xb)
    loss = loss_fn(out.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict(task: Task, model: nn.Module, split: Split, device: torch.device, profile: Profile,
            batch_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Decoded predictions for a whole split, evaluated in batches (by ``batch_fn`` when given: a captured one)."""
    model.eval()
    preds = []
    for start in range(0, len(split), profile.eval_batch_size):
        if batch_fn is not None:
            preds.append(batch_fn(split.x[start:start + profile.eval_batch_size]))
            continue
        xb = task.inputs(split.x[start:start + profile.eval_batch_size], train=False)
        with autocast(device, profile.amp):
            out = model(xb)
        preds.append(task.decode(out.float()))
    return torch.cat(preds)


def score(task: Task, predictions: Tensor, targets: Tensor) -> float:
    """The task's exact metric of decoded predictions (NaN where undefined, e.g. no positive)."""
    return float(task.score(predictions, targets))


def evaluate(task: Task, model: nn.Module, split: Split, device: torch.device, profile: Profile,
             batch_fn: Callable[[Tensor], Tensor] | None = None) -> float:
    """The exact metric of the model on a whole split."""
    return score(task, predict(task, model, split, device, profile, batch_fn), split.y)
