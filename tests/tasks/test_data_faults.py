"""Data files that parse but hold nothing are named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from surrogate_bench.store.records import (
    read_record,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_record(results: Path) -> Path:
    (path,) = results.glob("runs/**/*.json")
    return path

def test_empty_mpii_annotation_list_names_the_file(capsys, tmp_path) -> None:
    folder = tmp_path / "data" / "mpii"
    folder.mkdir(parents=True)
    for name in ("mpii_train.json", "mpii_val.json"):
        (folder / name).write_text("[]")
    (folder / "mpii_gt_val.mat").write_bytes(b"")
    code, out, err = run_cli(capsys, "run", "--task", "mpii-pckh", "--method", "mse-heatmap", "--profile", "smoke",
                             "--device", "cpu", "--no-progress", "--results-dir", str(tmp_path / "results"),
                             "--data-root", str(tmp_path / "data"))
    assert code == 1 and "failed: DataCorrupt" in out and "Traceback" not in out + err, (out, err)
    rec = read_record(_one_record(tmp_path / "results"))
    assert str(folder / "mpii_train.json") in rec["reason"] and "an empty list" in rec["reason"], rec["reason"]
    assert "ZeroDivision" not in rec["reason"]
