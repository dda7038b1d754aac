"""Where things live: the repository root, the data root and the results directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_INSTALLED_BUILTINS = Path(__file__).resolve().parent / "builtin"
DATA_ENV = "SURROGATE_BENCH_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/surrogate_bench/data")
DEFAULT_RESULTS_DIR = Path("results")


def data_root(cli_value: str | os.PathLike | None = None) -> Path:
    """``--data-root``, else ``$SURROGATE_BENCH_DATA``, else ``~/.cache/surrogate_bench/data``."""
    value = cli_value or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(value).expanduser()


def builtin_plugin_root() -> Path:
    """The folder holding the built-in ``tasks/`` and ``methods/``: ``surrogate_bench/builtin/`` in an
    installed wheel, else the repository root (source checkout or editable install)."""
    if (_INSTALLED_BUILTINS / "methods").is_dir():
        return _INSTALLED_BUILTINS
    return REPO_ROOT
