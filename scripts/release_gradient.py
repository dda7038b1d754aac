"""Measure how far the UniLoss release's backward (quotient-rule sign error) is from the true gradient.

Per batch, the same anchors (same seed) give the true and the release gradient of the loss with respect
to the network outputs; prints cosine and norm ratio (release / true). Batches: real CIFAR-10 images
through a ResNet-20 (``--data-root``; untrained, as initialised), and synthetic logits
``N(0, 1) + margin x onehot(label)`` whose batch accuracy spans 10%..100%.

    python scripts/release_gradient.py --data-root /work/shared/data --batches 20
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from surrogate_bench import get_method, get_task
from surrogate_bench.uniloss import AnchorSpec, uniloss_value


def gradients(ref, outputs: torch.Tensor, targets: torch.Tensor, sigmoid: bool, seed: int) -> list[torch.Tensor]:
    grads = []
    for release_sign in (False, True):
        x = outputs.detach().clone().requires_grad_(True)
        torch.manual_seed(seed)
        uniloss_value(ref, torch.sigmoid(x) if sigmoid else x, targets, AnchorSpec(), 1.0, 1.0, release_sign).backward()
        grads.append(x.grad.flatten())
    return grads


def report(name: str, rows: list[tuple[float, float, float]]) -> None:
    cos = torch.tensor([r[1] for r in rows])
    ratio = torch.tensor([r[2] for r in rows])
    print(f"{name}: {len(rows)} batches, cosine {cos.min():.3f}..{cos.max():.3f} (median {cos.median():.3f}), "
          f"|release| / |true| {ratio.min():.2f}..{ratio.max():.2f} (median {ratio.median():.2f})")


def measure(ref, batches, sigmoid: bool) -> list[tuple[float, float, float]]:
    rows = []
    for seed, (out, y) in enumerate(batches):
        true, rel = gradients(ref, out, y, sigmoid, seed)
        acc = float((out.argmax(-1) == y).float().mean())
        rows.append((acc, float(F.cosine_similarity(true, rel, dim=0)), float(rel.norm() / true.norm())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task("cifar10-acc")
    ref = get_method("uniloss").refactoring(task)
    gen = torch.Generator().manual_seed(0)
    synth = []
    for i in range(args.batches):
        y = torch.randint(0, 10, (128,), generator=gen)
        margin = 4.0 * i / max(args.batches - 1, 1)
        synth.append((torch.randn(128, 10, generator=gen) + margin * F.one_hot(y, 10), y))
    for sigmoid in (False, True):
        rows = measure(ref, synth, sigmoid)
        report(f"synthetic logits, batch accuracy {min(r[0] for r in rows):.2f}..{max(r[0] for r in rows):.2f}, "
               f"{'sigmoid outputs (release)' if sigmoid else 'raw logits (suite)'}", rows)
        hi = [r for r in rows if r[0] >= 0.5]
        if hi:
            report("  of which batch accuracy >= 0.5", hi)
    if args.data_root:
        from pathlib import Path

        data = task.load(Path(args.data_root))
        torch.manual_seed(0)
        model = task.build_model().eval()
        real = []
        with torch.no_grad():
            for i in range(args.batches):
                x, y = data.train.x[i * 128:(i + 1) * 128], data.train.y[i * 128:(i + 1) * 128]
                real.append((model(task.inputs(x, train=False)).float(), y))
        for sigmoid in (False, True):
            report(f"CIFAR-10 train batches, ResNet-20 at init, "
                   f"{'sigmoid outputs (release)' if sigmoid else 'raw logits (suite)'}", measure(ref, real, sigmoid))


if __name__ == "__main__":
    main()
