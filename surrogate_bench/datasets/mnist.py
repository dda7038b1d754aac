"""MNIST from its four original IDX ``.gz`` files (torchvision layout or a plain ``mnist/`` folder)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..plugins.errors import DataCorrupt, DataUnavailable

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EXPECTED = {"train_images": (60000, 28, 28), "train_labels": (60000,),
            "test_images": (10000, 28, 28), "test_labels": (10000,)}
HINT = ("put the four MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in {root}/MNIST/raw/ or {root}/mnist/, "
        "or pass --download")


def find_dir(root: Path) -> Path | None:
    """The folder holding the four files, if any."""
    for cand in (root / "MNIST" / "raw", root / "mnist", root):
        if all((cand / f"{name}.gz").is_file() or (cand / name).is_file() for name in FILES.values()):
            return cand
    return None


def mnist_files(root: Path) -> list[Path]:
    """The four files ``load_mnist`` reads (gzipped or not); DataUnavailable when they are not there."""
    folder = find_dir(Path(root))
    if folder is None:
        raise DataUnavailable(f"MNIST not found under {root}: " + HINT.format(root=root))
    return [folder / f"{n}.gz" if (folder / f"{n}.gz").is_file() else folder / n for n in FILES.values()]


def read_idx(path: Path, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file (gzipped or not); DataCorrupt naming the file when it is not what is expected."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataCorrupt(f"{path}: not a readable gzip file ({exc}); expected {path.name} from MNIST") from None
    ndim = len(expected_shape)
    if len(raw) < 4 + 4 * ndim or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != ndim:
        raise DataCorrupt(f"{path}: bad IDX header; expected a uint8 array of {ndim} dimensions")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if dims != expected_shape or len(body) != int(np.prod(dims)):
        raise DataCorrupt(f"{path}: holds {len(body)} bytes for dims {dims}; expected shape {expected_shape} "
                          f"({int(np.prod(expected_shape))} bytes) — truncated or wrong file")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_mnist(root: Path, download: bool = False) -> dict[str, torch.Tensor]:
    """The four arrays as uint8 tensors; downloads through torchvision only when asked."""
    root = Path(root)
    folder = find_dir(root)
    if folder is None and download:
        try:
            import torchvision

            torchvision.datasets.MNIST(str(root), train=True, download=True)
            torchvision.datasets.MNIST(str(root), train=False, download=True)
        except Exception as exc:
            raise DataUnavailable(f"MNIST download failed ({type(exc).__name__}: {exc}); "
                                  + HINT.format(root=root)) from None
        folder = find_dir(root)
    if folder is None:
        raise DataUnavailable(f"MNIST not found under {root}: " + HINT.format(root=root))
    out = {}
    for key, name in FILES.items():
        path = folder / f"{name}.gz"
        path = path if path.is_file() else folder / name
        out[key] = torch.from_numpy(read_idx(path, EXPECTED[key]).copy())
    return out
