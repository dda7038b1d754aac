"""A task's data loaded once per process, and the checks a loaded split must pass before training."""

from __future__ import annotations

import json
from pathlib import Path

from ..plugins.contracts import Split, Task, TaskData
from ..plugins.errors import DataCorrupt

_DATA_CACHE: dict[tuple, TaskData] = {}


def load_task_data(task: Task, data_root: Path, download: bool, fingerprint: str | None = None) -> TaskData:
    """Load a task's data once per process (keyed by task config, root and data fingerprint)."""
    key = (json.dumps(task.config(), sort_keys=True, default=str), str(data_root), fingerprint)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # keep at most one dataset in memory
        _DATA_CACHE[key] = task.load(data_root, download=download)
    return _DATA_CACHE[key]


def check_nonempty(task: Task, data: TaskData, with_test: bool = True) -> None:
    """A task whose loaded train (or test) split is empty fails in one line, not deep in the training loop."""
    for name in ("train", "test") if with_test else ("train",):
        if len(getattr(data, name)) == 0:
            raise DataCorrupt(f"task {task.name!r} loaded an empty {name} split; expected at least one sample "
                              f"(check its data files and size parameters)")


def without_test(data: TaskData) -> TaskData:
    """Train and validation only: the test split is not touched (tuning trials)."""
    return TaskData(data.train, data.val, Split(data.val.x[:0], data.val.y[:0]), data.extra)
