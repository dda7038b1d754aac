"""Pose tasks end to end: MPII crops and the official metric path on the 5 real images, the synthetic task."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from surrogate_bench import get_method, get_task
from surrogate_bench.datasets.mpii import crop_persons
from surrogate_bench.datasets.synth_pose import make_synth_pose
from surrogate_bench.plugins.errors import DataUnavailable
from surrogate_bench.taskkit.metrics import pckh
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one

SMALL = {"width": 16, "depth": 2}


@pytest.fixture
def mpii_root(tmp_path: Path, data_root: Path) -> Path:
    """A data root whose training set is the 5 real validation persons (images symlinked, never copied)."""
    src = data_root / "mpii-mini"
    if not (src / "mpii_val.json").is_file():
        pytest.skip(f"{src} not found")
    dst = tmp_path / "data" / "mpii"
    (dst / "images").mkdir(parents=True)
    for img in (src / "images").iterdir():
        (dst / "images" / img.name).symlink_to(img)
    for name in ("mpii_val.json", "mpii_gt_val.mat"):
        (dst / name).symlink_to(src / name)
    (dst / "mpii_train.json").write_text((src / "mpii_val.json").read_text())
    return tmp_path / "data"


def test_mpii_without_training_data_is_unavailable(data_root: Path) -> None:
    with pytest.raises(DataUnavailable, match="mpii_train.json.*human-pose.mpi-inf.mpg.de"):
        get_task("mpii-pckh", **SMALL).load(data_root)


@pytest.mark.parametrize("method", ["mse-heatmap", "uniloss"])
def test_mpii_runs_end_to_end_on_the_5_real_images(method: str, mpii_root: Path, tmp_path: Path) -> None:
    opts = RunOptions(results_dir=tmp_path / "results", data_root=mpii_root, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)
    rec = run_one(RunSpec("mpii-pckh", method, "smoke", 0, tuple(SMALL.items())), opts)
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["n_train"] == 5 and rec["n_test"] == 5 and rec["metric_name"] == "PCKh@0.5"
    assert 0.0 <= rec["test_metric"] <= 1.0 and math.isfinite(rec["history"][0]["train_loss"])
    assert rec["history"][0]["train_loss"] != 0  # UniLoss: minus the PCKh estimate; MSE: positive


def test_mpii_perfect_heatmaps_give_100_through_the_official_path(mpii_root: Path) -> None:
    import scipy.io

    task = get_task("mpii-pckh", joints=tuple(range(16)), **SMALL)
    data = task.load(mpii_root)
    assert data.test.x.shape == (5, 3, 256, 256) and data.test.x.dtype == torch.uint8
    y = data.test.y
    maps = task.target_heatmaps(y, 1.0)
    pred = task.decode(maps)
    assert task.score(pred, y) == 1.0
    # the same predictions in image pixels against the .mat columns 0..4, by the metric function alone
    mat = scipy.io.loadmat(str(mpii_root / "mpii" / "mpii_gt_val.mat"))
    gt_xy = np.transpose(mat["pos_gt_src"][:, :, :5], (2, 0, 1))
    boxes = np.transpose(mat["headboxes_src"][:, :, :5], (2, 0, 1))
    vis = 1 - mat["jnt_missing"][:, :5].T
    res = pckh(task.to_image(pred, y), gt_xy, boxes, vis)
    assert res.mean == 100.0
    # and the decoded points really are near the gt: the argmax error is below a heatmap pixel
    err = np.linalg.norm(task.to_image(pred, y).numpy() - gt_xy, axis=-1)
    half_pixel = (y[..., 6].numpy() / 64) * math.sqrt(2) / 2  # argmax rounds to the nearest heatmap pixel
    assert (err[vis > 0] <= half_pixel[vis > 0] + 1e-3).all()
    # a prediction one PCKh radius and a bit off is wrong
    off = pred.clone()
    off[..., 0] += 0.51 * y[..., 3] + 1.0
    assert task.score(off, y) < 0.2


def test_crop_affine_puts_a_marked_pixel_where_expected() -> None:
    img = torch.zeros(3, 300, 400, dtype=torch.uint8)
    img[:, 120, 250] = 255  # 0-based row 120, column 250
    # box centre at a half pixel so that output pixel centres fall on image pixel centres:
    # p = centre + side * ((j + 0.5) / out - 0.5)  =>  j = p - centre + 31.5
    center, side = torch.tensor([[230.5, 110.5]], dtype=torch.float64), torch.tensor([64.0], dtype=torch.float64)
    crop = crop_persons(img, center, side, 64)
    r, c = np.unravel_index(int(crop[0, 0].argmax()), (64, 64))
    assert (c, r) == (51, 41)
    assert int(crop[0, 0, r, c]) == 255


def test_synth_is_deterministic_and_learnable_shapes() -> None:
    a, b, c = make_synth_pose(8, 64, 3), make_synth_pose(8, 64, 3), make_synth_pose(8, 64, 4)
    assert torch.equal(a.images, b.images) and torch.equal(a.joints, b.joints)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (8, 3, 64, 64) and a.images.dtype == torch.uint8
    assert (a.head_boxes[:, 1] > a.head_boxes[:, 0]).all()


def test_synth_task_targets_heatmaps_and_loss() -> None:
    task = get_task("synth-pose-pckh", train_size=16, val_size=8, test_size=8)
    data = task.load(Path("/nonexistent"))
    y = data.train.y
    assert y.shape == (16, 1, 4) and task.num_joints == 1 and task.heatmap_size == (32, 32)
    maps = task.target_heatmaps(y, 1.0)
    assert maps.shape == (16, 1, 32, 32)
    assert task.score(task.decode(maps), y) == 1.0
    assert task.batch_metric(maps.view(2, 8, 1, 32, 32), y.view(2, 8, 1, 4)).tolist() == [1.0, 1.0]
    loss = get_method("mse-heatmap").make_loss(task)
    assert float(loss(maps, y)) == 0.0
    out = torch.zeros_like(maps, requires_grad=True)
    value = loss(out, y)
    value.backward()
    assert value > 0 and out.grad.abs().sum() > 0
    hidden = y.clone()
    hidden[..., 2] = 0
    assert float(loss(out, hidden)) == 0.0  # invisible joints are masked out
    x = task.inputs(data.train.x, train=True, generator=torch.Generator().manual_seed(0))
    assert task.build_model()(x).shape == (16, 1, 32, 32)


def test_mse_heatmap_skips_logit_tasks() -> None:
    assert "heatmap" in get_method("mse-heatmap").supports(get_task("mnist-ap"))
    assert get_method("ce").supports(get_task("synth-pose-pckh"))
