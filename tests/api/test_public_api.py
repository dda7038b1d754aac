"""The public API does not move: every name docs/plugins.md documents imports from the top level, every 0.1
module path still imports with a DeprecationWarning naming its new place, and outside plugins written either
way train a smoke run."""

from __future__ import annotations

import builtins
import importlib
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import surrogate_bench
from surrogate_bench import _moved
from surrogate_bench.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "plugins.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def documented_names() -> list[str]:
    """The backticked identifiers of the page's "The public API" section (dotted paths and calls left out)."""
    text = DOC.read_text()
    section = text.split("## The public API", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", section)
    return sorted(set(names) - set(dir(builtins)))


def test_the_page_documents_the_api() -> None:
    names = documented_names()
    assert {"Task", "Method", "Profile", "Split", "TaskData", "between", "one_of", "get_task", "get_method",
            "check_refactoring", "results", "__version__"} <= set(names), names


@pytest.mark.parametrize("name", documented_names())
def test_every_documented_name_imports_from_the_top_level(name: str) -> None:
    if name in {"Refactoring", "Comparisons", "AveragePrecisionRefactoring"}:  # documented as surrogate_bench.uniloss's
        assert hasattr(importlib.import_module("surrogate_bench.uniloss"), name)
        return
    namespace: dict = {}
    exec(f"from surrogate_bench import {name}", namespace)  # the statement a plugin writes
    assert namespace[name] is getattr(surrogate_bench, name)
    assert name in surrogate_bench.__all__


def test_all_names_resolve_and_version_is_0_2() -> None:
    for name in surrogate_bench.__all__:
        assert getattr(surrogate_bench, name) is not None, name
    assert surrogate_bench.__version__ == "0.2.1"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_every_old_path_imports_with_a_warning_naming_the_new_one(old: str) -> None:
    new = _moved.MOVED[old]
    sys.modules.pop(old, None)  # another test may have imported it already (the warning is per import)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any(new in m and old in m for m in messages), messages
    assert module is importlib.import_module(new)


def test_the_issue_s_old_imports_keep_working() -> None:
    """The names plugins of 0.1 imported, as they imported them."""
    for old in ("surrogate_bench.contracts", "surrogate_bench.registry", "surrogate_bench.metrics"):
        sys.modules.pop(old, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        namespace: dict = {}
        exec("from surrogate_bench.contracts import Task, Method, Profile, Split, TaskData\n"
             "from surrogate_bench.registry import get_task, registry\n"
             "from surrogate_bench.metrics import average_precision\n", namespace)
    assert namespace["Task"] is surrogate_bench.Task and namespace["get_task"] is surrogate_bench.get_task


def test_runner_names_moved_in_0_2_warn() -> None:
    from surrogate_bench.running import runner

    for name, where in runner._MOVED.items():
        if name in vars(runner):  # still imported there (the runner uses it): no alias needed
            continue
        with pytest.warns(DeprecationWarning, match=f"surrogate_bench.running.{where}"):
            assert getattr(runner, name) is not None


OLD_STYLE = '''
"""An outside plugin written against the 0.1 documentation."""
import torch
from surrogate_bench.contracts import Method, Profile, Split, Task, TaskData
from surrogate_bench.metrics import average_precision
from surrogate_bench.registry import registry
from torch import nn
from torch.nn import functional as F


class OldTask(Task):
    """Two Gaussian blobs in 8 dimensions, AP of class 1."""
    name = "old-style-task"
    metric_name = "AP"
    output_kind = "logits"
    num_classes = 2
    profiles = {"smoke": Profile(epochs=1, batch_size=32, lr=0.05)}

    def load(self, data_root, *, download=False):
        gen = torch.Generator().manual_seed(0)
        y = torch.randint(0, 2, (384,), generator=gen)
        x = torch.randn(384, 8, generator=gen) + y[:, None].float()
        return TaskData(Split(x[:256], y[:256]), Split(x[256:320], y[256:320]), Split(x[320:], y[320:]))

    def data_files(self, data_root):
        return []

    def build_model(self):
        return nn.Linear(8, 2)

    def decode(self, outputs):
        return outputs[..., 1] - outputs[..., 0]

    def score(self, predictions, targets):
        return average_precision(predictions, targets)


class OldLoss(Method):
    """CE, old style."""
    name = "old-style-ce"

    def make_loss(self, task):
        return lambda outputs, targets: F.cross_entropy(outputs, targets)
'''

NEW_STYLE = OLD_STYLE.replace("the 0.1 documentation", "the 0.2 top-level API").replace(
    "from surrogate_bench.contracts import Method, Profile, Split, Task, TaskData\n"
    "from surrogate_bench.metrics import average_precision\n"
    "from surrogate_bench.registry import registry\n",
    "from surrogate_bench import Method, Profile, Split, Task, TaskData\n"
    "from surrogate_bench.taskkit.metrics import average_precision\n").replace("old-style", "new-style")


@pytest.mark.parametrize("style", ["old", "new"])
def test_an_outside_plugin_trains_a_smoke_run(style: str, tmp_path: Path) -> None:
    plugin = tmp_path / f"{style}_plugin.py"
    plugin.write_text(textwrap.dedent(OLD_STYLE if style == "old" else NEW_STYLE))
    done = subprocess.run([sys.executable, "-m", "surrogate_bench", "--plugin", str(plugin), "run", "--task",
                           f"{style}-style-task", "--method", f"{style}-style-ce,ce", "--profile", "smoke",
                           "--device", "cpu", "--results-dir", str(tmp_path / "results"), "--data-root",
                           str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(" AP " in line for line in lines), done.stdout
    warned = "DeprecationWarning" in done.stderr
    if style == "old":
        assert warned and "surrogate_bench.contracts moved to surrogate_bench.plugins.contracts" in done.stderr
        assert "surrogate_bench.metrics moved to surrogate_bench.taskkit.metrics" in done.stderr
    else:
        assert not warned, done.stderr
