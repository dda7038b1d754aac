"""Where things live: the repository root, the data root and the results directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_INSTALLED_BUILTINS = Path(__file__).resolve().parent / "builtin"
DATA_ENV = "SURROGATE_BENCH_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/surrogate_bench/data")
RESULTS_ENV = "SURROGATE_BENCH_RESULTS"
DEFAULT_RESULTS_DIR = Path("~/.local/share/surrogate_bench/results")
PUBLISHED_RESULTS_DIR = REPO_ROOT / "results"  # the published set: written only when named with --results-dir


def data_root(cli_value: str | os.PathLike | None = None) -> Path:
    """``--data-root``, else ``$SURROGATE_BENCH_DATA``, else ``~/.cache/surrogate_bench/data``."""
    value = cli_value or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(value).expanduser()


def results_dir(cli_value: str | os.PathLike | None = None) -> Path:
    """``--results-dir``, else ``$SURROGATE_BENCH_RESULTS``, else ``~/.local/share/surrogate_bench/results``:
    a user's runs never land in (or reuse) the repository's published ``results/`` unless it is named."""
    if cli_value is not None and not str(cli_value).strip():
        from .plugins.errors import SuiteError

        raise SuiteError("bad --results-dir '': expected a folder")
    value = cli_value or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS_DIR
    return Path(value).expanduser()


def builtin_plugin_root() -> Path:
    """The folder holding the built-in ``tasks/`` and ``methods/``: ``surrogate_bench/builtin/`` in an
    installed wheel, else the repository root (source checkout or editable install)."""
    if (_INSTALLED_BUILTINS / "methods").is_dir():
        return _INSTALLED_BUILTINS
    return REPO_ROOT
