"""The quick profile's speed levers keep what they promise: full test sets, exact UniLoss PCKh at 32 inside
candidates on synth-pose, fair random bits for the bad anchors."""

from __future__ import annotations

import pytest
import torch

from surrogate_bench.plugins.registry import get_task
from surrogate_bench.uniloss import PCKhRefactoring
from surrogate_bench.uniloss.pckh import _random_bits


@pytest.mark.parametrize("task", ["cifar10-acc", "synth-pose-pckh", "mnist-ap"])
def test_quick_profile_keeps_the_whole_test_set(task: str) -> None:
    assert get_task(task).profile("quick").test_size is None


def test_synth_pose_inside_pixels_fit_max_inside() -> None:
    """Every PCKh radius of the generated heads holds at most 21 heatmap pixels (< 32 candidates), so
    g is exact with synth-pose's max_inside=32."""
    task = get_task("synth-pose-pckh", train_size=400, val_size=2, test_size=2, seed=3)
    y = task.load(None).train.y  # type: ignore[arg-type]
    assert float(y[..., 3].max()) <= 4.62  # the generator's bound (README, docstring of refactoring())
    ref = task.refactoring()
    assert ref.max_inside == 32
    wide = PCKhRefactoring(radius_factor=task.threshold, max_inside=1024)
    out = torch.zeros(len(y), task.num_joints, *task.heatmap_size)
    inside = wide.comparisons(out, y).context["inside"]
    assert 0 < int(inside.sum(-1).max()) <= 21


def test_random_bits_are_fair_and_independent() -> None:
    torch.manual_seed(0)
    bits = _random_bits((200, 3, 7, 13), torch.device("cpu"))
    assert bits.shape == (200, 3, 7, 13) and bits.dtype == torch.bool
    flat = bits.reshape(200, -1).double()
    assert float(flat.mean()) == pytest.approx(0.5, abs=0.01)
    per_position = flat.mean(0)  # no position is biased (n = 200 each: sd 0.035)
    assert float(per_position.min()) > 0.3 and float(per_position.max()) < 0.7
    corr = torch.corrcoef(flat[:, :64].T)  # neighbouring bits of one byte are uncorrelated
    off = corr - torch.eye(64, dtype=corr.dtype)
    assert float(off.abs().max()) < 0.35
