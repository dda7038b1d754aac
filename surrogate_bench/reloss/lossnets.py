"""The ReLoss loss networks: per-sample target-class probability MLP (logits) and per-joint attention (heatmaps).

Both map a stack of batches to one loss per batch: outputs (..., n, ...) -> (...), so a whole group of
batches is scored in one call while training the loss, and a single batch gives a 0-d loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ClassificationLossNet(nn.Module):
    """|MLP(softmax probability of the target class)| averaged over the batch.

    Layer names and sizes follow the authors' release (1 -> h -> h -> h -> 1, ELU), so its state dict
    (e.g. ``reloss_cls.ckpt``) loads as-is.
    """

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.logits_fcs = nn.Sequential(nn.Linear(1, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU())
        self.loss = nn.Sequential(nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 1))
        self.register_buffer("scale", torch.ones(()))  # set after training (see train.match_gradient_scale)

    def per_sample(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(..., n, C) logits, (..., n) class indices -> (..., n) per-sample losses."""
        probs = torch.softmax(outputs, dim=-1).gather(-1, targets.long().unsqueeze(-1))
        return self.loss(self.logits_fcs(probs)).abs().squeeze(-1)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.scale * self.per_sample(outputs, targets).mean(-1)


class PositiveLinear(nn.Linear):
    """A linear layer with weights kept positive (softplus / fan-in, so outputs stay O(1) at init):
    with monotone activations the MLP is monotone."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, nn.functional.softplus(self.weight) / self.in_features, self.bias)


class MixedMonotoneActivation(nn.Module):
    """ELU on half the units, tanh on the other half: both increasing, so positive-weight MLPs stay monotone,
    and together they can bend either way (ELU alone only composes convex functions)."""

    def forward(self, x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat([nn.functional.elu(x[..., :half]), torch.tanh(x[..., half:])], dim=-1)


class MonotoneLogProbLossNet(nn.Module):
    """A monotone MLP of the target class's negative log-probability, averaged over the batch.

    Why not the probability itself: a loss f(p) has gradient f'(p) p (1 - p) with respect to the logit,
    which vanishes for confidently wrong samples (p -> 0). Learned f turn out nearly linear in p (MAE-like),
    and on unbalanced mnist-ap such a loss collapses to predicting the majority class. On z = -log p the
    gradient is f'(z) (1 - p), like cross-entropy's; positive weights and ELU keep f increasing in z, so it
    cannot reverse the ranking outside the range of the collected data.
    """

    def __init__(self, hidden: int = 128, z_max: float = 30.0) -> None:
        super().__init__()
        self.z_max = z_max
        self.net = nn.Sequential(PositiveLinear(1, hidden), MixedMonotoneActivation(), PositiveLinear(hidden, hidden),
                                 MixedMonotoneActivation(), PositiveLinear(hidden, 1))
        self.register_buffer("scale", torch.ones(()))  # set after training (see train.match_gradient_scale)

    def per_sample(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(..., n, C) logits, (..., n) class indices -> (..., n) per-sample losses."""
        z = -torch.log_softmax(outputs, dim=-1).gather(-1, targets.long().unsqueeze(-1))
        return self.net(z.clamp_max(self.z_max)).squeeze(-1)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.scale * self.per_sample(outputs, targets).mean(-1)


class HeatmapLossNet(nn.Module):
    """Per-joint MSE weighted by an attention computed from pooled statistics of each squared-error map.

    Statistics (any heatmap size): log of the mean error, of the max error, and of the error weighted by
    the target Gaussian (the fit at the joint); an MLP with a sigmoid gives each joint's weight.
    """

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(3, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                       nn.Linear(hidden, 1), nn.Sigmoid())
        self.register_buffer("scale", torch.ones(()))  # set after training (see train.match_gradient_scale)

    @staticmethod
    def stats(err: Tensor, target_maps: Tensor) -> Tensor:
        """(..., J, H, W) squared errors and targets -> (..., J, 3) pooled statistics."""
        e = err.flatten(-2)
        t = target_maps.flatten(-2)
        near = (e * t).sum(-1) / (t.sum(-1) + 1e-6)
        feats = torch.stack([e.mean(-1), e.amax(-1), near], dim=-1)
        return torch.log(feats + 1e-6)

    def per_joint(self, outputs: Tensor, target_maps: Tensor, visible: Tensor) -> Tensor:
        """(..., n, J, H, W) heatmaps, Gaussian targets, (..., n, J) visibility -> (..., n, J) weighted MSE."""
        err = (outputs - target_maps).pow(2)
        attn = self.attention(self.stats(err, target_maps)).squeeze(-1)
        return attn * err.flatten(-2).mean(-1) * visible

    def forward(self, outputs: Tensor, target_maps: Tensor, visible: Tensor) -> Tensor:
        return self.scale * self.per_joint(outputs, target_maps, visible).flatten(-2).mean(-1)


