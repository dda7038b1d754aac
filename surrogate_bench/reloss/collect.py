"""Training data for the loss network: a model's outputs at several stages of a short baseline run,
cut into batches whose targets are partly randomised so the exact batch metric spreads over its range.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor

from ..plugins.contracts import Profile, Task, TaskData
from .lossnets import baseline_values


@dataclass(frozen=True)
class Budget:
    """How much data and training the loss gets (scaled by the run profile)."""

    pool: int  # training-split samples whose outputs are collected (80% -> loss training, 20% -> validation)
    stages: int  # model snapshots, the untrained model included
    ce_steps: int  # steps of the short baseline (CE / heatmap MSE) training run
    copies: int  # randomised-target copies of every batch
    epochs: int  # loss-network epochs (paper: 10)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


BUDGETS = {
    "smoke": Budget(pool=512, stages=2, ce_steps=4, copies=2, epochs=2),
    # quick: snapshots of 2048 samples (was 4096; 10 copies keep ~the former 750 training batches). 150 baseline
    # steps stay: with 48 the synth-pose loss net ranked batches the wrong way (val Spearman +0.10 vs -0.23)
    "quick": Budget(pool=2048, stages=5, ce_steps=150, copies=10, epochs=10),
    "paper": Budget(pool=25600, stages=8, ce_steps=3000, copies=4, epochs=10),
}


def budget_for(profile_name: str, epochs: int = 0) -> Budget:
    """The budget of a profile (unknown names get the quick one); ``epochs > 0`` overrides its epochs."""
    b = BUDGETS.get(profile_name, BUDGETS["quick"])
    return Budget(b.pool, b.stages, b.ce_steps, b.copies, epochs or b.epochs)


@dataclass
class Batches:
    """A stack of metric batches: outputs (B, n, ...), targets (B, n, ...), exact metric per batch (B,)."""

    outputs: Tensor
    targets: Tensor
    metric: Tensor

    def __len__(self) -> int:
        return int(self.metric.shape[0])

    def index(self, idx: Tensor) -> "Batches":
        return Batches(self.outputs[idx], self.targets[idx], self.metric[idx])


def stage_steps(total: int, stages: int) -> list[int]:
    """Snapshot steps: 0 (untrained) then geometrically spaced up to ``total`` (early training changes most)."""
    if stages <= 1 or total <= 0:
        return [0]
    later = [round(math.exp(math.log(max(total, 1)) * k / (stages - 1))) for k in range(stages)][1:]
    return sorted({0, *later})


@torch.no_grad()
def snapshot(task: Task, model: torch.nn.Module, x: Tensor, chunk: int) -> Tensor:
    """The model's raw outputs on storage samples ``x`` (eval mode, no augmentation)."""
    model.eval()
    out = torch.cat([model(task.inputs(x[i:i + chunk], train=False)).float() for i in range(0, len(x), chunk)])
    model.train()
    return out


def stage_outputs(task: Task, data: TaskData, profile: Profile, pool_x: Tensor, total_steps: int, stages: int,
                  gen: torch.Generator, log: Callable[[str], None]) -> list[Tensor]:
    """Train a fresh model with the baseline loss on the training split; its outputs on the pool per stage."""
    from ..running.baseline import train_baseline

    snaps = stage_steps(total_steps, stages)
    outs: list[Tensor] = []
    train_baseline(task, data, profile, lambda out, y: baseline_values(task, out, y), gen, snaps,
                   lambda step, model: outs.append(snapshot(task, model, pool_x, profile.eval_batch_size)))
    log(f"reloss: collected outputs at steps {snaps} of a baseline run on {len(data.train)} training samples")
    return outs


