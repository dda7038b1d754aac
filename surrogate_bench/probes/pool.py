"""The probe pool: one cached set of evaluation batches per task, identical for every method.

Model states along a baseline (CE / MSE-heatmap) training trajectory, each also with its
weights perturbed at a few noise levels, are evaluated on held-out data and cut into
batches, so the batch metric spreads over its range.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch import Tensor, nn

from .. import __version__
from ..plugins.contracts import Profile, Task, TaskData
from ..plugins.registry import get_method
from ..running.runner import autocast, make_optimizer, train_step
from ..running.store import atomic_write_bytes

STAGES = 6  # snapshots along the trajectory, the untrained model included
NOISE = (0.0, 0.3, 1.0)  # weight perturbation, in units of each tensor's std
POOL_TRAIN_SIZE = 8192
POOL_MAX_EPOCHS = 3


@dataclass
class ProbePool:
    """B batches of outputs and targets with their exact batch metric."""

    outputs: Tensor  # B x n x ...
    targets: Tensor  # B x n x ...
    metric: Tensor  # B
    digest: str  # sha256 of the stored pool: the same value for every method

    def __len__(self) -> int:
        return int(self.metric.shape[0])


def baseline_method(task: Task) -> str:
    return "ce" if task.output_kind == "logits" else "mse-heatmap"


def pool_batch_size(task: Task) -> int:
    return 128 if task.output_kind == "logits" else 16


def pool_settings(task: Task, profile_name: str) -> dict:
    return {"task": task.config(), "profile": profile_name, "profile_settings": task.profile(profile_name).as_dict(),
            "baseline": baseline_method(task), "stages": STAGES, "noise": list(NOISE),
            "batch": pool_batch_size(task), "train_size": POOL_TRAIN_SIZE, "epochs": POOL_MAX_EPOCHS,
            "version": __version__}


def pool_path(results_dir: Path, task: Task, profile_name: str) -> Path:
    blob = json.dumps(pool_settings(task, profile_name), sort_keys=True, default=str)
    return Path(results_dir) / "pools" / f"{task.name}-{profile_name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.pt"


@torch.no_grad()
def _outputs(task: Task, model: nn.Module, x: Tensor, device: torch.device, profile: Profile) -> Tensor:
    model.eval()
    outs = []
    for s in range(0, len(x), profile.eval_batch_size):
        with autocast(device, profile.amp):
            outs.append(model(task.inputs(x[s:s + profile.eval_batch_size], train=False)).float())
    return torch.cat(outs)


def _perturbed(model: nn.Module, scale: float, gen: torch.Generator) -> nn.Module:
    if scale == 0:
        return model
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for p in noisy.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen, device="cpu").to(p.device) * p.std() * scale)
    return noisy


def build_pool(task: Task, data: TaskData, profile_name: str, device: torch.device, seed: int = 0) -> dict:
    """Train the baseline briefly, snapshot outputs on the validation split, cut into batches."""
    profile = task.profile(profile_name)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    train = data.train.head(POOL_TRAIN_SIZE)
    probe = data.val if len(data.val) else data.test
    model = task.build_model().to(device)
    loss_fn = get_method(baseline_method(task)).make_loss(task)
    opt = make_optimizer(profile, model.parameters())
    bs = min(profile.batch_size, len(train))
    steps_per_epoch = len(train) // bs
    total = steps_per_epoch * min(profile.epochs, POOL_MAX_EPOCHS)
    snap_at = {round(i * total / (STAGES - 1)) for i in range(STAGES)}
    snapshots: list[Tensor] = []

    def snapshot() -> None:
        for scale in NOISE:
            snapshots.append(_outputs(task, _perturbed(model, scale, noise_gen), probe.x, device, profile).cpu())

    step = 0
    if 0 in snap_at:
        snapshot()
    while step < total:
        perm = torch.randperm(len(train), device=device, generator=gen)
        for i in range(steps_per_epoch):
            model.train()
            idx = perm[i * bs:(i + 1) * bs]
            train_step(task, model, loss_fn, opt, train.x[idx], train.y[idx], gen, device, profile.amp)
            step += 1
            if step in snap_at:
                snapshot()
            if step >= total:
                break

    n = pool_batch_size(task)
    per_state = len(probe) // n
    if per_state == 0:
        raise ValueError(f"probe split of {task.name} has {len(probe)} samples; need at least {n}")
    ys = probe.y[: per_state * n].cpu()
    outs, tgts, metrics = [], [], []
    for out in snapshots:
        ob = out[: per_state * n].reshape(per_state, n, *out.shape[1:])
        yb = ys.reshape(per_state, n, *ys.shape[1:])
        for o, t in zip(ob, yb):
            m = task.metric(o, t)
            if m == m:  # drop batches where the metric is undefined (e.g. AP without a positive)
                outs.append(o)
                tgts.append(t)
                metrics.append(m)
    return {"outputs": torch.stack(outs).to(torch.float16 if task.output_kind == "heatmaps" else torch.float32),
            "targets": torch.stack(tgts), "metric": torch.tensor(metrics, dtype=torch.float64),
            "settings": json.dumps(pool_settings(task, profile_name), sort_keys=True, default=str)}


def pool_problem(state: object, settings: str) -> str | None:
    """Why a loaded pool cannot serve (None when it has B outputs, targets and metrics built with ``settings``)."""
    if not isinstance(state, dict):
        return f"not a dict but {type(state).__name__}"
    for name in ("outputs", "targets", "metric"):
        if not isinstance(state.get(name), Tensor):
            return f"no {name!r} tensor"
    b = state["metric"].shape[0] if state["metric"].dim() == 1 else -1
    if b < 1 or state["outputs"].dim() < 2 or state["outputs"].shape[0] != b or state["targets"].shape[0] != b:
        return (f"shapes {tuple(state['outputs'].shape)}, {tuple(state['targets'].shape)}, "
                f"{tuple(state['metric'].shape)} do not hold B batches")
    if state.get("settings") != settings:
        return "built with other settings"
    return None


def load_or_build_pool(task: Task, data: TaskData, profile_name: str, device: torch.device,
                       results_dir: Path, log=print) -> ProbePool:
    """The cached pool for (task, profile), built once; an unreadable or malformed cache file is rebuilt."""
    path = pool_path(results_dir, task, profile_name)
    settings = json.dumps(pool_settings(task, profile_name), sort_keys=True, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        state = None
        if path.is_file():
            try:
                raw = path.read_bytes()
                state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
                problem = pool_problem(state, settings)
                digest = hashlib.sha256(raw).hexdigest()
            except Exception as exc:
                problem = f"unreadable ({type(exc).__name__})"
            if problem is not None:
                log(f"probe pool {path.name} is unusable ({problem}); rebuilding")
                state = None
        if state is None:
            log(f"building probe pool for {task.name} ({profile_name})")
            state = build_pool(task, data, profile_name, device)
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write_bytes(path, buf.getvalue())
            digest = hashlib.sha256(buf.getvalue()).hexdigest()
    return ProbePool(state["outputs"].float(), state["targets"], state["metric"], digest)