class FlatHeatmapLossNet(nn.Module):
    """The ReLoss pose release's net: per joint, an attention ``sigmoid(MLP(flattened squared-error map))``
    (H*W -> hidden -> 1, ELU) weighting that map; the loss is the mean of attention x squared error.
    Fixed to one heatmap size; invisible joints' errors are zeroed (the release masks output and target)."""

    def __init__(self, heatmap_size: tuple[int, int], hidden: int = 8) -> None:
        super().__init__()
        self.logits_fcs = nn.Sequential(nn.Linear(heatmap_size[0] * heatmap_size[1], hidden), nn.ELU(),
                                        nn.Linear(hidden, 1), nn.Sigmoid())
        self.register_buffer("scale", torch.ones(()))  # set after training (see train.match_gradient_scale)

    def forward(self, outputs: Tensor, target_maps: Tensor, visible: Tensor) -> Tensor:
        err = ((outputs - target_maps).pow(2) * visible[..., None, None]).flatten(-2)  # (..., n, J, H*W)
        return self.scale * (err * self.logits_fcs(err)).flatten(-3).mean(-1)


def build_lossnet(output_kind: str, hidden: int, cls_input: str = "logprob", heatmap_net: str = "stats",
                  heatmap_size: tuple[int, int] | None = None) -> nn.Module:
    """The loss network for a task's output kind (logits: ``cls_input`` logprob = monotone, prob = release;
    heatmaps: ``heatmap_net`` stats = pooled-statistics attention, flat = the release's, hidden // 16 units)."""
    if output_kind == "logits":
        return MonotoneLogProbLossNet(hidden) if cls_input == "logprob" else ClassificationLossNet(hidden)
    if output_kind == "heatmaps" and heatmap_net == "flat":
        if heatmap_size is None:
            raise ValueError("the flat heatmap loss net needs the heatmap size")
        return FlatHeatmapLossNet(heatmap_size, max(1, hidden // 16))
    if output_kind == "heatmaps":
        return HeatmapLossNet(max(4, hidden // 8))
    raise ValueError(f"reloss has no loss network for output kind {output_kind!r}")


def heatmap_targets(task, targets: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """(..., J, C) joints -> Gaussian target maps (..., J, H, W) and visibility (..., J), any leading dims."""
    lead = targets.shape[:-2]
    maps = task.target_heatmaps(targets.reshape(-1, *targets.shape[-2:]), sigma)
    return maps.reshape(*lead, *maps.shape[-3:]), targets[..., 2].to(maps.dtype)


def loss_values(net: nn.Module, task, outputs: Tensor, targets: Tensor, sigma: float = 1.0) -> Tensor:
    """The learned loss of each batch in a stack: (..., n, ...) outputs and targets -> (...)."""
    if isinstance(net, (HeatmapLossNet, FlatHeatmapLossNet)):
        maps, visible = heatmap_targets(task, targets, sigma)
        return net(outputs, maps, visible)
    return net(outputs, targets)


def baseline_values(task, outputs: Tensor, targets: Tensor, sigma: float = 1.0) -> Tensor:
    """The conventional loss of each batch (cross-entropy; heatmaps: MSE to Gaussian targets) -> (...)."""
    if task.output_kind == "heatmaps":
        maps, visible = heatmap_targets(task, targets, sigma)
        err = (outputs - maps).pow(2).flatten(-2).mean(-1) * visible
        return err.flatten(-2).mean(-1)
    ce = torch.nn.functional.cross_entropy(outputs.flatten(0, -2), targets.flatten().long(), reduction="none")
    return ce.view(targets.shape).mean(-1)
