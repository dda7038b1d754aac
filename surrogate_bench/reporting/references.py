"""Published numbers quoted from the papers, shown as reference rows and never mixed with measured ones.

Each row: the task it speaks to, the setting the paper used, the loss and the value as printed,
and where it is printed. Values are quoted verbatim; the suite never computes them.
"""

from __future__ import annotations

UNILOSS = "UniLoss (Liu, Wang, Deng, ECCV 2020)"
RELOSS = "ReLoss (Huang et al., ICLR 2022)"

QUOTED_METRICS: list[dict[str, str]] = [
    {"task": "mnist-ap", "setting": "MLP 784-500-300, batch 16, 30 epochs", "loss": "ce", "value": "0.9989 AP",
     "source": f"{UNILOSS}, Sec. 4.2.3"},
    {"task": "mnist-ap", "setting": "MLP 784-500-300, batch 16, 30 epochs", "loss": "uniloss", "value": "0.9988 AP",
     "source": f"{UNILOSS}, Sec. 4.2.3"},
    {"task": "cifar10-acc", "setting": "ResNet-20, 200 epochs", "loss": "ce", "value": "91.49 %",
     "source": f"{UNILOSS}, Table 2"},
    {"task": "cifar10-acc", "setting": "ResNet-20, 200 epochs", "loss": "uniloss", "value": "91.64 %",
     "source": f"{UNILOSS}, Table 2"},
    {"task": "cifar100-acc", "setting": "ResNet-20, 200 epochs", "loss": "ce", "value": "65.90 %",
     "source": f"{UNILOSS}, Table 2"},
    {"task": "cifar100-acc", "setting": "ResNet-20, UniLoss 5x longer, 20% of binaries", "loss": "uniloss",
     "value": "65.92 %", "source": f"{UNILOSS}, Table 2"},
    {"task": "mpii-pckh", "setting": "1-stack hourglass, head joint, 50 epochs", "loss": "mse-heatmap",
     "value": "91.31 (σ=0.1) … 95.74 (σ=3) PCKh", "source": f"{UNILOSS}, Table 1"},
    {"task": "mpii-pckh", "setting": "1-stack hourglass, head joint, 50 epochs", "loss": "mse-heatmap",
     "value": "95.71 PCKh (σ=1)", "source": f"{UNILOSS}, Table 1"},
    {"task": "mpii-pckh", "setting": "1-stack hourglass, head joint, 50 epochs", "loss": "uniloss",
     "value": "95.77 PCKh", "source": f"{UNILOSS}, Table 1"},
    {"task": "cifar10-acc", "setting": "ResNet-56", "loss": "ce", "value": "94.32 ± 0.25 %",
     "source": f"{RELOSS}, slides: image classification"},
    {"task": "cifar10-acc", "setting": "ResNet-56", "loss": "reloss", "value": "94.57 ± 0.08 %",
     "source": f"{RELOSS}, slides: image classification"},
    {"task": "cifar100-acc", "setting": "ResNet-56", "loss": "ce", "value": "73.61 ± 0.11 %",
     "source": f"{RELOSS}, slides: image classification"},
    {"task": "cifar100-acc", "setting": "ResNet-56", "loss": "reloss", "value": "74.15 ± 0.14 %",
     "source": f"{RELOSS}, slides: image classification"},
]

QUOTED_PROBES: list[dict[str, str]] = [
    {"task": "(NMT, BLEU)", "setting": "sample-level loss vs BLEU", "loss": "ce", "value": "Spearman -0.58",
     "source": f"{RELOSS}, slides"},
    {"task": "(NMT, BLEU)", "setting": "sample-level loss vs BLEU", "loss": "reloss", "value": "Spearman -0.90",
     "source": f"{RELOSS}, slides"},
]
