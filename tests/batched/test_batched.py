"""Many runs as one: K runs trained as one batched model give the records of the K runs trained alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from surrogate_bench.plugins.contracts import Profile
from surrogate_bench.plugins.registry import registry
from surrogate_bench.launch.executors import LaunchConfig, execute, load_plugins
from surrogate_bench.batched import executor as batched
from surrogate_bench.running import step_capture
from surrogate_bench.batched.executor import group_checkpoint_path, group_specs, run_batched
from surrogate_bench.running.options import DeadlineReached, RunOptions, SimulatedCrash
from surrogate_bench.running.runner import run_one
from surrogate_bench.running.spec import RunSpec

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
RTOL = 1e-4
# test-sized profiles: 100 (MLP) / 32 (ResNet) / 16 (hourglass) steps over 2 epochs with a learning-rate milestone
MNIST = Profile(epochs=2, batch_size=16, lr=0.01, momentum=0.5, milestones=(1,), train_size=800, val_size=200,
                test_size=500)
CIFAR = Profile(epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True, milestones=(1,),
                gamma=0.2, train_size=256, val_size=64, test_size=128, eval_batch_size=64)
POSE = Profile(epochs=2, batch_size=8, optimizer="rmsprop", lr=1e-3, milestones=(1,), train_size=64, val_size=16,
               test_size=32, eval_batch_size=32)
POSE_PARAMS = (("train_size", 64), ("val_size", 16), ("test_size", 32), ("width", 16), ("depth", 3),
               ("input_size", 32), ("heatmap_size", 16))
RELOSS_FAST = (("batch_size", 32), ("group", 16), ("hidden", 32), ("epochs", 1))


def options(results_dir: Path, data_root: Path, **kw: Any) -> RunOptions:
    return RunOptions(results_dir=results_dir, data_root=data_root, device=torch.device("cpu"), progress=False,
                      log=lambda m: None, **kw)


@pytest.fixture
def step_losses(monkeypatch) -> dict[str, list[torch.Tensor]]:
    """Every training step's loss: ``single`` (run_one's eager step) and ``batched`` (K per group step)."""
    seen: dict[str, list[torch.Tensor]] = {"single": [], "batched": []}
    single, group = step_capture.train_step, batched.GroupStep.__call__

    def single_step(*args: Any, **kw: Any) -> torch.Tensor:
        loss = single(*args, **kw)
        seen["single"].append(loss.clone())
        return loss

    def group_step(self: Any, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        losses = group(self, xs, ys)
        seen["batched"].append(losses.clone())
        return losses

    monkeypatch.setattr(step_capture, "train_step", single_step)
    monkeypatch.setattr(batched.GroupStep, "__call__", group_step)
    return seen


def with_profile(monkeypatch, task: str, profile: Profile) -> None:
    """The task's ``smoke`` profile replaced by a test-sized one (reloss then uses its smoke budget)."""
    cls = registry().get_class("task", task)
    monkeypatch.setattr(cls, "profiles", {**cls.profiles, "smoke": profile})


def close(a: float | None, b: float | None) -> bool:
    return a is None and b is None or a is not None and b is not None and abs(a - b) <= RTOL * max(abs(a), 1e-8)


def assert_same_as_alone(specs: list[RunSpec], tmp_path: Path, data_root: Path,
                         step_losses: dict[str, list[torch.Tensor]], forward: str = "auto",
                         min_steps: int = 32) -> list[dict]:
    """Train ``specs`` alone and as one group; per-step losses and records agree (1e-4 relative)."""
    alone, per_step = [], []
    for spec in specs:
        step_losses["single"].clear()
        alone.append(run_one(spec, options(tmp_path / "alone", data_root)))
        per_step.append(torch.stack(step_losses["single"]))
    group = run_batched(specs, options(tmp_path / "group", data_root, extra={"batched_forward": forward}))
    together = torch.stack(step_losses["batched"])  # steps x K
    for k, (a, g) in enumerate(zip(alone, group)):
        assert a["status"] == g["status"] == "ok", (a.get("reason"), g.get("reason"))
        assert g["key"] == a["key"] and g["executor"] == f"batched({len(specs)})" and "executor" not in a
        assert set(g) ^ set(a) == {"executor"}, set(g) ^ set(a)
        assert torch.allclose(together[:, k], per_step[k], rtol=RTOL, atol=1e-7), (specs[k], together[:, k] -
                                                                                  per_step[k])
        for name in ("test_metric", "best_val_metric", "final_val_metric"):
            assert close(a[name], g[name]), (specs[k], name, a[name], g[name])
        assert [h["lr"] for h in a["history"]] == [h["lr"] for h in g["history"]]
        if isinstance(a["artifact"], dict) and "sha256" in a["artifact"]:  # the same learned artifact
            assert g["artifact"]["sha256"] == a["artifact"]["sha256"]
        for ha, hg in zip(a["history"], g["history"]):
            assert close(ha["train_loss"], hg["train_loss"]) and close(ha["val_metric"], hg["val_metric"])
    assert together.shape[0] == per_step[0].shape[0] >= min_steps
    return group


