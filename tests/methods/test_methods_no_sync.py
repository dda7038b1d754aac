"""On CUDA, every (non-learned) method's loss and backward run without a host-device sync (registry-generated)."""

from __future__ import annotations

import pytest
import torch

from surrogate_bench import get_method, get_task, list_methods, list_tasks

PAIRS = [(t, m) for t in list_tasks() for m in list_methods()]


def fake_batch(task, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random outputs of the task's declared kind and matching targets (no data needed)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    if task.output_kind == "heatmaps":
        j, (h, w) = task.num_joints, task.heatmap_size
        targets = torch.cat([w * torch.rand(n, j, 2, generator=gen), torch.ones(n, j, 1), 4 * torch.ones(n, j, 1)], -1)
        return torch.rand(n, j, h, w, generator=gen).to(device), targets.to(device)
    k = task.num_classes
    return torch.randn(n, k, generator=gen).to(device), torch.randint(0, k, (n,), generator=gen).to(device)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("task_name,method_name", PAIRS)
def test_loss_step_does_not_sync(task_name: str, method_name: str) -> None:
    task, method = get_task(task_name), get_method(method_name)
    if method.supports(task) or method.learned:
        pytest.skip(method.supports(task) or "learned method")
    device = torch.device("cuda")
    loss_fn = method.make_loss(task)
    outputs, targets = fake_batch(task, 32, device)
    for call in range(3):  # the first call may build caches (sorting networks, memory buffers, graphs)
        out = outputs.clone().requires_grad_()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if call else "default")
        try:
            loss_fn(out, targets).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
