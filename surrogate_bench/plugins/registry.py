"""Find tasks and methods by name: files in ``tasks/`` and ``methods/``, entry points, ad-hoc files.

Discovery is lazy (first lookup), never at import time. A plugin that fails to import is
kept as *broken* with its error instead of breaking the others; a name defined twice is an
error that names both sources.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .contracts import Configurable, Method, Task
from .errors import SuiteError
from ..paths import builtin_plugin_root

KINDS: dict[str, type[Configurable]] = {"task": Task, "method": Method}
DIRS = {"task": "tasks", "method": "methods"}
ENTRY_POINT_GROUPS = {"task": "surrogate_bench.tasks", "method": "surrogate_bench.methods"}


@dataclass
class Registry:
    """Name -> plugin class for tasks and methods, plus the sources that failed to load."""

    search_root: Path | None = field(default_factory=builtin_plugin_root)
    use_entry_points: bool = True
    classes: dict[str, dict[str, type[Configurable]]] = field(default_factory=lambda: {"task": {}, "method": {}})
    broken: dict[str, str] = field(default_factory=dict)  # source -> error line
    _loaded: bool = False

    # -- discovery -------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.search_root is not None:
            for kind, sub in DIRS.items():
                folder = self.search_root / sub
                for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
                    if not path.name.startswith("_"):
                        self.load_file(path)
        if self.use_entry_points:
            for kind, group in ENTRY_POINT_GROUPS.items():
                for ep in importlib.metadata.entry_points(group=group):
                    source = f"entry point {ep.name} = {ep.value}"
                    try:
                        obj = ep.load()
                    except Exception as exc:  # a broken plugin must not break the others
                        self.broken[source] = _one_line(exc)
                        continue
                    self._add_from(obj, source)

    def load_file(self, path: str | Path) -> list[type[Configurable]]:
        """Import one plugin file and register every Task / Method subclass it defines."""
        path = Path(path).resolve()
        if not path.is_file():
            raise SuiteError(f"plugin file not found: {path}")
        if path.suffix != ".py":
            raise SuiteError(f"plugin file {path} is not a Python file (.py)")
        mod_name = f"surrogate_bench_plugins.{path.parent.name}.{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a plugin that exits on import is broken, not the suite's exit
            sys.modules.pop(mod_name, None)
            self.broken[str(path)] = _one_line(exc)
            return []
        return self._add_from(module, str(path))

    def _add_from(self, obj: Any, source: str) -> list[type[Configurable]]:
        if isinstance(obj, ModuleType):
            found = [c for _, c in inspect.getmembers(obj, inspect.isclass) if c.__module__ == obj.__name__]
        else:
            found = [obj]
        added = []
        for cls in found:
            for kind, base in KINDS.items():
                if isinstance(cls, type) and issubclass(cls, base) and cls is not base and cls.name:
                    self._register(kind, cls, source)
                    added.append(cls)
        return added

    def _register(self, kind: str, cls: type[Configurable], source: str) -> None:
        table = self.classes[kind]
        prev = table.get(cls.name)
        if prev is not None and prev is not cls:
            raise SuiteError(f"duplicate {kind} name {cls.name!r}: defined in {prev.source} and in {source}")
        cls.source = source
        table[cls.name] = cls

    # -- lookup ----------------------------------------------------------------------
    def names(self, kind: str, pattern: str = "*") -> list[str]:
        self.ensure_loaded()
        return sorted(n for n in self.classes[kind] if fnmatch.fnmatch(n, pattern))

    def get_class(self, kind: str, name: str) -> type[Configurable]:
        self.ensure_loaded()
        try:
            return self.classes[kind][name]
        except KeyError:
            from .suggest import did_you_mean

            known = ", ".join(self.names(kind)) or "none"
            raise SuiteError(f"unknown {kind} {name!r}{did_you_mean(name, self.names(kind))} (known: {known})") from None

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """An instance; a plugin whose constructor fails other than with a SuiteError is one SuiteError line."""
        cls = self.get_class(kind, name)
        try:
            return cls(**params)
        except SuiteError:
            raise
        except Exception as exc:
            raise SuiteError(f"{kind} {name!r} ({cls.source}) could not be built: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry (built on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def load_plugin(path: str | Path) -> list[str]:
    """Load one plugin file ad hoc (``--plugin FILE.py``); returns the names it defined."""
    reg = registry()
    reg.ensure_loaded()
    before = set(reg.broken)
    classes = reg.load_file(path)
    new_broken = set(reg.broken) - before
    if new_broken:
        src = new_broken.pop()
        raise SuiteError(f"plugin {src} failed to import: {reg.broken[src]}")
    if not classes:
        raise SuiteError(f"plugin file {path} defines no Task or Method subclass with a name")
    return [c.name for c in classes]


def list_tasks(pattern: str = "*") -> list[str]:
    return registry().names("task", pattern)


def list_methods(pattern: str = "*") -> list[str]:
    return registry().names("method", pattern)


def get_task(name: str, **params: Any) -> Task:
    return registry().create("task", name, **params)


def get_method(name: str, **params: Any) -> Method:
    return registry().create("method", name, **params)


def method_for(task: Task, name: str, **params: Any) -> Method:
    """The method as run on ``task``: the task's tuned defaults for it (``Task.method_defaults``), then
    ``params`` on top. Explicit parameters always win; the run key sees the effective values."""
    method = get_method(name, **{**task.method_defaults.get(name, {}), **params})
    try:
        supported = method.supports(task) is None
    except Exception:  # a plugin bug: the run's own guard records it as a failed run
        supported = False
    if supported:
        method.check_task(task)
    return method