@pytest.mark.parametrize("forward", ["loop", "vmap"])
def test_mnist_mlp_mixed_group_equals_runs_alone(forward, monkeypatch, data_root, tmp_path, step_losses) -> None:
    """Different seeds and methods in one group (ce twice: one vmapped loss call; uniloss, smooth-ap: per run),
    with either forward (vmap: the stacked linear's per-run gemm keeps Smooth-AP's chaotic loss on track)."""
    with_profile(monkeypatch, "mnist-ap", MNIST)
    specs = [RunSpec("mnist-ap", "ce", "smoke", 0), RunSpec("mnist-ap", "uniloss", "smoke", 1),
             RunSpec("mnist-ap", "ce", "smoke", 2), RunSpec("mnist-ap", "smooth-ap", "smoke", 3)]
    group = assert_same_as_alone(specs, tmp_path, data_root, step_losses, forward, min_steps=100)
    assert {r["step_capture"] for r in group} == {f"eager (batched, {forward})"}


def test_mnist_reloss_in_a_group(monkeypatch, data_root, tmp_path, step_losses) -> None:
    """ReLoss prepares its learned net per run (its seed's artifact, as alone), then trains in the group."""
    with_profile(monkeypatch, "mnist-ap", MNIST)
    specs = [RunSpec("mnist-ap", "reloss", "smoke", 0, method_params=RELOSS_FAST),
             RunSpec("mnist-ap", "reloss", "smoke", 1, method_params=RELOSS_FAST),
             RunSpec("mnist-ap", "ce", "smoke", 1, method_params=(("label_smoothing", 0.1),)),
             RunSpec("mnist-ap", "uniloss", "smoke", 0)]
    group = assert_same_as_alone(specs, tmp_path, data_root, step_losses)
    assert group[0]["artifact"]["sha256"] != group[1]["artifact"]["sha256"]  # a loss net per seed


def test_cifar_resnet_with_batch_norm(monkeypatch, data_root, tmp_path, step_losses) -> None:
    """ResNet-8 (batch norm: running statistics update per run on the stacked buffers) on real CIFAR-10."""
    if not (data_root / "cifar-10-batches-py").is_dir():
        pytest.skip("no CIFAR-10 under the data root")
    with_profile(monkeypatch, "cifar10-acc", CIFAR)
    tp = (("depth", 8), ("val_size", 1000))
    specs = [RunSpec("cifar10-acc", "ce", "smoke", 0, tp), RunSpec("cifar10-acc", "uniloss", "smoke", 1, tp),
             RunSpec("cifar10-acc", "ce", "smoke", 2, tp), RunSpec("cifar10-acc", "uniloss", "smoke", 0, tp)]
    assert_same_as_alone(specs, tmp_path, data_root, step_losses)


