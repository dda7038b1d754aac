"""Published numbers quoted from the papers, shown as reference rows and never mixed with measured ones.

Each row: the task it speaks to, the setting the paper used, the loss and the value as printed,
where it is printed, and ``compare_with``: the one suite configuration (method variant, task parameters,
profile) whose protocol matches the paper's, the only one the row may sit beside (docs/fidelity.md).
Values are quoted verbatim; the suite never computes them.
"""

from __future__ import annotations

UNILOSS = "UniLoss (Liu, Wang, Deng, ECCV 2020)"
RELOSS = "ReLoss (Huang et al., ICLR 2022)"

QUOTED_METRICS: list[dict[str, str]] = [
    {"task": "mnist-ap", "setting": "MLP 784-500-300, batch 16, 30 epochs", "loss": "ce", "value": "0.9989 AP",
     "source": f"{UNILOSS}, Sec. 4.2.3",
     "compare_with": "ce · profile paper"},
    {"task": "mnist-ap", "setting": "MLP 784-500-300, batch 16, 30 epochs", "loss": "uniloss", "value": "0.9988 AP",
     "source": f"{UNILOSS}, Sec. 4.2.3",
     "compare_with": "uniloss-release · profile paper"},
    {"task": "cifar10-acc", "setting": "ResNet-20, 200 epochs", "loss": "ce", "value": "91.49 %",
     "source": f"{UNILOSS}, Table 2",
     "compare_with": "ce · shortcut=B · profile paper"},
    {"task": "cifar10-acc", "setting": "ResNet-20, 200 epochs", "loss": "uniloss", "value": "91.64 %",
     "source": f"{UNILOSS}, Table 2",
     "compare_with": "uniloss-release · shortcut=B · profile paper"},
    {"task": "cifar100-acc", "setting": "ResNet-20, 200 epochs", "loss": "ce", "value": "65.90 %",
     "source": f"{UNILOSS}, Table 2",
     "compare_with": "ce · shortcut=B · profile paper"},
    {"task": "cifar100-acc", "setting": "ResNet-20, UniLoss 5x longer, 20% of binaries", "loss": "uniloss",
     "value": "65.92 %", "source": f"{UNILOSS}, Table 2",
     "compare_with": "uniloss-release · shortcut=B · top_k=20 · 5x epochs (no such profile yet)"},
    {"task": "mpii-pckh", "setting": "1-stack hourglass, head joint, 50 epochs", "loss": "mse-heatmap",
     "value": "91.31 (σ=0.1) … 95.74 (σ=3) PCKh", "source": f"{UNILOSS}, Table 1",
     "compare_with": "mse-heatmap · sigma=0.1..3 · profile paper"},
    {"task": "mpii-pckh", "setting": "1-stack hourglass, head joint, 50 epochs", "loss": "mse-heatmap",
     "value": "95.71 PCKh (σ=1)", "source": f"{UNILOSS}, Table 1",
     "compare_with": "mse-heatmap · profile paper"},
    {"task": "mpii-pckh", "setting": "1-stack hourglass, head joint, 50 epochs", "loss": "uniloss",
     "value": "95.77 PCKh", "source": f"{UNILOSS}, Table 1",
     "compare_with": "uniloss-release · profile paper"},
    {"task": "cifar10-acc", "setting": "ResNet-56", "loss": "ce", "value": "94.32 ± 0.25 %",
     "source": f"{RELOSS}, slides: image classification",
     "compare_with": "ce · depth=56 · profile paper"},
    {"task": "cifar10-acc", "setting": "ResNet-56", "loss": "reloss", "value": "94.57 ± 0.08 %",
     "source": f"{RELOSS}, slides: image classification",
     "compare_with": "reloss-release · depth=56 · profile paper"},
    {"task": "cifar100-acc", "setting": "ResNet-56", "loss": "ce", "value": "73.61 ± 0.11 %",
     "source": f"{RELOSS}, slides: image classification",
     "compare_with": "ce · depth=56 · profile paper"},
    {"task": "cifar100-acc", "setting": "ResNet-56", "loss": "reloss", "value": "74.15 ± 0.14 %",
     "source": f"{RELOSS}, slides: image classification",
     "compare_with": "reloss-release · depth=56 · profile paper"},
]

QUOTED_PROBES: list[dict[str, str]] = [
    {"task": "(NMT, BLEU)", "setting": "sample-level loss vs BLEU", "loss": "ce", "value": "Spearman -0.58",
     "source": f"{RELOSS}, slides"},
    {"task": "(NMT, BLEU)", "setting": "sample-level loss vs BLEU", "loss": "reloss", "value": "Spearman -0.90",
     "source": f"{RELOSS}, slides"},
]


def compare_with(method: str) -> list[dict[str, str]]:
    """The quoted metric rows that may sit beside ``method`` (their protocol's variant is that method)."""
    return [r for r in QUOTED_METRICS if r.get("compare_with", "").split(" · ")[0] == method]


QUOTED_DEFINITION: dict[str, tuple[str, str]] = {
    "mnist-ap": ("voc_ap", "the UniLoss release scores MNIST with interpolated (VOC) AP, not scikit-learn's "
                           "exact AP: compare the quoted values with the VOC AP column"),
}
"""task -> (the ``test_metrics_extra`` key computed as the quoted numbers were, why): the column a quoted row
sits in. Tasks not listed are quoted in the test metric's own definition."""

EXTRA_METRIC_NAMES: dict[str, str] = {"voc_ap": "VOC AP (interpolated, UniLoss release)"}
"""Column titles of the secondary test metrics (``test_metrics_extra``) by key."""


def quoted_for(task: str) -> list[dict[str, str]]:
    """The quoted metric rows of ``task``."""
    return [r for r in QUOTED_METRICS if r["task"] == task]
