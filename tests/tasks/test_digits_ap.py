"""digits-ap: scikit-learn's 8x8 digits as an offline mnist-ap (fixed split, hashed data file, exact AP, VOC AP,
AP refactoring) whose quick runs take seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from surrogate_bench import check_refactoring, get_task
from surrogate_bench.running.options import RunOptions
from surrogate_bench.running.runner import run_one
from surrogate_bench.running.spec import RunSpec
from surrogate_bench.store.provenance import data_fingerprint, declared_data_files

pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_split_is_fixed_and_disjoint(tmp_path: Path) -> None:
    task = get_task("digits-ap")
    a, b = task.load(tmp_path), task.load(tmp_path)
    assert (len(a.train), len(a.val), len(a.test)) == (1000, 200, 597)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    assert a.train.x.dtype == torch.uint8 and int(a.train.x.max()) <= 16
    rows = {tuple(r.tolist()) for split in (a.train, a.val, a.test) for r in split.x.flatten(1)}
    assert len(rows) > 1700  # (a few of the 1,797 images are duplicates in the data set itself)
    positives = int(a.test.y.sum())
    assert 40 < positives < 90  # ~1:9, about 60 zeros in the test split
    other = get_task("digits-ap", positive_digit=3).load(tmp_path)
    assert not torch.equal(other.test.y, a.test.y)


def test_data_fingerprint_hashes_the_shipped_file(tmp_path: Path) -> None:
    task = get_task("digits-ap")
    (path,) = declared_data_files(task, tmp_path)
    assert path.as_posix().endswith("sklearn/datasets/data/digits.csv.gz") and path.is_file()
    fp = data_fingerprint(task, tmp_path)
    assert fp not in ("generated", "undeclared") and len(fp) == 64
    assert data_fingerprint(task, tmp_path / "elsewhere") == fp  # the data root plays no part


def test_refactoring_reproduces_the_exact_ap_and_margin() -> None:
    task = get_task("digits-ap")
    assert check_refactoring(task).ok
    assert task.equivalence_margin == 0.005 and task.metric_name == "AP"


def test_smoke_run_records_exact_and_voc_ap(tmp_path: Path) -> None:
    opts = RunOptions(results_dir=tmp_path / "r", data_root=tmp_path, device=torch.device("cpu"), progress=False,
                      log=lambda m: None)
    rec = run_one(RunSpec("digits-ap", "ce", "smoke", 0), opts)
    assert rec["status"] == "ok", rec.get("reason")
    assert 0.0 <= rec["test_metric"] <= rec["test_metrics_extra"]["voc_ap"] <= 1.0
    assert rec["provenance"]["data_fingerprint"] == data_fingerprint(get_task("digits-ap"), tmp_path)
    assert rec["n_train"] == 256 and rec["n_test"] == 200


def test_quick_profile_is_seconds_long() -> None:
    quick = get_task("digits-ap").profile("quick")
    assert quick.epochs * (1000 // quick.batch_size) <= 1000  # steps of a 64-128-64 MLP: seconds on a CPU