def test_batch_norm_statistics_under_vmap(tmp_path) -> None:
    """vmap over stacked buffers: each run's running mean / variance moves with its own batches."""
    from surrogate_bench.models.resnet_cifar import ResNetCifar
    from surrogate_bench.batched.model import StackedModels

    alone = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        alone.append(ResNetCifar(8, 10).train())
    stacked = StackedModels(alone, "vmap").train()
    x = torch.randn(3, 2, 8, 3, 32, 32)
    with torch.no_grad():
        for xs in x:
            out = stacked(xs)
            for k, model in enumerate(alone):
                assert torch.allclose(out[k], model(xs[k]), rtol=1e-4, atol=1e-5)
    for k, model in enumerate(alone):
        for name, buf in model.named_buffers():
            assert torch.allclose(stacked.buffers[name][k], buf, rtol=1e-4, atol=1e-6), name
    assert stacked.buffers["bn.num_batches_tracked"].tolist() == [3, 3]
    assert not torch.equal(stacked.buffers["bn.running_mean"][0], stacked.buffers["bn.running_mean"][1])


def test_synth_pose_hourglass(monkeypatch, tmp_path, step_losses) -> None:
    """Hourglass on generated figures (RMSprop; color-jitter draws per run), mse-heatmap vmapped, uniloss per run."""
    with_profile(monkeypatch, "synth-pose-pckh", POSE)
    specs = [RunSpec("synth-pose-pckh", m, "smoke", s, POSE_PARAMS)
             for m, s in (("mse-heatmap", 0), ("uniloss", 0), ("mse-heatmap", 1), ("uniloss", 2))]
    assert_same_as_alone(specs, tmp_path, tmp_path / "no-data", step_losses, min_steps=16)


def test_a_diverging_run_fails_alone(monkeypatch, data_root, tmp_path) -> None:
    """A NaN loss at step 20 fails that run with the single run's reason; its group mates are unaffected."""
    load_plugins([PLUGINS / "nonfinite_loss.py"])
    with_profile(monkeypatch, "mnist-ap", MNIST)
    bad = RunSpec("mnist-ap", "nonfinite-at", "smoke", 0)
    specs = [RunSpec("mnist-ap", "ce", "smoke", 0), bad, RunSpec("mnist-ap", "uniloss", "smoke", 1)]
    alone = [run_one(s, options(tmp_path / "alone", data_root)) for s in specs]
    group = run_batched(specs, options(tmp_path / "group", data_root))
    assert alone[1]["status"] == group[1]["status"] == "failed"
    assert group[1]["reason"] == alone[1]["reason"] == "NonFiniteLoss: non-finite loss at epoch 1, step 20"
    assert group[1]["key"] == alone[1]["key"]
    for a, g in ((alone[0], group[0]), (alone[2], group[2])):
        assert g["status"] == "ok" and g["test_metric"] == pytest.approx(a["test_metric"], rel=RTOL)
        assert [h["train_loss"] for h in g["history"]] == pytest.approx([h["train_loss"] for h in a["history"]],
                                                                        rel=RTOL)


def comparable(rec: dict) -> dict:
    hist = [{k: h[k] for k in ("epoch", "train_loss", "val_metric", "lr")} for h in rec["history"]]
    return {k: rec[k] for k in ("key", "status", "test_metric", "best_val_metric", "final_val_metric",
                                "executor")} | {"history": hist}


@pytest.fixture(scope="module")
def tiny_group(one_thread, tmp_path_factory) -> tuple[list[RunSpec], list[dict]]:
    """An uninterrupted group of three tiny-ap runs (6 epochs of 16 steps)."""
    load_plugins([PLUGINS / "tiny_ap_task.py"])
    specs = [RunSpec("tiny-ap", "ce", "smoke", 0), RunSpec("tiny-ap", "uniloss", "smoke", 0),
             RunSpec("tiny-ap", "ce", "smoke", 1)]
    recs = run_batched(specs, options(tmp_path_factory.mktemp("ref"), tmp_path_factory.mktemp("data")))
    assert all(r["status"] == "ok" for r in recs)
    return specs, recs


def test_resume_after_a_crash_between_epochs(tiny_group, tmp_path) -> None:
    specs, ref = tiny_group
    with pytest.raises(SimulatedCrash):
        run_batched(specs, options(tmp_path, tmp_path, stop_after_epochs=2))
    ckpt = group_checkpoint_path(tmp_path, [r["key"] for r in ref])
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and state["keys"] == [r["key"] for r in ref]
    logs: list[str] = []
    again = run_batched(specs, RunOptions(results_dir=tmp_path, data_root=tmp_path, device=torch.device("cpu"),
                                          progress=False, log=logs.append))
    assert any("resuming batched(3)" in line and "epoch 2/6" in line for line in logs), logs
    assert [comparable(r) for r in again] == [comparable(r) for r in ref]
    assert not ckpt.exists()


