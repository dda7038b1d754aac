"""Old module paths kept for one minor version: importing one warns and yields the module it moved to.

One table (:data:`MOVED`) instead of a shim file per old path; :func:`install` (called on package import,
no I/O) puts a finder on ``sys.meta_path`` that answers only for these names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

SINCE, UNTIL = "0.2.0", "0.3.0"
MOVED: dict[str, str] = {  # old module -> its module since 0.2.0
    "surrogate_bench.contracts": "surrogate_bench.plugins.contracts",
    "surrogate_bench.registry": "surrogate_bench.plugins.registry",
    "surrogate_bench.errors": "surrogate_bench.plugins.errors",
    "surrogate_bench.metrics": "surrogate_bench.taskkit.metrics",
    "surrogate_bench.augment": "surrogate_bench.taskkit.augment",
    "surrogate_bench.heatmaps": "surrogate_bench.taskkit.heatmaps",
    "surrogate_bench.cifar_task": "surrogate_bench.taskkit.cifar_task",
    "surrogate_bench.pose_task": "surrogate_bench.taskkit.pose_task",
    "surrogate_bench.running.launch": "surrogate_bench.launch.executors",
    "surrogate_bench.running.grid": "surrogate_bench.launch.grid",
    "surrogate_bench.running.tune": "surrogate_bench.launch.tune",
    "surrogate_bench.running.signals": "surrogate_bench.launch.signals",
    "surrogate_bench.running.store": "surrogate_bench.store.records",
    "surrogate_bench.running.provenance": "surrogate_bench.store.provenance",
    "surrogate_bench.running.bench": "surrogate_bench.bench.steps",
    "surrogate_bench.running.bench_jobs": "surrogate_bench.bench.jobs",
    "surrogate_bench.running.cuda_graphs": "surrogate_bench.losses.graphed",
    "surrogate_bench.taskkit.ap_surrogates": "surrogate_bench.losses.ap_surrogates",
    "surrogate_bench.taskkit.bootstrap": "surrogate_bench.stats.bootstrap",
    "surrogate_bench.reporting.stats": "surrogate_bench.stats.seeds",
    "surrogate_bench.reporting.probe_section": "surrogate_bench.probe_report.section",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of :data:`MOVED`; loading one warns once per import and returns the new module."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new} in surrogate_bench {SINCE}; the old path goes in {UNTIL}",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the new one, already imported."""


def install() -> None:
    """Register the finder once."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
