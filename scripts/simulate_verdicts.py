"""Print the simulated error rates of the sequential verdicts for the default designs (docs/verdicts.md).

    python scripts/simulate_verdicts.py [--sequences 10000] [--seed 0]   (PYTHONPATH=. from a checkout)

A family of 3 comparisons sharing the baseline's noise (correlation 0.5), normal differences, delta = 1
(only sd / delta matters); the designs n_min = 5 with n_max 10 (step 1 and 2) and n_max 30 (step 2).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from surrogate_bench.stats.sequential import SequentialDesign
from surrogate_bench.stats.simulate import draw_differences, error_rates, run_sequential

DESIGNS = (SequentialDesign(n_min=5, n_max=10, step=1), SequentialDesign(n_min=5, n_max=10, step=2),
           SequentialDesign(n_min=5, n_max=30, step=2))
SCENARIOS = (  # (name, true differences / delta, sd / delta, the rate that matters)
    ("equal means, sd = delta", [0.0, 0.0, 0.0], 1.0, "any_false_better_or_worse"),
    ("equal means, sd = 10 delta", [0.0, 0.0, 0.0], 10.0, "any_false_better_or_worse"),
    ("inside: +-delta/4, sd = delta/3", [0.25, 0.25, -0.25], 1 / 3, "equivalent_per_comparison"),
    ("on the margin: +-delta, sd = delta/2", [1.0, -1.0, 1.0], 0.5, "any_false_equivalent"),
    ("on the margin: +-delta, sd = 2 delta", [1.0, -1.0, 1.0], 2.0, "any_false_equivalent"),
)


def main() -> None:
    """Simulate every scenario under every design and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.sequences} sequences per row; alpha = 0.05; 3 Monte Carlo SE at alpha = "
          f"{3 * math.sqrt(0.05 * 0.95 / args.sequences):.4f}")
    header = ("design", "scenario", "false better/worse", "false equivalent", "equivalent (per comp.)",
              "all 3 equivalent", "all decided", "mean seeds")
    print(" | ".join(header))
    for design in DESIGNS:
        for name, true, sd, _ in SCENARIOS:
            diffs = draw_differences(rng, args.sequences, true, sd, design.n_max)
            r = error_rates(run_sequential(design, diffs, 1.0), true, 1.0)
            print(f"n_min {design.n_min}, n_max {design.n_max}, step {design.step} | {name} | "
                  f"{r['any_false_better_or_worse']:.4f} | {r['any_false_equivalent']:.4f} | "
                  f"{r['equivalent_per_comparison']:.4f} | {r['all_equivalent']:.4f} | "
                  f"{r['all_decided']:.4f} | {r['mean_seeds']:.2f}")


if __name__ == "__main__":
    main()
