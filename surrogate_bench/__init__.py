"""surrogate_bench: compare surrogate losses for non-differentiable metrics, honestly.

Public API: ``list_tasks``, ``list_methods``, ``get_task``, ``get_method``, ``load_plugin``,
``check_refactoring`` (a task's refactoring against its exact metric); results as a DataFrame:
``surrogate_bench.results.load``. Plugins are found lazily on first use; importing does no I/O.
"""

__version__ = "0.1.0"

from .plugins.registry import get_method, get_task, list_methods, list_tasks, load_plugin  # noqa: E402
from .uniloss.check import RefactoringCheck, check_refactoring  # noqa: E402

__all__ = ["__version__", "RefactoringCheck", "check_refactoring", "get_method", "get_task", "list_methods",
           "list_tasks", "load_plugin"]
