"""How often the UniLoss release's AP g scores an anchor 0 because its pairs admit no ranking (a cycle).

Batches of ``--batch`` MNIST-like labels (positive rate ``--rate``, batches with >= 2 positives and >= 2
negatives, where a cycle is possible); per batch, the suite's 16 random ("bad") anchors and 16 good
anchors (truth with one pair flipped).

    python scripts/release_ap_cycles.py --batch 16 --rate 0.1
"""

from __future__ import annotations

import argparse

import torch

from surrogate_bench.uniloss import AnchorSpec
from surrogate_bench.uniloss.ap import ReleaseAveragePrecisionRefactoring
from surrogate_bench.uniloss.interpolation import sample_dense_anchors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--batches", type=int, default=2000)
    args = ap.parse_args()
    torch.manual_seed(0)
    ref = ReleaseAveragePrecisionRefactoring()
    zero_bad, zero_good, n_bad, n_good, used = 0, 0, 0, 0, 0
    for _ in range(args.batches):
        y = (torch.rand(args.batch) < args.rate).long()
        if y.sum() < 2 or (1 - y).sum() < 2:
            continue
        used += 1
        cmp = ref.comparisons(torch.randn(args.batch), y)
        anchors = sample_dense_anchors(ref.truth(cmp), ref.signs(cmp), cmp.valid, AnchorSpec())
        g = ref.g(anchors.view(-1, *cmp.shape), cmp)
        zero_good += int((g[1:17] == 0).sum())
        zero_bad += int((g[-16:] == 0).sum())
        n_good, n_bad = n_good + 16, n_bad + 16
    print(f"batch {args.batch}, positive rate {args.rate}: {used} batches with a possible cycle; "
          f"random anchors scored 0: {zero_bad / n_bad:.1%}; good anchors scored 0: {zero_good / n_good:.1%}")


if __name__ == "__main__":
    main()
