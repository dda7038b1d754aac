"""A short baseline training run whose intermediate models are looked at: the probe pool's states and the
ReLoss loss net's training outputs both come from here."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ..plugins.contracts import Profile, Task, TaskData
from .step import make_optimizer, make_scheduler, train_step


def train_baseline(task: Task, data: TaskData, profile: Profile, loss_fn: Callable, gen: torch.Generator,
                   at: Iterable[int], visit: Callable[[int, nn.Module], None]) -> None:
    """Train a fresh model (seed the global RNG first: it initialises the model) with ``loss_fn`` and the
    profile's optimiser and schedule, one permutation of the training split per epoch drawn from ``gen``;
    ``visit(step, model)`` at each step in ``at`` (0 = untrained), stopping after the last one."""
    device = data.train.x.device
    model = task.build_model().to(device)
    optimizer = make_optimizer(profile, model.parameters())
    scheduler = make_scheduler(profile, optimizer)
    wanted = sorted(set(at))
    if not wanted:
        return
    n = len(data.train)
    bs = min(profile.batch_size, n)
    steps_per_epoch = n // bs
    step = 0
    if step in wanted:
        visit(step, model)
    while step < wanted[-1]:
        perm = torch.randperm(n, device=device, generator=gen)
        model.train()
        for i in range(steps_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            train_step(task, model, loss_fn, optimizer, data.train.x[idx], data.train.y[idx], gen, device, profile.amp)
            step += 1
            if step in wanted:
                visit(step, model)
            if step >= wanted[-1]:
                return
        scheduler.step()