def randomize_targets(task: Task, targets: Tensor, outputs: Tensor, gen: torch.Generator,
                      labels: str = "shuffle") -> Tensor:
    """Replace the targets of a random fraction (uniform in [0, 1] per batch) of each batch.

    Logits, ``labels="shuffle"`` (suite): labels drawn from the batch's own true labels (a shuffle: keeps
    the class mix, e.g. AP's prevalence); ``labels="argmax"`` (ReLoss release): every label is the model's
    argmax, and the last ``n - floor(frac n)`` of the batch get uniformly random classes instead.
    Heatmaps (either mode): uniformly random joint positions on the heatmap.
    """
    b, n = targets.shape[:2]
    device = targets.device
    frac = torch.rand(b, 1, device=device, generator=gen)
    if labels == "argmax" and task.output_kind != "heatmaps":
        keep = (frac * n).floor()
        hit = torch.arange(n, device=device)[None, :] >= keep
        n_classes = outputs.shape[-1]
        random = torch.randint(0, n_classes, (b, n), device=device, generator=gen)
        return torch.where(hit, random, outputs.argmax(-1)).to(targets.dtype)
    hit = torch.rand(b, n, device=device, generator=gen) < frac
    if task.output_kind == "heatmaps":
        h, w = outputs.shape[-2:]
        rand_xy = torch.rand(*targets.shape[:-1], 2, device=device, generator=gen)
        rand_xy = rand_xy * torch.tensor([w - 1, h - 1], device=device, dtype=rand_xy.dtype)
        new = targets.clone()
        new[..., 0:2] = torch.where(hit[..., None, None], rand_xy.to(targets.dtype), targets[..., 0:2])
        return new
    shuffle = torch.rand(b, n, device=device, generator=gen).argsort(dim=1)
    return torch.where(hit, targets.gather(1, shuffle), targets)


def make_batches(task: Task, stage_outs: list[Tensor], targets: Tensor, n: int, copies: int,
                 gen: torch.Generator, labels: str = "shuffle") -> Batches:
    """Cut each stage's outputs into batches of ``n`` (``copies`` shuffles), randomise targets (``labels``:
    see :func:`randomize_targets`; ``"true"`` keeps them), score exactly."""
    m = len(targets) // n * n
    outs, tgts = [], []
    for out in stage_outs:
        for _ in range(copies):
            idx = torch.randperm(len(targets), device=targets.device, generator=gen)[:m]
            outs.append(out[idx].reshape(-1, n, *out.shape[1:]))
            tgts.append(targets[idx].reshape(-1, n, *targets.shape[1:]))
    outputs, clean = torch.cat(outs), torch.cat(tgts)
    noisy = clean if labels == "true" else randomize_targets(task, clean, outputs, gen, labels)
    metric = task.batch_metric(outputs, noisy).double().to(outputs.device)
    keep = torch.isfinite(metric)  # e.g. AP of a batch without positives
    return Batches(outputs[keep], noisy[keep], metric[keep])


def collect(task: Task, data: TaskData, profile: Profile, budget: Budget, batch_size: int, seed: int,
            log: Callable[[str], None], train_labels: str = "shuffle",
            val_labels: str = "shuffle") -> tuple[Batches, Batches]:
    """Loss-training and held-out batches from the task's training split (disjoint samples); how each
    set's targets are randomised: :func:`make_batches` (the ReLoss release: argmax / true)."""
    device = data.train.x.device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    torch.manual_seed(seed)  # model initialisation of the baseline run
    pool = min(budget.pool, len(data.train))
    n = min(batch_size, max(2, pool // 5))
    order = torch.randperm(len(data.train), device=device, generator=gen)[:pool]
    stage_outs = stage_outputs(task, data, profile, data.train.x[order], budget.ce_steps, budget.stages, gen, log)
    cut = pool - max(n, pool // 5)
    targets = data.train.y[order]
    train = make_batches(task, [o[:cut] for o in stage_outs], targets[:cut], n, budget.copies, gen, train_labels)
    val = make_batches(task, [o[cut:] for o in stage_outs], targets[cut:], n, budget.copies, gen, val_labels)
    return train, val
