"""Import a plugin file next to the calling one (a variant method subclassing a built-in), by path.

Plugins are found by path, not as an importable package (``methods/`` is no package in a wheel), so a
variant imports its base under the registry's module name for that file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def sibling_plugin(caller_file: str, stem: str) -> ModuleType:
    """The module of ``<folder of caller_file>/<stem>.py``, loaded once under the registry's module name."""
    path = Path(caller_file).resolve().with_name(f"{stem}.py")
    mod_name = f"surrogate_bench_plugins.{path.parent.name}.{path.stem}"
    module = sys.modules.get(mod_name)
    if module is not None and Path(getattr(module, "__file__", "")).resolve() == path:
        return module
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module
