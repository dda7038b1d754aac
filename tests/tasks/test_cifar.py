"""CIFAR tasks: restricted-pickle loader on generated official-layout files, augmentation, ResNet, accuracy."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from torchvision.transforms.v2.functional import normalize as tv_normalize

from surrogate_bench import get_task
from surrogate_bench.taskkit.augment import crop_flip, random_crop_flip
from surrogate_bench.datasets.cifar import CIFAR10, CIFAR100, load_cifar, read_batch
from surrogate_bench.plugins.errors import DataCorrupt, DataUnavailable, SuiteError
from surrogate_bench.taskkit.metrics import accuracy
from surrogate_bench.models.resnet_cifar import ResNetCifar

N_PER_BATCH = 12


def _batch(rng: np.random.Generator, n: int, label_key: bytes, num_classes: int) -> dict:
    d = {b"batch_label": b"generated batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         label_key: [int(v) for v in rng.integers(0, num_classes, n)],
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
    return d


def _dump(obj: object, path: Path, protocol: int = 4) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10(root: Path, protocol: int = 4, seed: int = 0) -> dict[str, dict]:
    """Small CIFAR-10 files in the official layout (numpy arrays pickled like the originals)."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10.folder
    folder.mkdir(parents=True)
    batches = {f: _batch(rng, N_PER_BATCH, b"labels", 10) for f in (*CIFAR10.train_files, CIFAR10.test_file)}
    for f, d in batches.items():
        _dump(d, folder / f, protocol)
    _dump({b"num_cases_per_batch": N_PER_BATCH, b"label_names": [b"airplane"] * 10, b"num_vis": 3072},
          folder / "batches.meta", protocol)
    return batches


def make_cifar100(root: Path, seed: int = 1) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    folder = root / CIFAR100.folder
    folder.mkdir(parents=True)
    batches = {"train": _batch(rng, 30, b"fine_labels", 100), "test": _batch(rng, 10, b"fine_labels", 100)}
    for f, d in batches.items():
        _dump(d, folder / f)
    _dump({b"fine_label_names": [b"x"] * 100, b"coarse_label_names": [b"y"] * 20}, folder / "meta")
    return batches


def _images(d: dict) -> np.ndarray:
    return d[b"data"].reshape(-1, 3, 32, 32)


# -- loader -----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [4, 5])  # 4: ndarray via _reconstruct; 5: via _frombuffer
def test_cifar10_layout_loads_exactly(tmp_path: Path, protocol: int) -> None:
    batches = make_cifar10(tmp_path, protocol)
    raw = load_cifar(tmp_path, "cifar10")
    train = [batches[f] for f in CIFAR10.train_files]
    assert raw["train_images"].dtype == torch.uint8 and raw["train_images"].shape == (5 * N_PER_BATCH, 3, 32, 32)
    assert np.array_equal(raw["train_images"].numpy(), np.concatenate([_images(d) for d in train]))
    assert raw["train_labels"].tolist() == sum((d[b"labels"] for d in train), [])
    assert np.array_equal(raw["test_images"].numpy(), _images(batches["test_batch"]))
    assert raw["test_labels"].dtype == torch.int64
    # channel-major rows: the first 1024 values of a row are the red plane
    assert np.array_equal(raw["test_images"][0, 0].numpy().ravel(), batches["test_batch"][b"data"][0, :1024])


def test_cifar100_layout_uses_fine_labels(tmp_path: Path) -> None:
    batches = make_cifar100(tmp_path)
    raw = load_cifar(tmp_path, "cifar100")
    assert raw["train_images"].shape == (30, 3, 32, 32) and raw["test_images"].shape == (10, 3, 32, 32)
    assert raw["train_labels"].tolist() == batches["train"][b"fine_labels"]
    assert raw["test_labels"].tolist() == batches["test"][b"fine_labels"]


