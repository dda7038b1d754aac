"""Test-only task: tiny-fast's data, gated on a declared data file ``<data-root>/file-fast.bin`` (fingerprinted
like a real data set), so tests can remove, damage or cache-corrupt its data without a download."""

from __future__ import annotations

from pathlib import Path

from surrogate_bench.plugins.contracts import Profile, TaskData
from surrogate_bench.plugins.errors import DataUnavailable
from surrogate_bench.plugins.registry import registry

TinyAP = registry().get_class("task", "tiny-ap")
DATA_FILE = "file-fast.bin"


class FileFast(TinyAP):
    """tiny-ap's generated data and model, one epoch on 256 samples, read only when its data file exists."""

    name = "file-fast"
    data_hint = f"put any file named {DATA_FILE} under <data-root>"
    profiles = {name: Profile(epochs=1, batch_size=64, lr=0.05, momentum=0.9, train_size=256, val_size=128,
                              test_size=128) for name in ("smoke", "quick", "paper")}

    def data_files(self, data_root: Path) -> list[Path]:
        return [Path(data_root) / DATA_FILE]

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        if not (Path(data_root) / DATA_FILE).is_file():
            raise DataUnavailable(f"{self.name}: {Path(data_root) / DATA_FILE} not found")
        return super().load(data_root, download=download)
