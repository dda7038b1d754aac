"""What ``python -m surrogate_bench list`` prints: every plugin with its parameters and defaults, each
task's profiles and tuned settings, the tasks each method supports, and the plugins that failed to load."""

from __future__ import annotations

from typing import Any, Iterator

from .contracts import Method, Task
from .errors import SuiteError
from .registry import Registry

PLUMBING_PROFILES = ("smoke",)  # seconds-long runs that test the plumbing; never a comparison of losses


def _first_line(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "none"


def profile_label(name: str) -> str:
    return f"{name} (plumbing only)" if name in PLUMBING_PROFILES else name


def lines(reg: Registry) -> Iterator[str]:
    """The listing, one line at a time (so a closed pipe stops it early)."""
    tasks: dict[str, Task | None] = {}
    for name in reg.names("task"):
        try:
            tasks[name] = reg.create("task", name)
        except SuiteError:  # a task whose defaults do not validate is listed without its supported methods
            tasks[name] = None
    yield "tasks:"
    for name in reg.names("task"):
        cls = reg.get_class("task", name)
        yield f"  {name:18s} {_first_line(cls)}"
        yield f"      metric:   {cls.metric_name} ({'higher' if cls.higher_is_better else 'lower'} is better), " \
              f"outputs {cls.output_kind}"
        yield f"      params:   {_params(cls.params)}"
        yield f"      profiles: {', '.join(profile_label(p) for p in cls.profiles) or 'none'}"
        for method, tuned in sorted(cls.method_defaults.items()):
            yield f"      tuned:    {method} {_params(dict(tuned))}"
    yield "methods:"
    for name in reg.names("method"):
        cls = reg.get_class("method", name)
        yield f"  {name:18s} {_first_line(cls)}"
        yield f"      params:   {_params(cls.params)}"
        yield f"      supports: {', '.join(_supported(cls, tasks)) or 'no installed task'}"
    if reg.broken:
        yield "broken plugins:"
        for src, err in sorted(reg.broken.items()):
            yield f"  {src}: {err}"


def _supported(cls: type[Method], tasks: dict[str, Task | None]) -> list[str]:
    try:
        method = cls()
    except SuiteError:
        return []
    out = []
    for name, task in tasks.items():
        try:
            if task is not None and method.supports(task) is None:
                out.append(name)
        except Exception:  # a plugin's supports() that raises: not listed as supported
            continue
    return out
