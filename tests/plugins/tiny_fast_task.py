"""Test-only task: tiny-ap cut to one short epoch (a run in about a second), for provenance and tune tests."""

from __future__ import annotations

from surrogate_bench.plugins.contracts import Profile
from surrogate_bench.plugins.registry import registry

TinyAP = registry().get_class("task", "tiny-ap")


class TinyFast(TinyAP):
    """tiny-ap's data and model; one epoch on 256 samples."""

    name = "tiny-fast"
    profiles = {name: Profile(epochs=1, batch_size=64, lr=0.05, momentum=0.9, train_size=256, val_size=128,
                              test_size=128) for name in ("smoke", "quick", "paper")}
