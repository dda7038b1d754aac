"""A malformed probe pool is rebuilt, never trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.plugins.registry import get_task

pytestmark = pytest.mark.usefixtures("one_thread")


PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

TINY = str(PLUGINS / "tiny_ap_task.py")

@pytest.mark.parametrize("content", ["no outputs", "not a dict", "other settings"])
def test_malformed_probe_pool_is_rebuilt(content, tmp_path) -> None:
    from surrogate_bench.probes.pool import load_or_build_pool, pool_path

    load_plugins([TINY])
    task = get_task("tiny-ap")
    data = task.load(tmp_path).limit(task.profile("smoke"))
    results, logs = tmp_path / "results", []
    path = pool_path(results, task, "smoke")
    path.parent.mkdir(parents=True)
    good = {"outputs": torch.zeros(2, 3, 2), "targets": torch.zeros(2, 3), "metric": torch.zeros(2)}
    torch.save({"no outputs": {"targets": torch.zeros(2, 3), "metric": torch.zeros(2)}, "not a dict": [1],
                "other settings": {**good, "settings": "{}"}}[content], path)
    pool = load_or_build_pool(task, data, "smoke", torch.device("cpu"), results, logs.append)
    assert any("unusable" in m and "rebuilding" in m for m in logs), logs
    assert len(pool) > 0 and pool.outputs.shape[0] == len(pool)
    logs.clear()
    assert len(load_or_build_pool(task, data, "smoke", torch.device("cpu"), results, logs.append)) == len(pool)
    assert not any("rebuilding" in m for m in logs), "the rebuilt pool is reused"
