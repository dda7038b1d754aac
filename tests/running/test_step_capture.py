"""StepCapture: eager is train_step itself; graph/compile give the eager loss curve; failures fall back, once, logged.

CPU tests cover mode resolution, the eager identity, the automatic fallback and torch.compile-vs-eager;
the CUDA-graph tests (whole step, evaluation, generator state, an uncapturable loss) skip without CUDA.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import get_task, method_for
from surrogate_bench.losses.graphed import graphed_loss
from surrogate_bench.running.step import make_optimizer, predict, train_step
from surrogate_bench.running.step_capture import ENV, StepCapture, eager_loss, resolve_mode

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def setup(task_name: str, method: str, device: str, profile: str = "paper", seed: int = 0, n: int = 2048):
    """Task, model, loss, optimiser, generator and a fixed pool of storage batches of the task's shapes."""
    torch.manual_seed(seed)
    task = get_task(task_name, **({"depth": 8} if task_name.startswith("cifar") else {}))
    prof = task.profile(profile)
    dev = torch.device(device)
    model = task.build_model().to(dev)
    if dev.type == "cuda" and task.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_optimizer(prof, model.parameters())
    gen = torch.Generator(device=dev).manual_seed(seed)
    data_gen = torch.Generator().manual_seed(123)
    shape = (28, 28) if task_name == "mnist-ap" else (3, 32, 32)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=data_gen)
    if task_name == "mnist-ap":
        y = (x[:, :, :14].float().mean((1, 2)) > x[:, :, 14:].float().mean((1, 2))).long()
    else:
        y = torch.randint(0, task.num_classes, (n,), generator=data_gen)
    return task, prof, model, method_for(task, method).make_loss(task), opt, gen, x.to(dev), y.to(dev)


def curve(mode: str | None, task_name: str, method: str, device: str, steps: int, logs: list[str] | None = None):
    task, prof, model, loss, opt, gen, x, y = setup(task_name, method, device)
    step = StepCapture(task, model, loss, opt, gen, torch.device(device), prof.amp, mode,
                       log=(logs.append if logs is not None else lambda m: None))
    bs, out = prof.batch_size, []
    for i in range(steps):
        j = (i * bs) % (len(x) - bs)
        out.append(step(x[j:j + bs], y[j:j + bs]))
    return torch.stack(out).cpu(), step, model


# -- CPU -----------------------------------------------------------------------------------------
def test_resolve_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_mode("auto", torch.device("cpu")) == "eager"
    assert resolve_mode(None, torch.device("cuda")) == "graph"
    assert resolve_mode("compile", torch.device("cpu")) == "compile"
    monkeypatch.setenv(ENV, "eager")
    assert resolve_mode(None, torch.device("cuda")) == "eager"
    with pytest.raises(SuiteError, match="bad --step-capture 'fast'"):
        resolve_mode("fast", torch.device("cpu"))


def test_eager_is_train_step_bitwise() -> None:
    ref_task, prof, ref_model, ref_loss, ref_opt, ref_gen, x, y = setup("mnist-ap", "ce", "cpu")
    ref = []
    for i in range(20):
        ref.append(train_step(ref_task, ref_model, ref_loss, ref_opt, x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16],
                              ref_gen, torch.device("cpu"), prof.amp))
    got, step, model = curve("eager", "mnist-ap", "ce", "cpu", 20)
    assert step.describe() == "eager"
    assert torch.equal(got, torch.stack(ref))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()))


def test_graph_without_cuda_falls_back_once_with_the_reason() -> None:
    logs: list[str] = []
    got, step, _ = curve("graph", "mnist-ap", "ce", "cpu", 10, logs)
    assert step.mode == "eager" and step.describe().startswith("eager (graph fell back: CUDA graphs need a CUDA")
    assert len(logs) == 1 and "training eagerly" in logs[0]
    ref, _, _ = curve("eager", "mnist-ap", "ce", "cpu", 10)
    assert torch.equal(got, ref)


def test_eager_loss_unwraps_a_graphed_loss() -> None:
    fn = graphed_loss(F.cross_entropy)
    assert eager_loss(fn) is F.cross_entropy
    assert eager_loss(F.mse_loss) is F.mse_loss


