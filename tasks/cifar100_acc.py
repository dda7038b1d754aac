"""CIFAR-100 top-1 accuracy (fine labels) with a CIFAR ResNet."""

from __future__ import annotations

from surrogate_bench.taskkit.cifar_task import CifarAccuracyTask
from surrogate_bench.datasets.cifar import CIFAR100, hint


class Cifar100Accuracy(CifarAccuracyTask):
    """100-class CIFAR-100 (fine labels), 45k/5k train/val split of the training set, 10k test images."""

    name = "cifar100-acc"
    dataset = "cifar100"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    data_hint = hint(CIFAR100, "<data-root>")
    # as the paper's CIFAR-100 run: UniLoss trains on the target plus its top-20 rival classes per step
    method_defaults = {"uniloss": {**CifarAccuracyTask.method_defaults["uniloss"], "top_k": 20},
                       "ce": dict(CifarAccuracyTask.method_defaults["ce"])}
    method_defaults_source = {"uniloss": "gain and temperature from cifar10-acc's validation tune ("
                                         + CifarAccuracyTask.method_defaults_source["uniloss"] + "); top_k=20 as the paper",
                              "ce": "from cifar10-acc's validation tune (" + CifarAccuracyTask.method_defaults_source["ce"] + ")"}
