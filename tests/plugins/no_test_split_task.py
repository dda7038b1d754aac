"""Test-only task: tiny-fast's data whose test split raises on any access (proves `tune` never reads it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surrogate_bench.plugins.contracts import Split, TaskData
from surrogate_bench.plugins.registry import registry

TinyFast = registry().get_class("task", "tiny-fast")


class TestSplitRead(AssertionError):
    """Raised when anything touches the test split."""


class GuardedData(TaskData):
    """TaskData whose ``test`` attribute raises when read."""

    @property  # type: ignore[override]
    def test(self) -> Split:
        raise TestSplitRead("the test split was read")

    @test.setter
    def test(self, value: Any) -> None:
        self._test = value


class NoTestSplit(TinyFast):
    """tiny-fast whose test split must never be read."""

    name = "no-test-split"

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        data = super().load(data_root, download=download)
        return GuardedData(data.train, data.val, data._test if isinstance(data, GuardedData) else data.test)

    def data_files(self, data_root: Path) -> list[Path]:
        return []
