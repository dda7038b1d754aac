"""surrogate_bench: compare surrogate losses for non-differentiable metrics, honestly.

Public API: ``list_tasks``, ``list_methods``, ``get_task``, ``get_method``. Plugins are found
lazily on first use; importing this package does no I/O.
"""

__version__ = "0.1.0"

from .plugins.registry import get_method, get_task, list_methods, list_tasks, load_plugin  # noqa: E402

__all__ = ["__version__", "get_method", "get_task", "list_methods", "list_tasks", "load_plugin"]
