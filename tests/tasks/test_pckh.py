"""PCKh against a NumPy transcription of the official MPII evaluation, on the real validation ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogate_bench.taskkit.heatmaps import argmax_decode, gaussian_heatmaps
from surrogate_bench.taskkit.metrics import MPII_MEAN_EXCLUDED, pckh

SC_BIAS, THRESHOLD = 0.6, 0.5


def official_pckh(pos_pred_src: np.ndarray, pos_gt_src: np.ndarray, headboxes_src: np.ndarray,
                  jnt_missing: np.ndarray, threshold: float = THRESHOLD) -> tuple[np.ndarray, float]:
    """The MPII evaluation (evalMPII / MMPose's mpii_eval), transcribed as is: per-joint PCKh and Mean."""
    jnt_visible = 1 - jnt_missing
    uv_error = pos_pred_src - pos_gt_src
    uv_err = np.linalg.norm(uv_error, axis=1)
    headsizes = headboxes_src[1, :, :] - headboxes_src[0, :, :]
    headsizes = np.linalg.norm(headsizes, axis=0)
    headsizes *= SC_BIAS
    scale = headsizes * np.ones((len(uv_err), 1), dtype=np.float32)
    scaled_uv_err = uv_err / scale
    scaled_uv_err = scaled_uv_err * jnt_visible
    jnt_count = np.sum(jnt_visible, axis=1)
    less_than_threshold = (scaled_uv_err <= threshold) * jnt_visible
    PCKh = 100.0 * np.sum(less_than_threshold, axis=1) / jnt_count
    PCKh = np.ma.array(PCKh, mask=False)
    PCKh.mask[6:8] = True
    jnt_count = np.ma.array(jnt_count, mask=False)
    jnt_count.mask[6:8] = True
    jnt_ratio = jnt_count / np.sum(jnt_count).astype(np.float64)
    return PCKh.data, float(np.sum(PCKh * jnt_ratio))


@pytest.fixture(scope="module")
def gt(data_root):
    import scipy.io

    path = data_root / "mpii-mini" / "mpii_gt_val.mat"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    mat = scipy.io.loadmat(str(path))
    return mat["pos_gt_src"].astype(np.float64), mat["headboxes_src"].astype(np.float64), mat["jnt_missing"]


def ours(pred_src: np.ndarray, gt) -> tuple[np.ndarray, float]:
    pos, boxes, missing = gt
    mean_joints = [j for j in range(16) if j not in MPII_MEAN_EXCLUDED]
    res = pckh(np.transpose(pred_src, (2, 0, 1)), np.transpose(pos, (2, 0, 1)), np.transpose(boxes, (2, 0, 1)),
               1 - missing.T, THRESHOLD, mean_joints=mean_joints)
    return res.per_joint.numpy(), res.mean


def head_size(boxes: np.ndarray) -> np.ndarray:
    return SC_BIAS * np.linalg.norm(boxes[1] - boxes[0], axis=0)


def test_gt_as_prediction_is_100(gt) -> None:
    per_joint, mean = ours(gt[0].copy(), gt)
    assert gt[0].shape == (16, 2, 2958)
    assert np.allclose(per_joint, 100.0) and mean == pytest.approx(100.0)


@pytest.mark.parametrize("fraction,expected", [(0.4, 100.0), (0.49, 100.0), (0.51, 0.0), (0.6, 0.0)])
def test_known_offsets(gt, fraction: float, expected: float) -> None:
    """Every joint moved by exactly ``fraction`` head sizes in a random direction."""
    pos, boxes, _ = gt
    angle = np.random.default_rng(0).uniform(0, 2 * np.pi, size=pos.shape[0::2])
    step = fraction * head_size(boxes)[None]
    pred = pos + np.stack([np.cos(angle), np.sin(angle)], 1) * step[:, None]
    per_joint, mean = ours(pred, gt)
    official, official_mean = official_pckh(pred, pos, boxes, gt[2])
    assert np.allclose(per_joint, expected) and mean == pytest.approx(expected)
    assert np.allclose(per_joint, official) and mean == pytest.approx(official_mean)


def test_matches_official_on_noisy_predictions(gt) -> None:
    pos, boxes, missing = gt
    rng = np.random.default_rng(1)
    noise = rng.normal(size=pos.shape) * (0.4 * head_size(boxes))[None, None] * rng.uniform(0.2, 2, (16, 1, 1))
    pred = pos + noise
    for threshold in (0.5, 0.2):
        official, official_mean = official_pckh(pred, pos, boxes, missing, threshold)
        res = pckh(np.transpose(pred, (2, 0, 1)), np.transpose(pos, (2, 0, 1)), np.transpose(boxes, (2, 0, 1)),
                   1 - missing.T, threshold, mean_joints=[j for j in range(16) if j not in MPII_MEAN_EXCLUDED])
        assert 5 < official_mean < 95  # a spread of values, not a degenerate case
        np.testing.assert_allclose(res.per_joint.numpy(), official, rtol=0, atol=1e-9)
        assert res.mean == pytest.approx(official_mean, abs=1e-9)
        np.testing.assert_array_equal(res.count.numpy(), (1 - missing).sum(1))


def test_invisible_joints_do_not_count() -> None:
    gt_xy = torch.zeros(2, 2, 2)
    pred = torch.tensor([[[0.0, 0.0], [50.0, 0.0]], [[100.0, 0.0], [0.0, 0.0]]])
    boxes = torch.tensor([[[0.0, 0.0], [30.0, 40.0]]] * 2)  # head size 0.6 x 50 = 30
    res = pckh(pred, gt_xy, boxes, torch.tensor([[1, 0], [0, 1]]))
    assert res.per_joint.tolist() == [100.0, 100.0] and res.mean == 100.0
    res = pckh(pred, gt_xy, boxes, torch.tensor([[1, 1], [1, 1]]))
    assert res.per_joint.tolist() == [50.0, 50.0] and res.mean == 50.0


def reference_gaussian(x: float, y: float, size: tuple[int, int], sigma: float) -> np.ndarray:
    """MMPose's MSRA target for one joint (window of 3 sigma, centre rounded), written with loops."""
    h, w = size
    mu_x, mu_y = int(x + 0.5), int(y + 0.5)
    tmp = 3 * sigma
    out = np.zeros((h, w))
    for yy in range(h):
        for xx in range(w):
            if abs(xx - mu_x) <= tmp and abs(yy - mu_y) <= tmp:
                out[yy, xx] = np.exp(-((xx - mu_x) ** 2 + (yy - mu_y) ** 2) / (2 * sigma ** 2))
    return out


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_targets_and_argmax(sigma: float) -> None:
    xy = torch.tensor([[[3.2, 5.7], [10.6, 0.1]], [[15.0, 15.0], [7.49, 8.51]]])
    vis = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    maps = gaussian_heatmaps(xy, vis, (16, 16), sigma)
    assert maps.shape == (2, 2, 16, 16)
    for n in range(2):
        for j in range(2):
            ref = reference_gaussian(*xy[n, j].tolist(), (16, 16), sigma) * vis[n, j].item()
            np.testing.assert_allclose(maps[n, j].numpy(), ref, atol=1e-6)
    dec = argmax_decode(maps)
    assert torch.equal(dec[vis > 0], torch.floor(xy + 0.5)[vis > 0])
    assert maps[1, 1].abs().sum() == 0 and maps.max() == 1.0