def test_eager_predict_batch_is_predict() -> None:
    task, prof, model, loss, opt, gen, x, y = setup("cifar10-acc", "ce", "cpu", profile="smoke", n=300)
    step = StepCapture(task, model, loss, opt, gen, torch.device("cpu"), prof.amp, "eager")
    from surrogate_bench.plugins.contracts import Split

    split = Split(x, y)
    assert torch.equal(predict(task, model, split, torch.device("cpu"), prof, step.predict_batch),
                       predict(task, model, split, torch.device("cpu"), prof))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ce", "uniloss"])
def test_compile_matches_eager_on_cpu(method: str) -> None:
    """torch.compile of the whole step (inductor on CPU): the eager loss curve within float tolerance."""
    logs: list[str] = []
    got, step, _ = curve("compile", "mnist-ap", method, "cpu", 40, logs)
    assert step.describe() == "compile", logs
    ref, _, _ = curve("eager", "mnist-ap", method, "cpu", 40)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


# -- CUDA ----------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("task_name,method", [("cifar10-acc", "ce"), ("cifar10-acc", "uniloss"),
                                              ("mnist-ap", "ce"), ("mnist-ap", "uniloss")])
def test_graph_matches_eager_for_hundreds_of_steps(task_name: str, method: str, monkeypatch) -> None:
    # the eager reference runs the loss itself too: a per-loss graph's capture would draw extra random anchors
    monkeypatch.setenv("SURROGATE_BENCH_CUDA_GRAPHS", "0")
    logs: list[str] = []
    got, step, model = curve("graph", task_name, method, "cuda", 300, logs)
    assert step.describe() == "graph", logs
    ref, ref_step, ref_model = curve("eager", task_name, method, "cuda", 300)
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-4)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-3)
    assert torch.equal(step.gen.get_state(), ref_step.gen.get_state())  # replays advanced the augmentation RNG


@pytest.mark.gpu
@cuda
def test_graph_recaptures_when_the_learning_rate_changes() -> None:
    """A scheduler milestone mid-run: the graph's baked-in learning rate must follow it, as eager does."""
    curves = {}
    for mode in ("graph", "eager"):
        task, prof, model, loss, opt, gen, x, y = setup("mnist-ap", "ce", "cuda")
        step = StepCapture(task, model, loss, opt, gen, torch.device("cuda"), prof.amp, mode)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [20], 0.01)
        bs, out = prof.batch_size, []
        for i in range(40):
            out.append(step(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]))
            sched.step()
        curves[mode] = (torch.stack(out).cpu(), [p.detach().clone() for p in model.parameters()])
        assert step.describe() == mode
    torch.testing.assert_close(curves["graph"][0], curves["eager"][0], rtol=2e-3, atol=2e-4)
    for a, b in zip(curves["graph"][1], curves["eager"][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@cuda
def test_captured_evaluation_matches_eager() -> None:
    from surrogate_bench.plugins.contracts import Split

    task, prof, model, loss, opt, gen, x, y = setup("cifar10-acc", "ce", "cuda", n=2500)
    step = StepCapture(task, model, loss, opt, gen, torch.device("cuda"), prof.amp, "graph")
    split = Split(x, y)
    dev = torch.device("cuda")
    for _ in range(2):  # the first call captures (1000 and the 500 remainder), the second replays
        got = predict(task, model, split, dev, prof, step.predict_batch)
        ref = predict(task, model, split, dev, prof)
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
    assert len(step._eval_graphs) == 2


@pytest.mark.gpu
@cuda
def test_uncapturable_loss_falls_back_to_eager_once() -> None:
    task, prof, model, _, opt, gen, x, y = setup("mnist-ap", "ce", "cuda")

    def syncing_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if float(out.detach().abs().max()) > 1e9:  # a host sync: not allowed during capture
            raise AssertionError("unreachable")
        return F.cross_entropy(out, target)

    logs: list[str] = []
    step = StepCapture(task, model, syncing_loss, opt, gen, torch.device("cuda"), prof.amp, "graph", log=logs.append)
    bs = prof.batch_size
    losses = [step(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]) for i in range(10)]
    assert step.mode == "eager" and "CUDA graph capture failed" in step.describe()
    assert len(logs) == 1
    assert torch.isfinite(torch.stack(losses)).all()
