"""docs/plugins.md is executable: its files become an outside package found through entry points, its
check passes, its commands run, and the project's contract tests accept the package."""

from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from surrogate_bench.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(DOC.read_text()) if kind == lang]


def files() -> dict[str, str]:
    """The page's files: every python / toml block whose first line is ``# <relative path>``."""
    out = {}
    for lang in ("python", "toml"):
        for body in blocks(lang):
            first = body.splitlines()[0]
            assert first.startswith("# "), f"a {lang} block in {DOC.name} does not start with '# <path>'"
            out[first[2:].strip()] = body
    return out


def commands() -> list[list[str]]:
    return [shlex.split(line) for body in blocks("bash") for line in body.splitlines() if line.strip()]


def write_package(root: Path) -> Path:
    """The page's files under ``root``, plus the empty ``__init__.py`` it mentions."""
    for rel, text in files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "my_surrogates" / "__init__.py").write_text("")
    return root


def entry_point_metadata(root: Path) -> None:
    """What ``pip install`` would write: a dist-info with the pyproject's entry points (importlib.metadata)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    dist = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in
        project["entry-points"].items()))


@pytest.fixture
def outside_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The documented package 'installed' on sys.path, and a fresh process-wide registry that finds it."""
    from surrogate_bench.plugins import registry

    root = write_package(tmp_path / "pkg")
    entry_point_metadata(root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(root)
    old = registry._REGISTRY
    registry._REGISTRY = registry.Registry()
    try:
        yield root
    finally:
        registry._REGISTRY = old
        for mod in [m for m in sys.modules if m == "my_surrogates" or m.startswith("my_surrogates.")]:
            del sys.modules[mod]


def test_the_page_shows_each_contract_with_a_complete_example() -> None:
    paths = set(files())
    assert {"my_surrogates/hinge.py", "my_surrogates/top2.py", "check.py", "pyproject.toml"} <= paths
    text = DOC.read_text()
    for needle in ("class MulticlassHinge(Method)", "class SynthTop2(Task)", "class Top2Refactoring(Refactoring)",
                   "def g(", "`smoke` is required", '"heatmaps"', "outputs[:, 1] - outputs[:, 0]",
                   "surrogate_bench.methods", "check_refactoring"):
        assert needle in text, needle
    assert all(cmd[:3] == ["python", "-m", "surrogate_bench"] or cmd[:2] in (["python", "check.py"],
                                                                              ["python", "-m"]) for cmd in commands())


def test_outside_package_found_through_entry_points_and_checked(outside_package: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """Found through the entry-point groups; the page's check passes; ``list`` shows the new plugins."""
    from surrogate_bench.cli import main
    from surrogate_bench.plugins.registry import registry

    assert registry().get_class("task", "synth-top2").source.startswith("entry point synth-top2")
    assert registry().get_class("method", "cs-hinge").source.startswith("entry point cs-hinge")
    runpy.run_path(str(outside_package / "check.py"), run_name="__main__")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "refactoring of synth-top2: ok" in out
    assert re.search(r"synth-top2 .*\n.*top-2 accuracy.*\n.*seed=0, spread=2.0\n.*smoke \(plumbing only\), quick\n", out)
    assert re.search(r"cs-hinge .*\n\s+params:\s+margin=1.0\n\s+supports: .*synth-top2", out)


@pytest.mark.slow
def test_outside_package_via_entry_points_follows_the_page(outside_package: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Found through the entry-point groups; check_refactoring passes; every command on the page runs."""
    from surrogate_bench import check_refactoring, get_task
    from surrogate_bench.cli import main
    from surrogate_bench.plugins.registry import registry

    assert registry().get_class("task", "synth-top2").source.startswith("entry point synth-top2")
    assert registry().get_class("method", "cs-hinge").source.startswith("entry point cs-hinge")
    assert check_refactoring(get_task("synth-top2")).ok
    for cmd in commands():
        if cmd[:3] == ["python", "-m", "surrogate_bench"]:
            assert main(cmd[3:]) == 0, cmd
        elif cmd[1:] == ["check.py"]:
            runpy.run_path(str(outside_package / "check.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "refactoring of synth-top2: ok" in out
    assert "synth-top2" in out and "margin=1.0" in out and "smoke (plumbing only), quick" in out
    assert re.search(r"synth-top2\s+cs-hinge\s+smoke\s+seed 0: top-2 accuracy 0\.\d{4}", out)
    assert re.search(r"synth-top2\s+uniloss\s+smoke\s+seed 0: top-2 accuracy 0\.\d{4}", out)


def test_the_project_contract_tests_accept_the_package(outside_package: Path) -> None:
    """The contract tests adapt to the task's two profiles and run its refactoring check."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    try:
        import test_contracts as contracts
    finally:
        sys.path.remove(str(REPO_ROOT / "tests"))
    contracts.test_task_contract("synth-top2")
    contracts.test_refactoring_reproduces_the_metric("synth-top2")
    contracts.test_tuned_method_defaults_are_known_parameters("synth-top2")


@pytest.mark.slow
def test_pip_installed_package_passes_the_project_tests(tmp_path: Path) -> None:
    """The real route: pip builds and installs the page's package; the page's commands run in a fresh process."""
    root = write_package(tmp_path / "pkg")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "-t", str(site), str(root)], check=True, capture_output=True)
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)]),
           "SURROGATE_BENCH_TEST_DATA": os.environ.get("SURROGATE_BENCH_TEST_DATA", str(data))}
    for cmd in commands():
        cmd = [sys.executable if c == "python" else str(REPO_ROOT / c) if c.startswith("tests/") else c for c in cmd]
        res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, (cmd, res.stdout[-2000:], res.stderr[-2000:])
        if "pytest" in cmd:
            assert "passed" in res.stdout and "failed" not in res.stdout, res.stdout[-2000:]
