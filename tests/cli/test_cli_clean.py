"""clean: skip, failed and other-fingerprint run records go (--dry-run lists them); current ok records stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from surrogate_bench.results import parse_age, stale_records
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.store.records import read_record, write_record
from cli_helpers import run_cli

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TINY, FAILING = str(PLUGINS / "tiny_ap_task.py"), str(PLUGINS / "failing_method.py")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def results(tmp_path, capsys) -> Path:
    """An ok digits-ap run (current), a copy under another code fingerprint, a failure and a data skip."""
    out = tmp_path / "r"
    empty = tmp_path / "empty"
    empty.mkdir()
    common = ["--profile", "smoke", "--device", "cpu", "--no-progress", "--results-dir", str(out)]
    assert run_cli(capsys, "run", "--task", "digits-ap", "--method", "ce", "--seeds", "0,1", *common,
                   "--data-root", str(empty))[0] == 0
    assert run_cli(capsys, "--plugin", TINY, "--plugin", FAILING, "run", "--task", "tiny-ap", "--method",
                   "test-always-fails", *common, "--data-root", str(empty))[0] == 1
    assert run_cli(capsys, "run", "--task", "mnist-ap", "--method", "ce", *common, "--data-root", str(empty))[0] == 4
    old = next(p for p in out.glob("runs/smoke/digits-ap/ce-s1-*.json"))
    rec = json.loads(old.read_text())
    rec["provenance"]["code_fingerprint"] = "0" * 64  # as if trained by other code
    write_record(old, rec)
    return out


def test_dry_run_lists_then_clean_removes(results, capsys, tmp_path) -> None:
    before = sorted(results.glob("runs/**/*.json"))
    code, out, err = run_cli(capsys, "--plugin", TINY, "--plugin", FAILING, "clean", "--results-dir", str(results),
                             "--dry-run", "--data-root", str(tmp_path))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and all(ln.startswith("would remove ") for ln in lines), out
    assert any("skip (data): MNIST not found" in ln for ln in lines)
    assert any("failed: ValueError: deliberate failure" in ln for ln in lines)
    assert any("ce-s1-" in ln and "code fingerprint differs" in ln for ln in lines)
    assert "would remove 3 record(s) (1 skips, 1 failures, 1 other fingerprints)" in err
    assert sorted(results.glob("runs/**/*.json")) == before, "a dry run removes nothing"
    code, out, err = run_cli(capsys, "--plugin", TINY, "--plugin", FAILING, "clean", "--results-dir", str(results),
                             "--data-root", str(tmp_path))
    assert code == 0 and len(out.splitlines()) == 3
    (left,) = results.glob("runs/**/*.json")
    assert "ce-s0-" in left.name and read_record(left)["status"] == "ok"


def test_keep_failed_older_than_and_unchecked_plugins(results, capsys, tmp_path) -> None:
    stale, _ = stale_records(results, tmp_path, keep_failed=True)
    assert len(stale) == 1 + 1 - 0 and not any(why.startswith("failed") for _, why in stale)  # skip + fingerprint
    stale, _ = stale_records(results, tmp_path, older_than_s=parse_age("1d"))
    assert stale == []  # all were written just now
    # without --plugin the failing method is unknown here: a failed record goes anyway, an ok one would be kept
    code, out, _ = run_cli(capsys, "clean", "--results-dir", str(results), "--dry-run", "--data-root", str(tmp_path))
    assert code == 0 and len(out.splitlines()) == 3


def test_bad_input(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "clean", "--results-dir", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "r").mkdir()
    code, _, err = run_cli(capsys, "clean", "--results-dir", str(tmp_path / "r"), "--older-than", "soon")
    assert code == 2 and "bad --older-than 'soon'" in err
    assert parse_age("12h") == 43200 and parse_age("2") == 2 * 86400 and parse_age("30m") == 1800
    with pytest.raises(SuiteError):
        parse_age("-1d")
