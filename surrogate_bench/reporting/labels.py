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


def one_line(reason: object) -> str:
    """A record's whole reason on one line (a table cell holds no newline; ``|`` would end the cell)."""
    if reason is None or (isinstance(reason, float) and reason != reason):
        return ""
    return " ".join(part.strip() for part in str(reason).splitlines() if part.strip()).replace("|", "\\|")


def empty_cell(mdf: pd.DataFrame) -> str:
    """Why a cell has no number, with the record's reason: ``failed: …``, ``skipped (data): …``, or ``n/a``
    (the method does not support the task; such pairs are left out of tables)."""
    if mdf.empty:
        return ""
    skip = mdf["skip"] if "skip" in mdf else pd.Series([None] * len(mdf), index=mdf.index)
    reasons = mdf["reason"] if "reason" in mdf else pd.Series([None] * len(mdf), index=mdf.index)

    def why(mask: pd.Series) -> str:
        texts = sorted({one_line(r) for r in reasons[mask]} - {""})
        return ": " + "; ".join(texts) if texts else ""

    failed = mdf["status"] == "failed"
    if failed.any():
        return "failed" + why(failed)
    if (skip == "data").any():
        return "skipped (data)" + why(skip == "data")
    if (skip == "unsupported").any():
        return "n/a"
    skipped = mdf["status"] == "skipped"
    if skipped.any():
        return "skipped" + why(skipped)
    return ", ".join(sorted(mdf["status"].unique()))
