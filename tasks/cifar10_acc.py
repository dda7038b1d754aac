"""CIFAR-10 top-1 accuracy with a CIFAR ResNet (He et al. 2016; ReLoss protocol: ResNet-56)."""

from __future__ import annotations

from surrogate_bench.taskkit.cifar_task import CifarAccuracyTask
from surrogate_bench.datasets.cifar import CIFAR10, hint


class Cifar10Accuracy(CifarAccuracyTask):
    """10-class CIFAR-10, 45k/5k train/val split of the training set, 10k test images."""

    name = "cifar10-acc"
    dataset = "cifar10"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    data_hint = hint(CIFAR10, "<data-root>")
