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


# -- MPII geometric augmentation -------------------------------------------------------------------
from surrogate_bench.taskkit.pose_warp import (WarpSettings, mirror_order, random_warps, warp_images,  # noqa: E402
                                               warp_points, warp_pose_batch)

S, H = 64, 16  # input and heatmap sizes (stride 4)


def _blob_batch(xy_in: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x S x S black images with a white 3 x 3 blob at each sample's joint (input pixels)."""
    img = torch.zeros(len(xy_in), 3, S, S, dtype=torch.uint8)
    for i, (x, y) in enumerate(xy_in.round().long().tolist()):
        img[i, :, y - 1:y + 2, x - 1:x + 2] = 255
    return img


def _targets(xy_in: torch.Tensor) -> torch.Tensor:
    t = torch.zeros(len(xy_in), 1, 4)
    t[:, 0, 0:2] = (xy_in.round() + 0.5) / (S / H) - 0.5  # input -> heatmap pixels (centres at integers)
    t[:, 0, 2] = 1.0
    t[:, 0, 3] = 4.0
    return t


def _decode_input_blob(x: torch.Tensor) -> torch.Tensor:
    """Argmax of the channel sum, in heatmap pixels."""
    idx = x.sum(1).flatten(1).argmax(-1)
    xy = torch.stack([idx % S, idx // S], -1).float()
    return (xy + 0.5) / (S / H) - 0.5


def test_warped_images_decoded_joints_land_on_the_warped_annotation() -> None:
    gen = torch.Generator().manual_seed(0)
    xy = 22 + 20 * torch.rand(40, 2, generator=gen)  # near the centre: stays in view under +-60 deg, 1.33x
    settings = WarpSettings(scale_factor=0.25, rotation=30.0, rotation_prob=1.0, flip_prob=0.5)
    images, t = warp_pose_batch(_blob_batch(xy).float(), _targets(xy), H, [9], settings, gen)
    assert (t[..., 2] == 1).all()
    err = (_decode_input_blob(images) - t[:, 0, 0:2]).abs().max()
    assert err <= 0.5  # within 2 input pixels (bilinear blur of a 3 x 3 blob)
    moved = (t[:, 0, 0:2] - _targets(xy)[:, 0, 0:2]).norm(dim=-1)
    assert moved.max() > 3  # the warps did move the joints


def test_mpii_train_batch_moves_image_and_targets_alike() -> None:
    task = get_task("mpii-pckh", input_size=S, heatmap_size=H, rotation_prob=1.0)
    gen = torch.Generator().manual_seed(1)
    xy = 22 + 20 * torch.rand(16, 2, generator=gen)
    t = torch.cat([_targets(xy), torch.zeros(16, 1, 11)], -1)  # the task's 15 target channels
    inputs, warped = task.train_batch(_blob_batch(xy), t, gen)
    assert inputs.shape == (16, 3, S, S) and warped.shape == t.shape
    assert (_decode_input_blob(inputs) - warped[:, 0, 0:2]).abs().max() <= 0.5
    assert torch.equal(warped[..., 4:], t[..., 4:])  # bookkeeping channels untouched


def test_flip_swaps_left_and_right_joints() -> None:
    t = torch.zeros(1, 2, 4)
    t[0, 0, :] = torch.tensor([3.0, 5.0, 1.0, 2.0])  # r-shoulder (12)
    t[0, 1, :] = torch.tensor([10.0, 6.0, 1.0, 2.0])  # l-shoulder (13)
    flip_only = WarpSettings(scale_factor=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=1.0)
    _, out = warp_pose_batch(torch.zeros(1, 3, S, S), t, H, [12, 13], flip_only)
    assert out[0, 0, 0:2].tolist() == [H - 1 - 10.0, 6.0]  # the new right shoulder: the mirrored left one
    assert out[0, 1, 0:2].tolist() == [H - 1 - 3.0, 5.0]
    assert mirror_order([12, 13]) == [1, 0] and mirror_order([9]) == [0] and mirror_order([12]) is None
    with pytest.raises(SuiteError, match="mirror"):
        get_task("mpii-pckh", joints=(12,))
    get_task("mpii-pckh", joints=(12,), flip=0.0)


def test_warp_round_trip_and_head_size_scale() -> None:
    gen = torch.Generator().manual_seed(2)
    m, zoom, _ = random_warps(8, WarpSettings(rotation_prob=1.0), torch.device("cpu"), gen)
    assert torch.allclose(m.det().abs().sqrt(), zoom, atol=1e-6)  # a similarity: head sizes scale by the zoom
    pts = torch.rand(8, 5, 2, generator=gen) * (H - 1)
    back = warp_points(warp_points(pts, m, H), torch.linalg.inv(m), H)
    assert torch.allclose(back, pts, atol=1e-5)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    smooth = torch.stack([torch.cos(2 * xx) * torch.sin(3 * yy)] * 3)[None].expand(8, -1, -1, -1)
    restored = warp_images(warp_images(smooth, m), torch.linalg.inv(m))
    centre = slice(S // 2 - 8, S // 2 + 8)  # in view through both warps
    assert (restored - smooth)[..., centre, centre].abs().max() < 0.05
    _, t = warp_pose_batch(torch.zeros(8, 3, S, S), torch.tensor([[[7.5, 7.5, 1.0, 3.0]]]).expand(8, 1, 4).clone(),
                           H, [9], WarpSettings(rotation_prob=1.0), torch.Generator().manual_seed(2))
    assert torch.allclose(t[:, 0, 3], 3.0 * zoom, atol=1e-6)


def test_joints_warped_off_the_heatmap_become_invisible() -> None:
    t = torch.tensor([[[0.0, 0.0, 1.0, 3.0]]])
    zoom_in = WarpSettings(scale_factor=0.0, rotation=60.0, rotation_prob=1.0, flip_prob=0.0)
    seen = set()
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        _, out = warp_pose_batch(torch.zeros(1, 3, S, S), t, H, [9], zoom_in, gen)
        inside = bool(((out[0, 0, :2] >= -0.5) & (out[0, 0, :2] < H - 0.5)).all())
        assert float(out[0, 0, 2]) == float(inside)
        seen.add(inside)
    assert seen == {True, False}


def _sample(images: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear colours of N images at N x J x 2 pixel coordinates -> N x J x 3."""
    size = images.shape[-1]
    grid = ((2 * xy + 1) / size - 1)[:, :, None, :].float()
    return torch.nn.functional.grid_sample(images, grid, align_corners=False)[..., 0].transpose(1, 2)


def test_real_mpii_crops_warped_show_the_same_pixels_at_the_warped_joints(data_root) -> None:
    """On the real mini MPII crops: the warped image's colour at each warped joint is the original's colour
    at the joint (bilinear twice), far closer than at unrelated joints."""
    from surrogate_bench.datasets.mpii import crop_boxes, find_dir, load_crops, read_annotations

    folder = find_dir(data_root)
    if folder is None:
        pytest.skip("no MPII data")
    entries = read_annotations(folder / "mpii_val.json")[:12]
    size = 128
    crops = load_crops(folder, entries, size, workers=1).float()
    center, side = crop_boxes(entries)
    joints = [6, 7, 8, 9]  # pelvis, thorax, neck, head top: their own mirrors
    xy = torch.tensor([e["joints"] for e in entries], dtype=torch.float64)[:, joints] - 1.0
    t = torch.zeros(len(entries), len(joints), 4)
    t[..., 0:2] = ((xy - center[:, None]) / side[:, None, None] * size + size / 2 - 0.5).float()
    t[..., 2] = torch.tensor([e["joints_vis"] for e in entries], dtype=torch.float32)[:, joints]
    t[..., 3] = 10.0
    settings = WarpSettings(scale_factor=0.25, rotation=30.0, rotation_prob=1.0, flip_prob=0.5)
    warped, wt = warp_pose_batch(crops, t, size, joints, settings, torch.Generator().manual_seed(0))
    ok = (wt[..., 2] > 0) & (t[..., 2] > 0)
    assert ok.sum() >= 10
    same = (_sample(warped, wt[..., 0:2]) - _sample(crops, t[..., 0:2])).abs().mean(-1)[ok]
    other = (_sample(warped, wt[..., 0:2]) - _sample(crops, t[..., 0:2]).roll(1, 0)).abs().mean(-1)[ok]
    assert same.mean() < 0.25 * other.mean()
