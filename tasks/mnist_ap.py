"""MNIST zero-vs-rest average precision (UniLoss, ECCV 2020): MLP 784-500-300, 54k/6k split."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from surrogate_bench.plugins.contracts import Profile, Split, Task, TaskData, between, one_of
from surrogate_bench.datasets.mnist import HINT, load_mnist, mnist_files
from surrogate_bench.taskkit.metrics import average_precision, interpolated_average_precision
from surrogate_bench.uniloss import AveragePrecisionRefactoring

MEAN, STD = 0.1307, 0.3081


class MnistAP(Task):
    """Digit 0 is the positive class (about 1:9); the metric is AP of the positive-class score."""

    name = "mnist-ap"
    metric_name = "AP"
    equivalence_margin = 0.001  # the UniLoss paper's CE-vs-UniLoss gap is 0.0001
    output_kind = "logits"
    num_classes = 2
    params = {"positive_digit": 0, "val_size": 6000}
    param_domains = {"positive_digit": one_of(*range(10)), "val_size": between(0, 59_999)}
    data_hint = HINT.format(root="<data-root>")
    profiles = {
        "smoke": Profile(epochs=1, batch_size=64, lr=0.05, momentum=0.9,
                         train_size=2048, val_size=512, test_size=1024),
        "quick": Profile(epochs=3, batch_size=32, lr=0.02, momentum=0.9),
        "paper": Profile(epochs=30, batch_size=16, lr=0.01, momentum=0.5),
    }

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        raw = load_mnist(data_root, download=download)
        y_train = (raw["train_labels"] == self.p["positive_digit"]).long()
        y_test = (raw["test_labels"] == self.p["positive_digit"]).long()
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))  # fixed split
        n_val = self.p["val_size"]
        val_idx, train_idx = order[:n_val], order[n_val:]
        return TaskData(
            train=Split(raw["train_images"][train_idx], y_train[train_idx]),
            val=Split(raw["train_images"][val_idx], y_train[val_idx]),
            test=Split(raw["test_images"], y_test),
        )

    def data_files(self, data_root: Path) -> list[Path]:
        return mnist_files(data_root)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 300), nn.ReLU(),
                             nn.Linear(300, 2))

    def inputs(self, x: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        return (x.float().div_(255.0).sub_(MEAN).div_(STD)).flatten(1)

    def decode(self, outputs: Tensor) -> Tensor:
        return outputs[..., 1] - outputs[..., 0]  # positive-class score (log-odds)

    def score(self, predictions: Tensor, targets: Tensor) -> float:
        return average_precision(predictions, targets)

    def extra_metrics(self, predictions: Tensor, targets: Tensor) -> dict[str, float]:
        """The UniLoss release's interpolated (VOC) AP, so its quoted 0.9988 / 0.9989 compare like with like."""
        return {"voc_ap": interpolated_average_precision(predictions, targets)}

    def refactoring(self) -> AveragePrecisionRefactoring:
        """UniLoss: one binary per (positive, negative) pair of the batch."""
        return AveragePrecisionRefactoring(decode=self.decode)
