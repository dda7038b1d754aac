"""Test-only task: a tiny synthetic AP problem (no files) with several short epochs; ``step_delay_ms`` slows steps."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import Profile, Split, TaskData
from surrogate_bench.plugins.registry import registry

MnistAP = registry().get_class("task", "mnist-ap")


class TinyAP(MnistAP):
    """mnist-ap's model, decoder and metric on 28x28 uint8 noise whose label is 'left half brighter'."""

    name = "tiny-ap"
    params = {"step_delay_ms": 0}
    data_hint = "no files: the data is generated from a fixed seed"
    profiles = {name: Profile(epochs=6, batch_size=64, lr=0.05, momentum=0.9, milestones=(4,))
                for name in ("smoke", "quick", "paper")}

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        gen = torch.Generator().manual_seed(1234)
        x = torch.randint(0, 256, (1024 + 256 + 512, 28, 28), dtype=torch.uint8, generator=gen)
        y = (x[:, :, :14].float().mean((1, 2)) > x[:, :, 14:].float().mean((1, 2)) + 1.0).long()
        return TaskData(Split(x[:1024], y[:1024]), Split(x[1024:1280], y[1024:1280]), Split(x[1280:], y[1280:]))

    def inputs(self, x: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        if train and self.p["step_delay_ms"]:
            time.sleep(self.p["step_delay_ms"] / 1000.0)
        return super().inputs(x, train=train, generator=generator)
