"""Re-encode a CIFAR copy at a given JPEG quality, written in the official python layout (``load_cifar`` reads it).

The shared CIFAR-10 copy was itself JPEG-encoded (quality ~75, 4:2:0 chroma). Training the same recipe
on copies re-encoded at lower qualities gives the slope of accuracy vs. JPEG damage, from which the cost
of the shared copy's encoding can be estimated (README, "CIFAR-10: what the JPEG copy costs").
Encoding is Pillow's (libjpeg, 4:2:0 chroma subsampling, baseline); every other key of each batch
pickle (labels, filenames, ...) is kept as is, ``batches.meta`` / ``meta`` are copied byte for byte.

    python -m surrogate_bench.tools.jpeg_cifar --src /work/shared/data --dst /tmp/cifar-q50 --quality 50
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..datasets.cifar import LAYOUTS, _get, safe_unpickle
from ..plugins.errors import SuiteError


def reencode(images: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """N x 3072 uint8 (CIFAR rows: R plane, G plane, B plane) -> the same after a JPEG round trip at ``quality``
    (Pillow/libjpeg, 4:2:0 chroma), and the total JPEG bytes."""
    from PIL import Image

    hwc = np.ascontiguousarray(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    out = np.empty_like(hwc)
    total = 0
    for i, img in enumerate(hwc):  # a one-off data preparation, not a training step
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=2)
        total += buf.tell()
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out.transpose(0, 3, 1, 2).reshape(len(images), 3072), total


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def reencode_copy(src_root: Path, dst_root: Path, quality: int, dataset: str = "cifar10") -> dict:
    """Write ``dst_root/<folder>/`` from ``src_root/<folder>/``; returns the manifest (also written there)."""
    if not 1 <= quality <= 100:
        raise SuiteError(f"bad --quality {quality}: expected 1..100")
    layout = LAYOUTS[dataset]
    src, dst = Path(src_root) / layout.folder, Path(dst_root) / layout.folder
    files = (*layout.train_files, layout.test_file)
    missing = [f for f in files if not (src / f).is_file()]
    if missing:
        raise SuiteError(f"{src}: missing {', '.join(missing)} (need the official {layout.name} python layout)")
    if src.resolve() == dst.resolve():
        raise SuiteError("--dst must differ from --src (the copy would overwrite its source)")
    dst.mkdir(parents=True, exist_ok=True)
    manifest = {"source": str(src), "dataset": dataset, "quality": quality, "encoder": "Pillow JPEG (libjpeg)",
                "chroma": "4:2:0", "files": {}}
    for name in files:
        batch = safe_unpickle(src / name)
        data = _get(batch, b"data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise SuiteError(f"{src / name}: b'data' is not an N x 3072 uint8 array")
        new, nbytes = reencode(data, quality)
        key = b"data" if b"data" in batch else "data"
        blob = pickle.dumps({**batch, key: new}, protocol=4)
        (dst / name).write_bytes(blob)
        manifest["files"][name] = {"images": len(data), "psnr_db_vs_source": round(psnr(data, new), 3),
                                   "jpeg_bytes_per_image": round(nbytes / max(1, len(data)), 1),
                                   "sha256": hashlib.sha256(blob).hexdigest()}
    for meta in ("batches.meta", "meta"):
        if (src / meta).is_file():
            shutil.copyfile(src / meta, dst / meta)
    (dst / "jpeg_reencode.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m surrogate_bench.tools.jpeg_cifar", description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, required=True, help="data root holding the official CIFAR python folder")
    p.add_argument("--dst", type=Path, required=True, help="new data root to write the re-encoded copy under")
    p.add_argument("--quality", type=int, required=True, help="JPEG quality 1..100")
    p.add_argument("--dataset", default="cifar10", choices=sorted(LAYOUTS))
    args = p.parse_args(argv)
    try:
        manifest = reencode_copy(args.src, args.dst, args.quality, args.dataset)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, info in manifest["files"].items():
        print(f"{name}: {info['images']} images, PSNR {info['psnr_db_vs_source']:.2f} dB vs source, "
              f"{info['jpeg_bytes_per_image']:.0f} JPEG bytes/image")
    print(f"wrote {Path(args.dst) / LAYOUTS[args.dataset].folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