def test_deadline_inside_an_epoch_checkpoints_and_resumes(tiny_group, tmp_path) -> None:
    specs, ref = tiny_group
    with pytest.raises(DeadlineReached, match="step 1"):
        run_batched(specs, options(tmp_path, tmp_path, deadline=time.time()))
    state = torch.load(group_checkpoint_path(tmp_path, [r["key"] for r in ref]), weights_only=True)
    assert state["epoch"] == 0 and state["mid_epoch"]["step"] == 1
    again = run_batched(specs, options(tmp_path, tmp_path))
    assert [comparable(r) for r in again] == [comparable(r) for r in ref]


def test_checkpoint_of_other_keys_is_ignored(tiny_group, tmp_path) -> None:
    specs, ref = tiny_group
    with pytest.raises(SimulatedCrash):
        run_batched(specs, options(tmp_path, tmp_path, stop_after_epochs=1))
    ckpt = group_checkpoint_path(tmp_path, [r["key"] for r in ref])
    state = torch.load(ckpt, weights_only=True)
    state["keys"] = ["someone-else"] * 3
    torch.save(state, ckpt)
    logs: list[str] = []
    again = run_batched(specs, RunOptions(results_dir=tmp_path, data_root=tmp_path, device=torch.device("cpu"),
                                          progress=False, log=logs.append))
    assert any("other run keys" in line for line in logs)
    assert [comparable(r) for r in again] == [comparable(r) for r in ref]


def test_launcher_groups_and_reuses(tiny_group, tmp_path) -> None:
    """``execute`` with batch_runs groups compatible pending specs; finished keys are reused, not retrained."""
    specs, ref = tiny_group
    other = RunSpec("tiny-fast", "ce", "smoke", 0)
    load_plugins([PLUGINS / "tiny_fast_task.py"])
    assert group_specs([*specs, other, specs[0]], 2) == [specs[:2], specs[2:], [other]]
    opts = options(tmp_path, tmp_path)
    recs = list(execute([*specs, other], opts, LaunchConfig(batch_runs=4)))
    assert sorted(r["executor"] for r in recs if "executor" in r) == ["batched(3)"] * 3
    assert [comparable(r) for r in recs[:3]] == [comparable(r) for r in ref]
    assert recs[3]["status"] == "ok" and "executor" not in recs[3]  # a group of one is a plain run
    again = list(execute([*specs, other], opts, LaunchConfig(batch_runs=4)))
    assert all(r.get("reused") for r in again)
    on_disk = json.loads(next((tmp_path / "runs" / "smoke" / "tiny-ap").glob("ce-s0-*.json")).read_text())
    assert on_disk["executor"] == "batched(3)"


def test_cli_run_batch_runs(tmp_path, capsys) -> None:
    """``run --batch-runs 2`` trains two seeds as one group; each gets its record."""
    from cli_helpers import run_cli

    code, _, err = run_cli(capsys, "--plugin", str(PLUGINS / "tiny_ap_task.py"), "--plugin",
                           str(PLUGINS / "tiny_fast_task.py"), "run", "--task", "tiny-fast",
                           "--method", "ce", "--seeds", "0,1", "--batch-runs", "2", "--device", "cpu",
                           "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "r"), "--no-progress")
    assert code == 0, err
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "r" / "runs").glob("**/ce-s*.json"))]
    assert [(r["seed"], r["status"], r["executor"]) for r in recs] == [(0, "ok", "batched(2)"), (1, "ok", "batched(2)")]


def test_batch_runs_needs_the_sequential_launcher() -> None:
    from surrogate_bench.plugins.errors import SuiteError

    with pytest.raises(SuiteError, match="--batch-runs"):
        LaunchConfig(batch_runs=2, jobs=2).validate()
    with pytest.raises(SuiteError, match="--batch-runs"):
        LaunchConfig(batch_runs=0).validate()
