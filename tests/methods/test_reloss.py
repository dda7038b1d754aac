"""ReLoss: diffsort Spearman against scipy, artifact reuse / corruption, released weights, learning to train."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import rankdata, spearmanr
from torch import Tensor, nn

from surrogate_bench import get_method, get_task
from surrogate_bench.plugins.contracts import PrepareContext, Profile, Split, Task, TaskData
from surrogate_bench.plugins.errors import DataUnavailable, SuiteError
from surrogate_bench.taskkit.metrics import accuracy
from surrogate_bench.reloss import artifact
from surrogate_bench.reloss.collect import stage_steps
from surrogate_bench.reloss.lossnets import ClassificationLossNet, HeatmapLossNet, loss_values
from surrogate_bench.reloss.spearman import SoftRanker, exact_rank, soft_spearman, spearman



class BlobTask(Task):
    """Three Gaussian blobs in 8 dimensions, a linear model, accuracy: a problem small enough for a unit test."""

    name = "reloss-test-blobs"
    metric_name = "accuracy"
    num_classes = 3
    profiles = {k: Profile(epochs=1, batch_size=32, lr=0.1, momentum=0.9) for k in ("smoke", "quick", "paper")}

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        g = torch.Generator().manual_seed(1)
        centres = 2.0 * torch.randn(3, 8, generator=g)

        def split(n: int) -> Split:
            y = torch.randint(0, 3, (n,), generator=g)
            return Split(centres[y] + 1.5 * torch.randn(n, 8, generator=g), y)

        return TaskData(split(1200), split(300), split(300))

    def build_model(self) -> nn.Module:
        return nn.Linear(8, 3)

    def score(self, predictions: Tensor, targets: Tensor) -> float:
        return accuracy(predictions, targets)


FAST = {"batch_size": 32, "group": 16, "hidden": 32}  # small loss-training problems for unit tests


def context(task: Task, tmp_path: Path, logs: list[str], profile: str = "quick", seed: int = 0) -> PrepareContext:
    return PrepareContext(data=task.load(tmp_path), device=torch.device("cpu"), profile=task.profile(profile),
                          profile_name=profile, seed=seed, artifacts_dir=tmp_path / "artifacts", log=logs.append)


# -- differentiable Spearman ----------------------------------------------------------------
@pytest.mark.parametrize("network", ["bitonic", "odd_even"])
@pytest.mark.parametrize("size", [16, 37])
def test_soft_ranks_match_exact_ranks_at_high_steepness(network: str, size: int) -> None:
    x = torch.randperm(size).double().view(1, -1) * 0.37 - 3.0  # distinct values
    soft = SoftRanker(network, steepness=2000.0, distribution="logistic")(x)
    assert torch.allclose(soft, torch.tensor(rankdata(x.numpy(), axis=-1) - 1), atol=1e-3)


def test_exact_rank_and_spearman_match_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (4, 50), generator=g).double()
    b = torch.randn(4, 50, generator=g, dtype=torch.float64)
    assert torch.allclose(exact_rank(a), torch.tensor(rankdata(a.numpy(), axis=-1) - 1))
    ref = torch.tensor([spearmanr(x, y).statistic for x, y in zip(a.numpy(), b.numpy())])
    assert torch.allclose(spearman(a, b), ref, atol=1e-10)


def test_soft_spearman_matches_scipy_and_has_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    metric = torch.randint(0, 10, (3, 64), generator=g).double()  # tied metric values, like accuracy
    loss = (-metric + 0.8 * torch.randn(3, 64, generator=g, dtype=torch.float64)).requires_grad_(True)
    rho = soft_spearman(loss, metric, SoftRanker(steepness=5000.0, distribution="logistic"))
    ref = torch.tensor([spearmanr(x, y).statistic for x, y in zip(loss.detach().numpy(), metric.numpy())])
    assert torch.allclose(rho.detach(), ref, atol=2e-3) and (ref < -0.5).all()
    soft = soft_spearman(loss, metric, SoftRanker())  # the pinned default steepness: smooth, still close
    soft.sum().backward()
    assert (soft.detach() - ref).abs().max() < 0.1 and loss.grad.abs().sum() > 0


def test_stage_steps_start_untrained_and_end_at_total() -> None:
    steps = stage_steps(300, 5)
    assert steps[0] == 0 and steps[-1] == 300 and steps == sorted(set(steps)) and len(steps) == 5


# -- loss networks ---------------------------------------------------------------------------
def test_classification_lossnet_batches_and_single_batch_agree() -> None:
    net = ClassificationLossNet(16)
    out, y = torch.randn(5, 7, 4), torch.randint(0, 4, (5, 7))
    stacked = net(out, y)
    assert stacked.shape == (5,) and torch.allclose(stacked[2], net(out[2], y[2]))


@pytest.mark.parametrize("size", [(16, 16), (24, 20)])
def test_heatmap_lossnet_any_size_and_gradient(size: tuple[int, int]) -> None:
    task = get_task("synth-pose-pckh", heatmap_size=size[0], input_size=size[0] * 2) if size[0] == size[1] else None
    net = HeatmapLossNet(8)
    h, w = size
    targets = torch.cat([torch.rand(3, 6, 2, 2) * torch.tensor([w - 1, h - 1]), torch.ones(3, 6, 2, 1),
                         torch.full((3, 6, 2, 1), 4.0)], dim=-1)  # B x n x J x (x, y, vis, head)
    from surrogate_bench.taskkit.heatmaps import gaussian_heatmaps

    maps = gaussian_heatmaps(targets[..., :2].flatten(0, 1), targets[..., 2].flatten(0, 1), size, 1.0)
    maps = maps.view(3, 6, 2, h, w)
    out = (maps + 0.1 * torch.randn_like(maps)).requires_grad_(True)
    loss = net(out, maps, targets[..., 2])
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert out.grad.abs().sum() > 0
    if task is not None:  # the task's own Gaussian targets go through the same path
        assert torch.allclose(loss_values(net, task, out, targets), loss)


# -- the method: artifact cache, released weights, training ----------------------------------
def test_each_seed_learns_its_own_net_unless_the_loss_seed_is_pinned(tmp_path: Path) -> None:
    task, logs = BlobTask(), []
    before = artifact.BUILDS["count"]
    first = get_method("reloss", **FAST).prepare(task, context(task, tmp_path, logs, "smoke", seed=0))
    own = get_method("reloss", **FAST).prepare(task, context(task, tmp_path, logs, "smoke", seed=3))
    assert artifact.BUILDS["count"] == before + 2 and own["reused"] is False  # seed 3 learns its own net
    assert (first["loss_seed"], own["loss_seed"]) == (0, 3) and first["sha256"] != own["sha256"]
    again = get_method("reloss", **FAST).prepare(task, context(task, tmp_path, logs, "smoke", seed=3))
    assert again["reused"] is True and again["sha256"] == own["sha256"]
    assert any("reusing artifact" in line for line in logs)
    pinned = [get_method("reloss", loss_seed=0, **FAST).prepare(task, context(task, tmp_path, logs, "smoke", seed=s))
              for s in (5, 6)]
    assert pinned[0]["sha256"] == pinned[1]["sha256"] == first["sha256"]  # one shared net, as before 0.2.0
    other = get_method("reloss", lr=0.02, **FAST).prepare(task, context(task, tmp_path, logs, "smoke"))
    assert other["reused"] is False and other["path"] != first["path"]  # settings are part of the key


@pytest.mark.parametrize("damage", ["weights", "sidecar"])
def test_corrupted_artifact_is_rebuilt(tmp_path: Path, damage: str) -> None:
    task, logs = BlobTask(), []
    info = get_method("reloss", **FAST).prepare(task, context(task, tmp_path, logs, "smoke"))
    path = Path(info["path"])
    victim = path if damage == "weights" else path.with_suffix(".json")
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2] + b"garbage")
    before = artifact.BUILDS["count"]
    again = get_method("reloss", **FAST).prepare(task, context(task, tmp_path, logs, "smoke"))
    assert artifact.BUILDS["count"] == before + 1 and again["reused"] is False
    assert any("unusable" in line and "rebuilding" in line for line in logs)
    assert artifact.sha256_file(path) == again["sha256"]
    assert get_method("reloss", **FAST).prepare(task, context(task, tmp_path, logs, "smoke"))["reused"] is True


def test_released_weights_need_a_matching_sha256(tmp_path: Path) -> None:
    file = tmp_path / "reloss_cls.ckpt"
    state = ClassificationLossNet().state_dict()
    del state["scale"]  # the authors' files hold only the layers
    torch.save(state, file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    task = BlobTask()
    method = get_method("reloss", weights=str(file), weights_sha256=digest)
    assert method.prepare(task, context(task, tmp_path, []))["released"] is True
    out = torch.randn(8, 3, requires_grad=True)
    method.make_loss(task)(out, torch.randint(0, 3, (8,))).backward()
    assert out.grad.abs().sum() > 0
    with pytest.raises(SuiteError, match="does not match the pinned"):
        get_method("reloss", weights=str(file), weights_sha256="0" * 64).make_loss(task)
    with pytest.raises(SuiteError, match="weights_sha256"):
        get_method("reloss", weights=str(file)).make_loss(task)
    with pytest.raises(SuiteError, match="not found"):
        get_method("reloss", weights=str(tmp_path / "missing.ckpt"), weights_sha256=digest).make_loss(task)


def test_learned_loss_is_frozen_and_trains_a_model_from_scratch(tmp_path: Path) -> None:
    task, logs = BlobTask(), []
    method = get_method("reloss", epochs=2, **FAST)
    info = method.prepare(task, context(task, tmp_path, logs, "quick"))
    assert info["val_spearman"] < -0.5, logs
    loss_fn = method.make_loss(task)
    assert not any(p.requires_grad for p in loss_fn.lossnet.parameters())
    data = task.load(tmp_path)
    torch.manual_seed(0)
    model = task.build_model()
    start = task.metric(model(data.test.x), data.test.y)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(len(data.train), generator=g)
        for idx in perm.split(32):
            loss = loss_fn(model(data.train.x[idx]), data.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    end = task.metric(model(data.test.x), data.test.y)
    assert end > max(start + 0.3, 0.85), (start, end)


# -- real tasks ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("task_name,dataset", [("mnist-ap", "mnist"), ("cifar10-acc", "cifar-10-batches-py")])
def test_learned_loss_ranks_batches_better_than_ce(task_name: str, dataset: str, data_root, tmp_path: Path) -> None:
    """On held-out batches at the quick profile, Spearman(loss, metric) is more negative than CE's."""
    if not (data_root / dataset).exists():
        pytest.skip(f"{dataset} not under the data root")
    from surrogate_bench.running.data_cache import load_task_data

    task = get_task(task_name)
    profile = task.profile("quick")
    try:
        data = load_task_data(task, data_root, download=False).limit(profile)
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    logs: list[str] = []
    ctx = PrepareContext(data=data, device=torch.device("cpu"), profile=profile, profile_name="quick", seed=0,
                         artifacts_dir=tmp_path, log=logs.append)
    info = get_method("reloss").prepare(task, ctx)
    assert math.isfinite(info["val_spearman"]) and info["val_spearman"] < info["baseline_spearman"], info


def test_logprob_lossnet_is_monotone_and_does_not_saturate() -> None:
    """Random weights: loss rises as the target probability falls, and the logit gradient stays non-zero
    for confidently wrong samples (the failure mode of losses of p alone on unbalanced mnist-ap)."""
    from surrogate_bench.reloss.lossnets import MonotoneLogProbLossNet

    torch.manual_seed(0)
    net = MonotoneLogProbLossNet(32)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    margin = torch.linspace(-12, 12, 200)
    logits = torch.stack([torch.zeros_like(margin), margin], -1).requires_grad_(True)
    per = net.per_sample(logits, torch.ones(200, dtype=torch.long))
    assert (per[1:] <= per[:-1] + 1e-6).all()  # target logit up -> loss down
    per.sum().backward()
    assert logits.grad[0, 1] < -1e-3  # p ~ 6e-6 still gets a real push
