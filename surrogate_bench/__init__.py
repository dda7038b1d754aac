"""surrogate_bench: compare surrogate losses for non-differentiable metrics, honestly.

The public API for plugin authors and users is this module's names (``from surrogate_bench import Task,
Method, Profile, ...``): the contracts a task and a method implement, parameter domains, the registry
(``get_task``, ``get_method``, ``list_tasks``, ``list_methods``, ``load_plugin``), ``check_refactoring``,
the errors a plugin may raise, and ``results`` (records as a DataFrame). ``surrogate_bench.uniloss``
holds the refactoring building blocks. Names are imported on first use (torch included), so importing
this package does no I/O and ``python -m surrogate_bench`` handles a Ctrl-C during that import in one line.
Old module paths (before 0.2.0) still import, with a DeprecationWarning, until 0.3.0.
"""

from typing import Any

from . import _moved

__version__ = "0.2.1"

_PUBLIC: dict[str, str] = {  # name -> module it lives in
    **dict.fromkeys(("Task", "Method", "Profile", "Split", "TaskData", "PrepareContext", "Domain", "between",
                     "one_of", "ANY", "POSITIVE", "NON_NEGATIVE", "UNIT", "SEED", "LossFn"), "plugins.contracts"),
    **dict.fromkeys(("get_task", "get_method", "list_tasks", "list_methods", "load_plugin", "method_for"),
                    "plugins.registry"),
    **dict.fromkeys(("SuiteError", "DataUnavailable", "DataCorrupt", "NonFiniteLoss"), "plugins.errors"),
    **dict.fromkeys(("RefactoringCheck", "check_refactoring"), "uniloss.check"),
}
_SUBMODULES = ("results", "uniloss")

__all__ = ["__version__", *sorted(_PUBLIC), *_SUBMODULES]

_moved.install()


def __getattr__(name: str) -> Any:
    import importlib

    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
