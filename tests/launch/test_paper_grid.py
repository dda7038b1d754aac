"""--grid papers: the papers' headline rows on the paper profile, seeds 0-2; rows without data listed as skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from surrogate_bench.cli import main
from surrogate_bench.datasets.cifar import LAYOUTS
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.launch.grid import PAPER_ROWS, named_grid


def fake_cifar(root: Path, which: str) -> None:
    """Empty batch files: presence is all the selection looks at (no data is read)."""
    layout = LAYOUTS[which]
    (root / layout.folder).mkdir(parents=True)
    for f in (*layout.train_files, layout.test_file):
        (root / layout.folder / f).write_bytes(b"")


def selection(specs) -> set[tuple]:
    return {(s.task, dict(s.task_params).get("depth"), s.method, s.profile, s.seed) for s in specs}


def test_papers_grid_with_cifar10_only(tmp_path: Path) -> None:
    fake_cifar(tmp_path, "cifar10")
    specs, skipped = named_grid("papers", tmp_path)
    expected = {(t, d, m, "paper", s) for t, d, ms in [("mnist-ap", None, ("ce", "uniloss", "reloss")),
                                                        ("cifar10-acc", 20, ("ce", "uniloss")),
                                                        ("cifar10-acc", 56, ("ce", "reloss"))]
                for m in ms for s in (0, 1, 2)}
    assert selection(specs) == expected and len(specs) == 21
    assert len(skipped) == 3  # cifar100 x 2 depths, mpii
    assert all("skipped" in line for line in skipped)
    assert sum("CIFAR-100 not found" in line for line in skipped) == 2
    assert any(line.startswith("mpii-pckh") and "MPII" in line for line in skipped)
    # depth 56 is a task parameter of the key; depth 20 the default
    depths = {s.build()[0].p["depth"] for s in specs if s.task == "cifar10-acc"}
    assert depths == {20, 56}
    assert len({s.key_at(tmp_path) for s in specs}) == len(specs)


def test_papers_grid_includes_cifar100_when_present(tmp_path: Path) -> None:
    fake_cifar(tmp_path, "cifar10")
    fake_cifar(tmp_path, "cifar100")
    specs, skipped = named_grid("papers", tmp_path, seeds=[0])
    assert {(s.task, dict(s.task_params)["depth"], s.method) for s in specs if s.task == "cifar100-acc"} == {
        ("cifar100-acc", 20, "ce"), ("cifar100-acc", 20, "uniloss"), ("cifar100-acc", 56, "ce"),
        ("cifar100-acc", 56, "reloss")}
    assert len(skipped) == 1 and all(s.seed == 0 for s in specs)


def test_every_paper_row_builds() -> None:
    for task, params, methods in PAPER_ROWS:
        for method in methods:
            from surrogate_bench.running.runner import RunSpec

            t, m = RunSpec(task, method, "paper", 0, params).build()
            assert m.supports(t) is None, (task, method)


def test_unknown_grid_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="unknown --grid 'nope'"):
        named_grid("nope", tmp_path)


@pytest.mark.parametrize("extra,message", [
    (["--grid", "nope"], "unknown --grid 'nope'"),
    (["--grid", "papers", "--all"], "--grid is a selection of its own"),
    (["--grid", "papers", "--max-minutes", "0"], "bad --max-minutes 0"),
    (["--task", "mnist-ap", "--method", "ce", "--step-capture", "fast"], "invalid choice"),
])
def test_cli_errors_are_one_line(extra: list[str], message: str, tmp_path: Path, capsys) -> None:
    code = main(["run", *extra, "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "r"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
