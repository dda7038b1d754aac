"""Shared fixtures: the real data root (skip when absent), a fresh results dir, CPU run options.

Every test gets its own default results directory ($SURROGATE_BENCH_RESULTS) and the session one digest
cache ($SURROGATE_BENCH_CACHE), so no test writes the user's directories or the published results/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from surrogate_bench.paths import REPO_ROOT

SHARED_DATA = Path(os.environ.get("SURROGATE_BENCH_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (tiny tensors; the same as the subprocesses' OMP_NUM_THREADS=1, so CPU
    results compare bitwise), restored afterwards. Modules opt in with ``pytest.mark.usefixtures``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def _digest_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("digest-cache")


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory, _digest_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("SURROGATE_BENCH_RESULTS", str(tmp_path_factory.mktemp("user-results")))
    monkeypatch.setenv("SURROGATE_BENCH_CACHE", str(_digest_cache))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``../shared/data`` (or $SURROGATE_BENCH_TEST_DATA); tests needing it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def has_dataset(sub: str) -> bool:
    return (SHARED_DATA / sub).exists()


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    return d


@pytest.fixture
def run_options(results_dir: Path, data_root: Path):
    from surrogate_bench.running.runner import RunOptions

    return RunOptions(results_dir=results_dir, data_root=data_root, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)


@pytest.fixture(scope="session")
def data_root_or_empty(tmp_path_factory) -> Path:
    """The real data root when present, else an empty folder: tasks that read no files (synthetic, generated
    or shipped with a dependency) still run; the others are skipped by the test with the loader's reason."""
    return SHARED_DATA if SHARED_DATA.is_dir() else tmp_path_factory.mktemp("no-data")


@pytest.fixture
def contract_options(results_dir: Path, data_root_or_empty: Path):
    """CPU run options on :func:`data_root_or_empty` (contract smoke runs, which need no particular data)."""
    from surrogate_bench.running.options import RunOptions

    return RunOptions(results_dir=results_dir, data_root=data_root_or_empty, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)
