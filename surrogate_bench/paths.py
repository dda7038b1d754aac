"""Where things live: the repository root, the data root and the results directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "SURROGATE_BENCH_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/surrogate_bench/data")
DEFAULT_RESULTS_DIR = Path("results")


def data_root(cli_value: str | os.PathLike | None = None) -> Path:
    """``--data-root``, else ``$SURROGATE_BENCH_DATA``, else ``~/.cache/surrogate_bench/data``."""
    value = cli_value or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(value).expanduser()
