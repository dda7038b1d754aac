"""surrogate_bench: compare surrogate losses for non-differentiable metrics, honestly.

Public API: ``list_tasks``, ``list_methods``, ``get_task``, ``get_method``, ``load_plugin``,
``check_refactoring`` (a task's refactoring against its exact metric); results as a DataFrame:
``surrogate_bench.results.load``. They (and torch) are imported on first use, so ``python -m
surrogate_bench`` handles a Ctrl-C during that import in one line; plugins are found lazily on first
use; importing this package does no I/O.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "RefactoringCheck", "check_refactoring", "get_method", "get_task", "list_methods",
           "list_tasks", "load_plugin"]


def __getattr__(name: str) -> Any:
    if name in ("RefactoringCheck", "check_refactoring"):
        from .uniloss import check

        return getattr(check, name)
    if name in __all__:
        from .plugins import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
