"""Published protocols as task parameters: CIFAR shortcut A / B and precision; synth-pose's profile names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from surrogate_bench import get_task
from surrogate_bench.plugins.errors import SuiteError


def test_cifar_shortcut_b_is_a_1x1_conv_and_bn_where_the_shape_changes() -> None:
    a = get_task("cifar10-acc").build_model()
    b = get_task("cifar10-acc", shortcut="B").build_model()
    convs_a = [m for m in a.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    convs_b = [m for m in b.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert not convs_a
    assert [(m.in_channels, m.out_channels, m.stride) for m in convs_b] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    n_a, n_b = (sum(p.numel() for p in m.parameters()) for m in (a, b))
    assert n_b - n_a == 16 * 32 + 32 * 64 + 2 * (32 + 64)  # the projections' weights and BN affine
    x = torch.randn(2, 3, 32, 32)
    assert b(x).shape == (2, 10)


def test_cifar_precision_follows_the_papers_in_the_paper_profile() -> None:
    task = get_task("cifar10-acc")
    assert task.profile("paper").amp is False and task.profile("quick").amp is True
    assert get_task("cifar10-acc", precision="bf16").profile("paper").amp is True
    assert get_task("cifar100-acc", precision="fp32").profile("quick").amp is False


@pytest.mark.parametrize("params", [{"shortcut": "C"}, {"precision": "fp16"}])
def test_cifar_bad_protocol_params_are_one_line_errors(params) -> None:
    with pytest.raises(SuiteError, match=next(iter(params))):
        get_task("cifar10-acc", **params)


def test_synth_pose_has_no_paper_profile() -> None:
    task = get_task("synth-pose-pckh")
    assert "paper" not in task.profiles and task.profile("mpii-schedule").epochs == 50
    with pytest.raises(SuiteError, match="no profile 'paper'"):
        task.profile("paper")
