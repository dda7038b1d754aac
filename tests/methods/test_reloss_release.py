"""reloss-release: its net and its loss-training data follow the ReLoss paper / release, on small fixed inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffsort import DiffSortNet
from torch import nn

from surrogate_bench import get_method, get_task
from surrogate_bench.reloss.collect import make_batches, randomize_targets
from surrogate_bench.reloss.lossnets import ClassificationLossNet, FlatHeatmapLossNet, loss_values
from surrogate_bench.reloss.spearman import SoftRanker
from surrogate_bench.reloss.train import gradient_penalty
from test_reloss import FAST, BlobTask, context


pytestmark = pytest.mark.usefixtures("one_thread")


def test_release_settings() -> None:
    p = get_method("reloss-release").p
    assert (p["cls_input"], p["steepness"], p["standardize"], p["group"]) == ("prob", 5.0, False, 256)
    assert (p["gp_norm"], p["gp_batches"], p["match_scale"]) == ("sample", 0, False)
    assert (p["train_labels"], p["val_labels"], p["heatmap_net"]) == ("argmax", "true", "flat")
    assert (p["lr"], p["weight_decay"], p["gp_weight"], p["batch_size"]) == (0.01, 1e-3, 10.0, 128)


def test_classification_net_is_abs_of_a_1_128_128_128_1_elu_mlp_of_p() -> None:
    net = get_method("reloss-release").lossnet(get_task("cifar10-acc"))
    assert isinstance(net, ClassificationLossNet)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1, 128), (128, 128), (128, 128), (128, 1)]
    torch.manual_seed(0)
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    p = torch.softmax(logits, -1)[torch.arange(6), y][:, None]
    h = p
    for i, lin in enumerate(linears):
        h = lin(h)
        if i < 3:
            h = nn.functional.elu(h)
    assert torch.allclose(net(logits, y), h.abs().mean(), atol=1e-6)


def test_flat_heatmap_net_weights_each_error_map_by_its_attention() -> None:
    task = get_task("synth-pose-pckh")
    net = get_method("reloss-release").lossnet(task)
    assert isinstance(net, FlatHeatmapLossNet)
    h, w = task.heatmap_size
    lin = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(h * w, 8), (8, 1)]
    torch.manual_seed(1)
    out, maps = torch.rand(4, 1, h, w), torch.rand(4, 1, h, w)
    vis = torch.tensor([[1.0], [0.0], [1.0], [1.0]])
    err = ((out - maps) ** 2 * vis[..., None, None]).flatten(-2)
    attn = torch.sigmoid(lin[1](nn.functional.elu(lin[0](err))))
    assert torch.allclose(net(out, maps, vis), (err * attn).mean(), atol=1e-7)


def test_argmax_labels_with_a_random_tail() -> None:
    """Labels are the model's argmax except a tail of each batch, replaced by uniformly random classes; the
    kept prefix is a uniform fraction of the batch."""
    task = BlobTask()
    b, n, c = 400, 20, 1000  # many classes: a random class rarely equals the argmax
    outputs, truth = torch.randn(b, n, c), torch.randint(0, c, (b, n))
    gen = torch.Generator().manual_seed(0)
    labels = randomize_targets(task, truth, outputs, gen, labels="argmax")
    same = labels == outputs.argmax(-1)
    kept = same.long().cumprod(-1).sum(-1)  # length of the argmax prefix
    assert (same.sum(-1) - kept <= 1).all()  # after the prefix, (almost) never the argmax again
    assert kept.float().mean() == pytest.approx(n / 2 - 0.5, abs=1.0)  # floor(U n): mean (n - 1) / 2
    tail = labels[~same]
    assert tail.float().mean() == pytest.approx((c - 1) / 2, rel=0.05)
    assert not (labels == truth).float().mean() > 0.01  # true labels play no part


def test_true_labels_for_validation_batches() -> None:
    task = BlobTask()
    gen = torch.Generator().manual_seed(0)
    outputs, targets = torch.randn(64, 3), torch.randint(0, 3, (64,))
    batches = make_batches(task, [outputs], targets, 16, 2, gen, labels="true")
    for out, y in zip(batches.outputs, batches.targets):
        rows = (outputs[:, None, :] == out[None]).all(-1).nonzero()
        assert torch.equal(targets[rows[:, 0]], y[rows[:, 1]])


def test_per_sample_gradient_penalty_over_every_batch() -> None:
    net = ClassificationLossNet(8)
    out = torch.randn(3, 5, 4, requires_grad=True)
    y = torch.randint(0, 4, (3, 5))
    got = gradient_penalty(net(out, y), out, "sample")
    terms = []
    for b in range(3):
        x = out[b].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(x, y[b]), x)
        terms += [(grad[i].norm() - 1) ** 2 for i in range(5)]
    assert float(got.detach()) == pytest.approx(float(torch.stack(terms).detach().mean()), rel=1e-5)


def test_soft_ranks_on_raw_values_at_steepness_5() -> None:
    x = torch.randn(2, 16, dtype=torch.float32) * 0.01  # raw, unstandardised loss values
    ranker = SoftRanker("bitonic", steepness=5.0, distribution="logistic_phi", standardize=False)
    _, perm = DiffSortNet("bitonic", 16, steepness=5.0, distribution="logistic_phi")(x)
    assert torch.allclose(ranker(x), (perm * torch.arange(16)).sum(-1), atol=1e-6)


def test_prepare_and_loss_run_and_do_not_share_reloss_artifacts(tmp_path: Path) -> None:
    task, logs = BlobTask(), []
    small = {**FAST, "group": 16}
    info = get_method("reloss-release", **small).prepare(task, context(task, tmp_path, logs, "smoke"))
    base = get_method("reloss", **small).prepare(task, context(task, tmp_path, logs, "smoke"))
    assert info["path"] != base["path"] and info.get("grad_scale", 1.0) == 1.0
    method = get_method("reloss-release", **small)
    method.prepare(task, context(task, tmp_path, logs, "smoke"))
    out = torch.randn(8, 3, requires_grad=True)
    loss = method.make_loss(task)(out, torch.randint(0, 3, (8,)))
    loss.backward()
    assert torch.isfinite(loss) and loss >= 0 and out.grad is not None


def test_heatmap_loss_values_dispatch_to_the_flat_net() -> None:
    task = get_task("synth-pose-pckh")
    net = get_method("reloss-release").lossnet(task)
    h, w = task.heatmap_size
    targets = torch.tensor([[[5.0, 6.0, 1.0, 4.0]]]).expand(2, 1, 4)
    value = loss_values(net, task, torch.rand(2, 1, h, w), targets)
    assert value.shape == () and torch.isfinite(value)
