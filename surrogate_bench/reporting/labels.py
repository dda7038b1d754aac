"""How a method is named in a table (its name plus non-default parameters) and why a cell is empty."""

from __future__ import annotations

import pandas as pd

from .. import results


def method_defaults(task: str, method: str) -> dict:
    """The parameters ``method`` runs with on ``task`` by default: its own, then the task's tuned ones."""
    from ..plugins.errors import SuiteError
    from ..plugins.registry import registry

    try:
        defaults = dict(registry().get_class("method", method).params)
    except SuiteError:
        return {}
    try:
        defaults.update(registry().get_class("task", task).method_defaults.get(method, {}))
    except SuiteError:
        pass
    return defaults


def method_label(method: str, params: dict | None, task: str = "") -> str:
    """The method's name, plus its parameters that differ from its defaults on ``task`` (the task's tuned
    settings included), so two settings never share a column."""
    defaults = method_defaults(task, method)
    diff = {k: v for k, v in sorted((params or {}).items()) if defaults.get(k, object()) != v}
    return method + ("[" + ",".join(f"{k}={_value(v, defaults.get(k))}" for k, v in diff.items()) + "]" if diff else "")


def _value(v: object, default: object) -> str:
    """A value of an integer parameter as an integer (512, not the 512.0 the command line's float parse gives)."""
    integral = isinstance(default, int) and not isinstance(default, bool)
    return str(int(v)) if integral and isinstance(v, float) and v.is_integer() else str(v)


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Runs with each method column replaced by its label (its name plus any non-default parameters)."""
    if df.empty:
        return df
    df = df.copy()
    df["method"] = [method_label(m, p, t) for m, p, t in zip(df["method"], results.nested(df, "method_params"),
                                                              df["task"])]
    return df


def empty_cell(mdf: pd.DataFrame) -> str:
    """Why a cell has no number: no data here, not applicable, or failed."""
    if mdf.empty:
        return ""
    skip = mdf["skip"] if "skip" in mdf else pd.Series([None] * len(mdf), index=mdf.index)
    if (mdf["status"] == "failed").any():
        return "failed"
    if (skip == "data").any():
        return "no data here"
    if (skip == "unsupported").any():
        return "n/a"
    return ", ".join(sorted(mdf["status"].unique()))
