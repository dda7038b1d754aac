"""scikit-learn's 8x8 digits, zero-vs-rest average precision: an offline ``mnist-ap`` in seconds (MLP 64-128-64)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from surrogate_bench.plugins.contracts import Profile, Split, Task, TaskData, between, one_of
from surrogate_bench.plugins.errors import DataUnavailable
from surrogate_bench.taskkit.metrics import average_precision, interpolated_average_precision
from surrogate_bench.uniloss import AveragePrecisionRefactoring

MEAN, STD = 0.3053, 0.3760  # of the 1,797 images' pixels / 16
N_IMAGES = 1797


def digits_file() -> Path:
    """The CSV scikit-learn ships and ``load_digits`` reads (``sklearn/datasets/data/digits.csv.gz``)."""
    try:
        import sklearn.datasets
    except ImportError as exc:  # a runtime dependency; say what to install rather than fail deep inside
        raise DataUnavailable(f"digits-ap needs scikit-learn (pip install scikit-learn): {exc}") from None
    return Path(sklearn.datasets.__file__).resolve().parent / "data" / "digits.csv.gz"


class DigitsAP(Task):
    """Digit 0 is the positive class (178 of 1,797, about 1:9); the metric is AP of the positive-class score.

    The data ship with scikit-learn (no download, no data root): a fixed seeded split of the 1,797 images into
    1,000 train / 200 validation / 597 test. Its file is declared in ``data_files``, so the data fingerprint is
    the digest of the file actually read (a scikit-learn release that changed it would re-key every run).
    """

    name = "digits-ap"
    metric_name = "AP"
    # The test set has ~60 positives: one positive swapping rank with one negative near the top moves AP by
    # ~0.001-0.005, and seed-to-seed SD of a quick run is ~0.002. delta = 0.005 (half a point of AP) is the
    # smallest difference this test set resolves; mnist-ap's 0.001 would need far more seeds here.
    equivalence_margin = 0.005
    output_kind = "logits"
    num_classes = 2
    params = {"positive_digit": 0, "val_size": 200, "test_size": 597}
    param_domains = {"positive_digit": one_of(*range(10)), "val_size": between(0, 900),
                     "test_size": between(1, 797)}
    data_hint = "ships with scikit-learn (sklearn/datasets/data/digits.csv.gz): pip install scikit-learn"
    profiles = {
        "smoke": Profile(epochs=1, batch_size=64, lr=0.05, momentum=0.9, train_size=256, val_size=100, test_size=200),
        # 20 epochs of ~1,000 images at batch 32 (620 steps): CE ~2 s, UniLoss ~10 s on one CPU core
        "quick": Profile(epochs=20, batch_size=32, lr=0.02, momentum=0.9),
    }

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        path = digits_file()
        if not path.is_file():
            raise DataUnavailable(f"digits-ap: {path} not found (a broken scikit-learn install?); {self.data_hint}")
        from sklearn.datasets import load_digits

        x, labels = load_digits(return_X_y=True)
        x = torch.from_numpy(x).to(torch.uint8).view(-1, 8, 8)  # values 0..16
        y = (torch.from_numpy(labels) == self.p["positive_digit"]).long()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # fixed split
        n_test, n_val = int(self.p["test_size"]), int(self.p["val_size"])
        test_idx, val_idx, train_idx = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
        return TaskData(train=Split(x[train_idx], y[train_idx]), val=Split(x[val_idx], y[val_idx]),
                        test=Split(x[test_idx], y[test_idx]))

    def data_files(self, data_root: Path) -> list[Path]:
        """The one file ``load`` reads, wherever scikit-learn is installed (not under the data root)."""
        path = digits_file()
        if not path.is_file():
            raise DataUnavailable(f"digits-ap: {path} not found; {self.data_hint}")
        return [path]

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                             nn.Linear(64, 2))

    def inputs(self, x: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        return (x.float().div_(16.0).sub_(MEAN).div_(STD)).flatten(1)

    def decode(self, outputs: Tensor) -> Tensor:
        return outputs[..., 1] - outputs[..., 0]  # positive-class score (log-odds)

    def score(self, predictions: Tensor, targets: Tensor) -> float:
        return average_precision(predictions, targets)

    def extra_metrics(self, predictions: Tensor, targets: Tensor) -> dict[str, float]:
        """The interpolated (VOC) AP beside the exact one, as on ``mnist-ap``."""
        return {"voc_ap": interpolated_average_precision(predictions, targets)}

    def refactoring(self) -> AveragePrecisionRefactoring:
        """UniLoss: one binary per (positive, negative) pair of the batch (as ``mnist-ap``)."""
        return AveragePrecisionRefactoring(decode=self.decode)
