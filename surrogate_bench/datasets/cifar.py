"""CIFAR-10 / CIFAR-100 from the official "python version" pickles, read with a restricted unpickler.

The batches are pickled dicts (``b'data'``: N x 3072 uint8 rows, channel-major; labels). Pickles
are code, so only the globals a numpy array needs are admitted. Nothing is downloaded unless asked.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..plugins.errors import DataCorrupt, DataUnavailable


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant lives and how its pickles are keyed."""

    name: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: bytes
    num_classes: int


CIFAR10 = CifarLayout("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                      tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", b"labels", 10)
CIFAR100 = CifarLayout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                       ("train",), "test", b"fine_labels", 100)
LAYOUTS = {"cifar10": CIFAR10, "cifar100": CIFAR100}

HINT = ("put the official {name} python version in {root}/{folder}/ ({files}) or its archive {root}/{archive}, "
        "or pass --download")

# module, name -> what unpickling a numpy array needs (numpy 1.x and 2.x spellings); nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction; any other global is refused before it is imported."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise RefusedGlobal(f"{module}.{name}")
        if target[0].startswith("numpy._core") and not hasattr(np, "_core"):  # numpy 1.x
            target = (target[0].replace("numpy._core", "numpy.core"), target[1])
        return super().find_class(*target)


def safe_unpickle(path: Path) -> Any:
    """Unpickle ``path`` (Python 2 byte strings kept as bytes) admitting only numpy arrays; DataCorrupt otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataCorrupt(f"{path}: cannot read ({exc})") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobal as exc:
        raise DataCorrupt(f"{path}: refused pickle global {exc} (a CIFAR batch holds only numpy arrays, "
                          "lists and bytes) — not an official CIFAR file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, UnicodeDecodeError) as exc:
        raise DataCorrupt(f"{path}: not a complete CIFAR pickle ({type(exc).__name__}: {exc}) — truncated "
                          "or wrong file") from None


def _get(d: dict, key: bytes) -> Any:
    return d[key] if key in d else d.get(key.decode())


def read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (N x 3 x 32 x 32 uint8 images, N int64 labels), validated."""
    obj = safe_unpickle(path)
    expected = f"a dict with b'data' (N x 3072 uint8) and {label_key!r} (N labels in 0..{num_classes - 1})"
    if not isinstance(obj, dict):
        raise DataCorrupt(f"{path}: holds a {type(obj).__name__}; expected {expected}")
    data, labels = _get(obj, b"data"), _get(obj, label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DataCorrupt(f"{path}: b'data' is {what}; expected {expected}")
    try:
        y = np.asarray(labels)
    except Exception:
        y = np.empty(0, dtype=object)
    if labels is None or y.ndim != 1 or len(y) != len(data) or not np.issubdtype(y.dtype, np.integer):
        got = "missing" if labels is None else f"{len(y) if y.ndim == 1 else y.shape} of {y.dtype}"
        raise DataCorrupt(f"{path}: {label_key!r} is {got} for {len(data)} images; expected {expected}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataCorrupt(f"{path}: labels span {y.min()}..{y.max()}; expected {expected}")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _has_files(folder: Path, layout: CifarLayout) -> bool:
    return all((folder / f).is_file() for f in (*layout.train_files, layout.test_file))


def extract_archive(archive: Path, root: Path, layout: CifarLayout) -> None:
    """Extract the official tar.gz into ``root`` with tarfile's "data" filter (no links out, no absolute paths)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == layout.folder]
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataCorrupt(f"{archive}: cannot extract ({type(exc).__name__}: {exc}); expected the official "
                          f"{layout.archive} holding {layout.folder}/") from None


def download(root: Path, layout: CifarLayout) -> None:
    """Fetch the official archive (md5-checked) with torchvision's downloader; extraction is ours."""
    try:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_url

        cls = tvd.CIFAR10 if layout is CIFAR10 else tvd.CIFAR100
        root.mkdir(parents=True, exist_ok=True)
        download_url(cls.url, str(root), cls.filename, cls.tgz_md5)
    except Exception as exc:
        raise DataUnavailable(f"{layout.name} download failed ({type(exc).__name__}: {exc}); "
                              + hint(layout, root)) from None


def hint(layout: CifarLayout, root: Path | str) -> str:
    files = ", ".join((*layout.train_files, layout.test_file))
    return HINT.format(name=layout.name, root=root, folder=layout.folder, files=files, archive=layout.archive)


def find_folder(root: Path, layout: CifarLayout, download_ok: bool) -> Path:
    """The folder with the batch files: as is, from the archive, or downloaded (only when asked)."""
    folder = root / layout.folder
    if _has_files(folder, layout):
        return folder
    if not (root / layout.archive).is_file() and download_ok:
        download(root, layout)
    if (root / layout.archive).is_file():
        extract_archive(root / layout.archive, root, layout)
        if _has_files(folder, layout):
            return folder
        raise DataCorrupt(f"{root / layout.archive}: extracted, but {folder} lacks some of "
                          f"{', '.join((*layout.train_files, layout.test_file))}")
    raise DataUnavailable(f"{layout.name} not found under {root}: " + hint(layout, root))


def cifar_files(root: Path | str, which: str = "cifar10") -> list[Path]:
    """The batch files ``load_cifar`` reads; DataUnavailable when the folder lacks one (``load`` may then
    extract or download them)."""
    layout = LAYOUTS[which]
    folder = Path(root) / layout.folder
    if not _has_files(folder, layout):
        raise DataUnavailable(f"{layout.name} not found under {root}: " + hint(layout, root))
    return [folder / f for f in (*layout.train_files, layout.test_file)]


def load_cifar(root: Path | str, which: str = "cifar10", download: bool = False) -> dict[str, torch.Tensor]:
    """Train and test images (uint8 N x 3 x 32 x 32) and labels (int64) of ``which`` (cifar10 | cifar100)."""
    layout = LAYOUTS[which]
    folder = find_folder(Path(root), layout, download)
    parts = [read_batch(folder / f, layout.label_key, layout.num_classes) for f in layout.train_files]
    test_x, test_y = read_batch(folder / layout.test_file, layout.label_key, layout.num_classes)
    return {
        "train_images": torch.from_numpy(np.concatenate([p[0] for p in parts])),
        "train_labels": torch.from_numpy(np.concatenate([p[1] for p in parts])),
        "test_images": torch.from_numpy(np.ascontiguousarray(test_x)),
        "test_labels": torch.from_numpy(test_y),
    }
