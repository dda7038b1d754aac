"""A reference nobody here wrote: Keller Jordan's airbench94 (94.01% mean on the pristine CIFAR-10) on a CIFAR copy.

Trains ``airbench.train94`` ``--runs`` times on the CIFAR-10 found under ``--data-root`` (e.g. the shared
JPEG copy, or one re-encoded by :mod:`surrogate_bench.tools.jpeg_cifar`) and records the test accuracies
(airbench's own protocol: all 50k training images, its TTA) as JSON. The gap to 94.01% estimates what the
copy's encoding costs. Needs CUDA and the ``airbench`` package (``pip install airbench==0.1.8``; pure Python,
deliberately not a dependency of the suite). airbench reads ``cifar10/{train,test}.pt`` relative to the
working directory, so the data are written there in a scratch directory first.

    python -m surrogate_bench.tools.airbench_cifar --data-root /work/shared/data --runs 10 \\
        --out results/bench/airbench94-shared.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

PUBLISHED_MEAN = 0.9401  # airbench94, n=1000 runs on torchvision's CIFAR-10 (lib_airbench94.py header)


def write_airbench_layout(data_root: Path, workdir: Path) -> None:
    """``workdir/cifar10/{train,test}.pt`` as airbench's CifarLoader expects them (N x 32 x 32 x 3 uint8)."""
    import torch

    from ..datasets.cifar import load_cifar

    raw = load_cifar(data_root, "cifar10")
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    out = workdir / "cifar10"
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images = raw[f"{split}_images"].permute(0, 2, 3, 1).contiguous()
        torch.save({"images": images, "labels": raw[f"{split}_labels"], "classes": classes}, out / f"{split}.pt")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m surrogate_bench.tools.airbench_cifar",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--label", default=None, help="name of the copy in the record (default: the data root)")
    p.add_argument("--out", type=Path, default=None, help="JSON record (default: print only)")
    args = p.parse_args(argv)
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("airbench needs a CUDA GPU")
        import airbench
    except ImportError:
        print("error: the airbench package is not installed: pip install airbench==0.1.8", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ..plugins.errors import SuiteError
    from ..running.environment import environment

    root = args.data_root.resolve()
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="airbench-") as tmp:
        try:
            write_airbench_layout(root, Path(tmp))
        except SuiteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        os.chdir(tmp)
        try:
            tta = airbench.lib_airbench94.hyp["net"]["tta_level"]
            airbench.warmup94(verbose=False)
            test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            accs, times = [], []
            for run in range(args.runs):
                t0 = time.perf_counter()
                model = airbench.train94(verbose=False)
                times.append(time.perf_counter() - t0)
                accs.append(airbench.evaluate(model, test_loader, tta_level=tta))
                print(f"run {run}: test accuracy {accs[-1]:.4f} ({times[-1]:.1f}s)", flush=True)
        finally:
            os.chdir(here)
    mean = statistics.fmean(accs)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    record = {"kind": "airbench94", "data_root": str(root), "label": args.label or str(root), "runs": accs,
              "mean": mean, "sd": sd, "sem": sd / len(accs) ** 0.5, "published_mean_pristine": PUBLISHED_MEAN,
              "gap_to_published": PUBLISHED_MEAN - mean, "train_seconds": times, "tta_level": tta,
              "airbench_version": getattr(airbench, "__version__", "0.1.8?"), "environment": environment(torch.device("cuda"))}
    print(f"airbench94 on {record['label']}: {mean:.4f} +- {sd:.4f} over {len(accs)} runs "
          f"(published, pristine CIFAR-10: {PUBLISHED_MEAN:.4f}; gap {PUBLISHED_MEAN - mean:+.4f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
