"""Provenance: run keys follow the code and data that produce a run; foreign or data-less records are never
reused; a user's runs go to the user results directory, never the published results/."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from surrogate_bench.cli import main
from surrogate_bench.paths import DEFAULT_RESULTS_DIR, PUBLISHED_RESULTS_DIR, results_dir
from surrogate_bench.plugins.registry import get_task, load_plugin, method_for
from surrogate_bench.reporting.fingerprints import split_by_fingerprint
from surrogate_bench.running import provenance
from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.store.provenance import DigestCache, code_fingerprint, data_fingerprint
from surrogate_bench.running.options import RunOptions
from surrogate_bench.running.runner import run_one
from surrogate_bench.running.spec import RunSpec, resolve
from surrogate_bench.store.records import read_record, write_record

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _tiny() -> None:
    load_plugins([PLUGINS / "tiny_ap_task.py", PLUGINS / "tiny_fast_task.py"])


def _opts(results: Path, data: Path) -> RunOptions:
    return RunOptions(results_dir=results, data_root=data, device=torch.device("cpu"), progress=False,
                      log=lambda m: None)


# -- code --------------------------------------------------------------------------------------------------
def _plugin(tmp_path: Path, name: str) -> Path:
    """A task plugin file of its own (a fresh name, so the global registry takes it)."""
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(f'from surrogate_bench.plugins.registry import registry\n\n\n'
                    f'class T(registry().get_class("task", "tiny-ap")):\n'
                    f'    """A copy of tiny-ap."""\n\n    name = "{name}"\n')
    load_plugin(path)
    return path


def test_key_changes_with_the_task_source(tmp_path: Path) -> None:
    path = _plugin(tmp_path, "prov-task-a")
    spec = RunSpec("prov-task-a", "ce", "smoke", 0)
    before = spec.key_at(tmp_path)
    assert spec.key_at(tmp_path) == before
    path.write_text(path.read_text() + "# an edit\n")
    assert spec.key_at(tmp_path) != before


def test_key_changes_with_the_method_source(tmp_path: Path) -> None:
    src = Path(provenance.plugin_file(method_for(get_task("tiny-ap"), "ce")))
    copy = tmp_path / "prov_method.py"
    copy.write_text(src.read_text().replace('name = "ce"', 'name = "prov-ce"'))
    load_plugin(copy)
    spec = RunSpec("tiny-ap", "prov-ce", "smoke", 0)
    before = spec.key_at(tmp_path)
    copy.write_text(copy.read_text() + "\n# an edit\n")
    assert spec.key_at(tmp_path) != before


def test_engine_training_path_keys_reporting_does_not(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(provenance.PACKAGE_ROOT, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", pkg)
    task = get_task("tiny-ap")
    method = method_for(task, "ce")
    base = code_fingerprint(task, method)
    for reporting in ("reporting/leaderboard.py", "cli.py", "store/records.py", "launch/executors.py", "probes/probe.py"):
        (pkg / reporting).write_text((pkg / reporting).read_text() + "\n# reporting edit\n")
    assert code_fingerprint(task, method) == base
    (pkg / "uniloss" / "ap.py").write_text((pkg / "uniloss" / "ap.py").read_text() + "\n# engine edit\n")
    assert code_fingerprint(task, method) != base


def test_same_code_same_fingerprint_across_line_ends(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(provenance.PACKAGE_ROOT, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    task = get_task("tiny-ap")
    method = method_for(task, "ce")
    base = code_fingerprint(task, method)  # the package where it is
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", pkg)
    assert code_fingerprint(task, method) == base  # same bytes elsewhere
    f = pkg / "models" / "resnet_cifar.py"
    f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    assert code_fingerprint(task, method) == base  # a Windows checkout


# -- data --------------------------------------------------------------------------------------------------
@pytest.fixture
def mnist_copy(data_root: Path, tmp_path: Path) -> Path:
    """MNIST uncompressed in a fresh root (so one changed byte still reads as valid data)."""
    from surrogate_bench.datasets.mnist import find_dir

    src = find_dir(data_root)
    if src is None:
        pytest.skip("MNIST not in the data root")
    dst = tmp_path / "data" / "mnist"
    dst.mkdir(parents=True)
    for name in MNIST_FILES:
        gz = src / f"{name}.gz"
        (dst / name).write_bytes(gzip.decompress(gz.read_bytes()) if gz.is_file() else (src / name).read_bytes())
    return dst.parent


def test_one_changed_data_byte_changes_the_key(mnist_copy: Path) -> None:
    spec = RunSpec("mnist-ap", "ce", "smoke", 0)
    before = spec.key_at(mnist_copy)
    assert spec.fingerprints(mnist_copy).data not in ("undeclared", "generated", "unavailable")
    f = mnist_copy / "mnist" / "train-images-idx3-ubyte"
    with f.open("r+b") as fh:
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 1]))
    assert spec.key_at(mnist_copy) != before


def test_two_equal_copies_of_the_data_agree(mnist_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(mnist_copy, other)
    task = get_task("mnist-ap")
    assert data_fingerprint(task, other) == data_fingerprint(task, mnist_copy)


def test_digest_cache_reads_a_file_once(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"x" * 1000)
    cache = DigestCache(tmp_path / "cache.json")
    size, digest = cache.digest(f)
    cache.save()
    again = DigestCache(tmp_path / "cache.json")
    entry = again.entries[str(f.resolve())]
    remembered = "ab" * 32  # a well-formed digest (a malformed one is re-hashed: tests/test_trust_store.py)
    entry["sha256"] = remembered  # same size and mtime: the cache answers without reading
    assert again.digest(f) == (size, remembered)
    f.write_bytes(b"y" * 1000)  # new mtime: read again
    assert again.digest(f)[1] not in (remembered, digest)


def test_missing_data_is_a_data_skip_never_a_reuse(tmp_path: Path) -> None:
    """The issue's case: a data root with no MNIST at all still said 'reused'. A record at the very path
    (here forged with the run's own key) must not be reused while the data is missing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    opts = _opts(tmp_path / "results", empty)
    spec = RunSpec("mnist-ap", "ce", "smoke", 0)
    r = resolve(spec, opts)
    assert r.fp.data == "unavailable" and r.data_error is not None
    write_record(r.path, {"kind": "run", "key": r.key, "status": "ok", "task": "mnist-ap", "method": "ce",
                          "profile": "smoke", "seed": 0, "test_metric": 0.99})
    rec = run_one(spec, opts)
    assert not rec.get("reused")
    assert rec["status"] == "skipped" and rec["skip"] == "data" and "MNIST" in rec["reason"]


def test_foreign_records_are_never_reused(tmp_path: Path) -> None:
    opts = _opts(tmp_path / "results", tmp_path)
    mine, other = RunSpec("tiny-fast", "ce", "smoke", 0), RunSpec("tiny-fast", "ce", "smoke", 1)
    theirs = run_one(other, opts)
    assert theirs["status"] == "ok"
    path = resolve(mine, opts).path
    write_record(path, theirs)  # another run's record at my path
    rec = run_one(mine, opts)
    assert not rec.get("reused") and rec["key"] == resolve(mine, opts).key and rec["seed"] == 0
    stale = {**read_record(path), "key": "0" * 20}  # my record, but keyed by another commit's code
    write_record(path, stale)
    assert not run_one(mine, opts).get("reused")
    assert run_one(mine, opts).get("reused")  # my own record is


def test_record_carries_provenance(tmp_path: Path) -> None:
    rec = run_one(RunSpec("tiny-fast", "ce", "smoke", 0), _opts(tmp_path, tmp_path))
    prov = rec["provenance"]
    assert len(prov["code_fingerprint"]) == 64 and prov["data_fingerprint"] == "undeclared"
    assert prov["plugin_sources"]["task"].endswith("tiny_fast_task.py")
    assert prov["plugin_sources"]["method"].endswith("ce.py")
    assert prov["package_versions"]["torch"] and "git_commit" in prov and "git_dirty" in prov
    assert get_task("synth-pose-pckh").data_files(tmp_path) == []  # generated data
    assert RunSpec("synth-pose-pckh", "ce", "smoke").fingerprints(tmp_path).data == "generated"


# -- user results vs published -----------------------------------------------------------------------------
def test_results_dir_default_is_the_users(monkeypatch) -> None:
    monkeypatch.delenv("SURROGATE_BENCH_RESULTS")
    assert results_dir() == DEFAULT_RESULTS_DIR.expanduser() != PUBLISHED_RESULTS_DIR
    assert results_dir("results") == Path("results")  # the published set only when named
    monkeypatch.setenv("SURROGATE_BENCH_RESULTS", "/tmp/x")
    assert results_dir() == Path("/tmp/x") and results_dir("elsewhere") == Path("elsewhere")


def test_run_writes_the_user_dir_not_results(tmp_path: Path, monkeypatch, capsys) -> None:
    user = tmp_path / "user"
    monkeypatch.setenv("SURROGATE_BENCH_RESULTS", str(user))
    published_before = sorted(p.stat().st_mtime_ns for p in PUBLISHED_RESULTS_DIR.rglob("*") if p.is_file())
    args = ["--plugin", str(PLUGINS / "tiny_ap_task.py"), "--plugin", str(PLUGINS / "tiny_fast_task.py"), "run",
            "--task", "tiny-fast", "--method", "ce",
            "--profile", "smoke", "--device", "cpu", "--no-progress", "--data-root", str(tmp_path)]
    assert main(args) == 0
    assert "reused" not in capsys.readouterr().out
    assert len(list((user / "runs").glob("**/*.json"))) == 1
    assert sorted(p.stat().st_mtime_ns for p in PUBLISHED_RESULTS_DIR.rglob("*") if p.is_file()) == published_before
    assert main(["leaderboard", "--include-smoke"]) == 0  # reads the user's runs by default (smoke: plumbing only)
    assert "tiny-fast" in (user / "LEADERBOARD.md").read_text()


# -- leaderboard -------------------------------------------------------------------------------------------
def test_leaderboard_never_mixes_fingerprints_in_a_cell() -> None:
    def row(seed: int, code: str | None, evaluate_test: bool = True) -> dict:
        prov = {"code_fingerprint": code, "data_fingerprint": "d" * 64} if code else None
        return {"profile": "quick", "task": "t", "method": "ce", "seed": seed, "provenance": prov,
                "evaluate_test": evaluate_test, "test_metric": None if not evaluate_test else 0.5}

    same = split_by_fingerprint(pd.DataFrame([row(0, "a" * 64), row(1, "a" * 64)]))
    assert list(same["method"]) == ["ce", "ce"]
    mixed = split_by_fingerprint(pd.DataFrame([row(0, "a" * 64), row(1, "b" * 64), row(2, None),
                                               row(3, "c" * 64, evaluate_test=False)]))
    assert list(mixed["method"]) == ["ce@aaaaaa/dddddd", "ce@bbbbbb/dddddd", "ce@no-provenance"]


def _copy_training_path(dst: Path) -> None:
    """A copy of the package's training-path files under ``dst`` (same relative layout)."""
    import shutil

    from surrogate_bench.store.provenance import PACKAGE_ROOT, training_path_files

    for f in training_path_files():
        target = dst / f.relative_to(PACKAGE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)


def test_moving_an_unchanged_training_path_file_keeps_the_fingerprint_and_an_edit_changes_it(tmp_path,
                                                                                              monkeypatch) -> None:
    import surrogate_bench.store.provenance as provenance
    from surrogate_bench.store.provenance import training_path_digest

    _copy_training_path(tmp_path)
    before = training_path_digest(tmp_path)
    assert before == training_path_digest()  # the copy hashes like the package itself
    moved = tmp_path / "running" / "step.py"
    (tmp_path / "running" / "steps").mkdir()
    moved.rename(tmp_path / "running" / "steps" / "one_step.py")  # moved and renamed, content unchanged
    monkeypatch.setattr(provenance, "TRAINING_PATH", tuple(
        "running/steps/one_step.py" if item == "running/step.py" else item for item in provenance.TRAINING_PATH))
    assert training_path_digest(tmp_path) == before
    target = tmp_path / "running" / "steps" / "one_step.py"
    target.write_text(target.read_text() + "\n# an edit\n")
    assert training_path_digest(tmp_path) != before


def test_git_state_is_read_for_every_record_not_once_per_process(tmp_path: Path, monkeypatch) -> None:
    """A process that outlives an edit must not stamp its later records with the earlier clean state."""
    import subprocess

    from surrogate_bench.store import provenance as prov

    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.py").write_text("x = 1\n")
    run("add", "f.py")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(prov, "REPO_ROOT", repo)
    commit, dirty = prov.git_state()
    assert len(commit) == 40 and dirty is False
    (repo / "f.py").write_text("x = 2\n")  # an edit while the process lives on
    assert prov.git_state() == (commit, True)
