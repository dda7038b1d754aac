"""tools.jpeg_cifar: a re-encoded copy loads like the original (labels, shapes, other keys kept), JPEG damage
grows as quality falls; tools.airbench_cifar: its data layout, and one-line errors without CUDA/airbench."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from surrogate_bench.datasets.cifar import CIFAR10, load_cifar, safe_unpickle
from surrogate_bench.tools import airbench_cifar, jpeg_cifar


def smooth_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """N x 3072 uint8 natural-ish images: per-channel gradients plus mild noise."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 255, 3), rng.uniform(-120, 120, 3), rng.uniform(-120, 120, 3)
        img = a[:, None, None] + b[:, None, None] * xx + c[:, None, None] * yy + rng.normal(0, 6, (3, 32, 32))
        out.append(np.clip(img, 0, 255).astype(np.uint8).reshape(3072))
    return np.stack(out)


@pytest.fixture
def tiny_cifar(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    folder = root / CIFAR10.folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*CIFAR10.train_files, CIFAR10.test_file):
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, 6)],
                 b"data": smooth_images(6, rng), b"filenames": [f"{name}_{i}.png".encode() for i in range(6)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=4))
    return root


def test_reencoded_copy_loads_and_damage_grows_with_lower_quality(tiny_cifar: Path, tmp_path: Path) -> None:
    src = load_cifar(tiny_cifar)
    psnrs = {}
    for q in (95, 30, 5):
        dst = tmp_path / f"q{q}"
        assert jpeg_cifar.main(["--src", str(tiny_cifar), "--dst", str(dst), "--quality", str(q)]) == 0
        got = load_cifar(dst)
        assert torch.equal(got["train_labels"], src["train_labels"]) and torch.equal(got["test_labels"],
                                                                                   src["test_labels"])
        assert got["train_images"].shape == src["train_images"].shape
        batch = safe_unpickle(dst / CIFAR10.folder / "data_batch_3")
        assert batch[b"filenames"][0] == b"data_batch_3_0.png" and batch[b"batch_label"] == b"data_batch_3"
        assert (dst / CIFAR10.folder / "batches.meta").read_bytes() == (
            tiny_cifar / CIFAR10.folder / "batches.meta").read_bytes()
        psnrs[q] = jpeg_cifar.psnr(src["train_images"].numpy(), got["train_images"].numpy())
    assert psnrs[95] > psnrs[30] > psnrs[5] > 10.0
    assert psnrs[95] < float("inf")  # a JPEG round trip is lossy even at 95


def test_reencode_matches_a_direct_pillow_round_trip(tiny_cifar: Path) -> None:
    import io

    from PIL import Image

    data = safe_unpickle(tiny_cifar / CIFAR10.folder / "test_batch")[b"data"]
    new, nbytes = jpeg_cifar.reencode(data, 60)
    buf = io.BytesIO()
    Image.fromarray(data[2].reshape(3, 32, 32).transpose(1, 2, 0)).save(buf, format="JPEG", quality=60, subsampling=2)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(new[2].reshape(3, 32, 32), ref) and nbytes > 0


@pytest.mark.parametrize("args,message", [
    (["--quality", "0"], "bad --quality 0"),
    (["--quality", "50", "--src-missing"], "missing data_batch_1"),
])
def test_bad_input_is_one_line(args: list[str], message: str, tiny_cifar: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "nowhere" if "--src-missing" in args else tiny_cifar
    argv = ["--src", str(src), "--dst", str(tmp_path / "out"), *[a for a in args if a != "--src-missing"]]
    assert jpeg_cifar.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_airbench_layout(tiny_cifar: Path, tmp_path: Path) -> None:
    airbench_cifar.write_airbench_layout(tiny_cifar, tmp_path / "work")
    train = torch.load(tmp_path / "work" / "cifar10" / "train.pt", weights_only=True)
    src = load_cifar(tiny_cifar)
    assert train["images"].shape == (30, 32, 32, 3) and train["images"].dtype == torch.uint8
    assert torch.equal(train["images"].permute(0, 3, 1, 2), src["train_images"])
    assert torch.equal(train["labels"], src["train_labels"]) and len(train["classes"]) == 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_airbench_without_cuda_is_one_line(tiny_cifar: Path, capsys) -> None:
    assert airbench_cifar.main(["--data-root", str(tiny_cifar), "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and len(err.strip().splitlines()) == 1
