"""graphed_loss: eager on CPU / without grad; on CUDA the same values and gradients as the eager loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from surrogate_bench.losses.graphed import graphed_loss
from surrogate_bench.plugins.registry import get_task, method_for

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_cpu_and_no_grad_calls_run_the_loss_itself() -> None:
    calls = []

    def loss(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return F.cross_entropy(o, t)

    fn = graphed_loss(loss)
    out, y = torch.randn(8, 3, requires_grad=True), torch.randint(0, 3, (8,))
    assert torch.equal(fn(out, y), F.cross_entropy(out, y))
    with torch.no_grad():
        fn(out, y)
    assert len(calls) == 2


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURROGATE_BENCH_CUDA_GRAPHS", "0")
    loss = F.cross_entropy
    assert graphed_loss(loss) is loss


@pytest.mark.gpu
@cuda
def test_graphed_loss_matches_eager_on_cuda() -> None:
    fn = graphed_loss(F.cross_entropy)
    for trial in range(3):  # first call captures, later calls replay with new inputs
        out = torch.randn(16, 5, device="cuda", requires_grad=True)
        y = torch.randint(0, 5, (16,), device="cuda")
        value = fn(out, y)
        (grad,) = torch.autograd.grad(value, out)
        ref_out = out.detach().clone().requires_grad_(True)
        ref = F.cross_entropy(ref_out, y)
        (ref_grad,) = torch.autograd.grad(ref, ref_out)
        assert torch.allclose(value, ref, atol=1e-6) and torch.allclose(grad, ref_grad, atol=1e-6)


@pytest.mark.gpu
@cuda
def test_graphed_uniloss_draws_fresh_anchors_and_trains() -> None:
    task = get_task("cifar10-acc")
    loss = method_for(task, "uniloss").make_loss(task)
    torch.manual_seed(0)
    x = torch.randn(512, 20, device="cuda")
    y = (x[:, :10] + 0.3 * torch.randn(512, 10, device="cuda")).argmax(1)
    model = torch.nn.Linear(20, 10).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    fixed = model(x[:128]).detach()
    values = {float(loss(fixed.clone().requires_grad_(True), y[:128]).detach()) for _ in range(5)}
    assert len(values) > 1  # replays sample new anchors
    before = float((model(x).argmax(1) == y).float().mean())
    for step in range(100):
        idx = torch.randint(0, 512, (128,), device="cuda")
        opt.zero_grad()
        loss(model(x[idx]), y[idx]).backward()
        opt.step()
    assert float((model(x).argmax(1) == y).float().mean()) > before + 0.1