def test_cifar100_task_split_and_model(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    task = get_task("cifar100-acc", val_size=6)
    data = task.load(tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 10)
    out = task.build_model()(task.inputs(data.train.x[:4], train=True, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (4, 100)


def test_archive_is_extracted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    batches = make_cifar10(src)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / CIFAR10.archive, "w:gz") as tar:
        tar.add(src / CIFAR10.folder, arcname=CIFAR10.folder)
    raw = load_cifar(root, "cifar10")
    assert (root / CIFAR10.folder / "data_batch_3").is_file()
    assert np.array_equal(raw["test_images"].numpy(), _images(batches["test_batch"]))


def test_archive_escaping_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    payload = b"escaped"
    with tarfile.open(root / CIFAR10.archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"{CIFAR10.folder}/../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataCorrupt, match="cannot extract"):
        load_cifar(root, "cifar10")
    assert not (tmp_path / "escaped.txt").exists()


def test_truncated_archive_is_corrupt(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_cifar10(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / CIFAR10.folder, arcname=CIFAR10.folder)
    (tmp_path / CIFAR10.archive).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataCorrupt, match=CIFAR10.archive):
        load_cifar(tmp_path, "cifar10")


def test_download_only_when_asked_then_extracted_by_us(tmp_path: Path, monkeypatch) -> None:
    import surrogate_bench.datasets.cifar as cifar

    src = tmp_path / "src"
    batches = make_cifar10(src)
    root = tmp_path / "root"
    calls = []

    def fake_download(where: Path, layout) -> None:  # stands in for the network fetch of the official archive
        calls.append(layout.name)
        where.mkdir(parents=True, exist_ok=True)
        with tarfile.open(where / layout.archive, "w:gz") as tar:
            tar.add(src / layout.folder, arcname=layout.folder)

    monkeypatch.setattr(cifar, "download", fake_download)
    with pytest.raises(DataUnavailable):
        load_cifar(root, "cifar10")
    assert calls == []
    raw = load_cifar(root, "cifar10", download=True)
    assert calls == ["CIFAR-10"] and raw["test_labels"].tolist() == batches["test_batch"][b"labels"]


class _Evil:
    """Unpickling this runs a shell command (what a hostile batch file could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["top", "labels"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path, where: str) -> None:
    batches = make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = dict(batches["data_batch_2"])
    if where == "labels":
        evil[b"labels"] = _Evil(marker)
    path = tmp_path / CIFAR10.folder / "data_batch_2"
    _dump(_Evil(marker) if where == "top" else evil, path)
    with pytest.raises(DataCorrupt) as info:
        load_cifar(tmp_path, "cifar10")
    msg = str(info.value)
    assert str(path) in msg and "refused pickle global" in msg and "system" in msg
    assert not marker.exists()


def test_truncated_batch_is_corrupt(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / CIFAR10.folder / "data_batch_4"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataCorrupt, match=r"data_batch_4.*truncated"):
        load_cifar(tmp_path, "cifar10")


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: [1, 2, 3], "holds a list"),
    (lambda d: {k: v for k, v in d.items() if k != b"data"}, "b'data' is NoneType"),
    (lambda d: {**d, b"data": d[b"data"][:, :100]}, r"shape \(12, 100\)"),
    (lambda d: {**d, b"data": d[b"data"].astype(np.float32)}, "float32"),
    (lambda d: {**d, b"labels": d[b"labels"][:-1]}, "11 of"),
    (lambda d: {**d, b"labels": [10] * 12}, r"labels span 10\.\.10"),
    (lambda d: {**d, b"labels": [b"cat"] * 12}, "expected a dict"),
])
def test_malformed_batch_is_corrupt(tmp_path: Path, mutate, expect: str) -> None:
    batches = make_cifar10(tmp_path)
    path = tmp_path / CIFAR10.folder / "test_batch"
    _dump(mutate(batches["test_batch"]), path)
    with pytest.raises(DataCorrupt, match=expect) as info:
        read_batch(path, b"labels", 10)
    assert str(path) in str(info.value) and "expected" in str(info.value)


def test_missing_data_is_unavailable_with_hint(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable) as info:
        load_cifar(tmp_path, "cifar100")
    msg = str(info.value)
    assert "cifar-100-python" in msg and "--download" in msg and "cifar-100-python.tar.gz" in msg
    assert not any(tmp_path.iterdir())  # nothing fetched or created unasked
    make_cifar10(tmp_path)
    (tmp_path / CIFAR10.folder / "data_batch_5").unlink()
    with pytest.raises(DataUnavailable, match="data_batch_5"):
        get_task("cifar10-acc").load(tmp_path)


def test_real_cifar10(data_root: Path) -> None:
    if not (data_root / CIFAR10.folder).is_dir():
        pytest.skip(f"no {CIFAR10.folder} under {data_root}")
    task = get_task("cifar10-acc")
    data = task.load(data_root)
    assert data.train.x.shape == (45000, 3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.val.x.shape == (5000, 3, 32, 32) and data.test.x.shape == (10000, 3, 32, 32)
    counts = torch.bincount(torch.cat([data.train.y, data.val.y]), minlength=10)
    assert counts.tolist() == [5000] * 10  # the val split is carved out of the 50k training images
    assert torch.bincount(data.test.y, minlength=10).tolist() == [1000] * 10
    raw = load_cifar(data_root, "cifar10")
    assert raw["train_labels"][:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the official first labels
    order = torch.randperm(50000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(data.val.x[:50], raw["train_images"][order[:50]])  # fixed seed-0 split


# -- augmentation -----------------------------------------------------------------------------
def _reference_crop_flip(x: torch.Tensor, top, left, flip, pad: int) -> torch.Tensor:
    out = []
    for i in range(len(x)):
        img = F.pad(x[i], (pad, pad, pad, pad))[:, top[i]:top[i] + 32, left[i]:left[i] + 32]
        out.append(img.flip(-1) if flip[i] else img)
    return torch.stack(out)


def test_crop_flip_matches_per_sample_reference() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    top, left = torch.randint(0, 9, (16,), generator=g), torch.randint(0, 9, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    top[:2], left[:2], flip[:2] = torch.tensor([0, 8]), torch.tensor([8, 0]), torch.tensor([False, True])
    got = crop_flip(x, top, left, flip, pad=4)
    assert got.dtype == torch.uint8 and torch.equal(got, _reference_crop_flip(x, top, left, flip, 4))
    centred = crop_flip(x, torch.full((16,), 4), torch.full((16,), 4), torch.zeros(16, dtype=torch.bool), 4)
    assert torch.equal(centred, x)


def test_random_crop_flip_draws_from_the_generator() -> None:
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    top, left = torch.randint(0, 9, (64,), generator=g), torch.randint(0, 9, (64,), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    assert torch.equal(a, _reference_crop_flip(x, top, left, flip, 4))
    assert 0 < int(flip.sum()) < 64 and len(set(top.tolist())) > 3  # really random offsets and flips
    assert not torch.equal(a, random_crop_flip(x, torch.Generator().manual_seed(8)))


def test_task_inputs_normalise_and_augment_only_when_training() -> None:
    task = get_task("cifar10-acc")
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    ref = tv_normalize(x.float() / 255, list(task.mean), list(task.std))
    ev = task.inputs(x, train=False)
    assert ev.dtype == torch.float32 and torch.allclose(ev, ref, atol=1e-5)
    tr = task.inputs(x, train=True, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(tr, tv_normalize(random_crop_flip(x, g).float() / 255, list(task.mean), list(task.std)),
                          atol=1e-5)
    assert not torch.allclose(tr, ev)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_inputs_on_cuda_use_a_cuda_generator() -> None:
    task = get_task("cifar10-acc")
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, device="cuda")
    out = task.inputs(x, train=True, generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda" and out.shape == (32, 3, 32, 32)


# -- model, task, metric ------------------------------------------------------------------------
@pytest.mark.parametrize("depth,params_m", [(20, 0.27), (56, 0.85)])
def test_resnet_size_and_depth(depth: int, params_m: float) -> None:
    model = ResNetCifar(depth, 10)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - params_m) < 0.01  # He et al. 2016, Table 6
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == depth


def test_task_depth_parameter() -> None:
    task = get_task("cifar10-acc", depth="56")
    assert task.p["depth"] == 56 and len(task.build_model().blocks) == 27
    assert get_task("cifar100-acc").build_model().fc.out_features == 100
    assert get_task("cifar10-acc").build_model()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(SuiteError, match="6n\\+2"):
        get_task("cifar10-acc", depth=21)


def test_task_declarations() -> None:
    for name, classes in (("cifar10-acc", 10), ("cifar100-acc", 100)):
        task = get_task(name)
        assert task.num_classes == classes and task.output_kind == "logits" and task.channels_last
        assert task.metric_name == "accuracy" and task.data_hint and "\n" not in task.data_hint
        paper = task.profile("paper")
        assert (paper.batch_size, paper.lr, paper.momentum, paper.weight_decay, paper.epochs,
                paper.milestones, paper.gamma) == (128, 0.1, 0.9, 1e-4, 200, (140, 160), 0.1)


def test_accuracy_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 10, generator=g), torch.randint(0, 10, (500,), generator=g)
    assert accuracy(logits, labels) == pytest.approx(accuracy_score(labels.numpy(), logits.argmax(1).numpy()))
    task = get_task("cifar10-acc")
    assert task.metric(logits, labels) == pytest.approx(accuracy_score(labels.numpy(), logits.argmax(1).numpy()))
    stack, ys = logits.view(5, 100, 10), labels.view(5, 100)
    expected = [accuracy_score(y.numpy(), o.argmax(1).numpy()) for o, y in zip(stack, ys)]
    assert task.batch_metric(stack, ys).tolist() == pytest.approx(expected)
