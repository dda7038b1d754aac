"""run's plan and conventions: the plan before anything trains, one line per missing dataset, one download
attempt per dataset, exit 4 when nothing ran, --dry-run, --profile-param, METHOD.K=V, repeated --method,
--threads, --version, suggestions, a bare command, a shadowing folder, failures naming their record."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from surrogate_bench.paths import REPO_ROOT
from surrogate_bench.plugins.errors import DataUnavailable, SuiteError
from surrogate_bench.store.records import read_record
from cli_helpers import run_cli

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TINY, FAILING = str(PLUGINS / "tiny_ap_task.py"), str(PLUGINS / "failing_method.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

pytestmark = pytest.mark.usefixtures("one_thread")


def records(results: Path) -> list[dict]:
    return [read_record(p) for p in sorted(results.glob("runs/**/*.json"))]


def smoke(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--profile", "smoke", "--device", "cpu", "--no-progress", "--results-dir", str(tmp_path / "r"),
            "--data-root", str(tmp_path), *extra]


def test_plan_counts_unsupported_pairs_and_verbose_lists_them(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, *smoke(tmp_path, "--task", "digits-ap", "--method", "ce,mse-heatmap",
                                            "--dry-run"))
    assert code == 0, err
    assert "plan: 1 run(s) to train, 0 to reuse, 0 skipped (no data); 1 unsupported" in err
    assert "--verbose lists them" in err and "mse-heatmap" not in err
    assert out.splitlines() == ["would train digits-ap/ce/s0 (smoke)"]
    assert not records(tmp_path / "r"), "a dry run trains nothing"
    code, _, err = run_cli(capsys, *smoke(tmp_path, "--task", "digits-ap", "--method", "ce,mse-heatmap",
                                          "--dry-run", "--verbose"))
    assert code == 0 and "unsupported: digits-ap x mse-heatmap: " in err


def test_only_unsupported_pairs_exit_4_and_say_why(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, *smoke(tmp_path, "--task", "synth-pose-pckh", "--method", "ce"))
    assert code == 4, (out, err)
    assert "unsupported: synth-pose-pckh x ce: ce needs class logits" in err  # listed: nothing else would run
    assert "next: python -m surrogate_bench list" in err
    assert not records(tmp_path / "r")


def test_missing_data_is_one_line_per_dataset_with_the_whole_reason(capsys, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli(capsys, *smoke(tmp_path, "--task", "mnist-ap", "--method", "ce,focal", "--seeds", "0,1",
                                            "--data-root", str(empty)))
    assert code == 4, (out, err)
    (line,) = out.splitlines()
    assert line.startswith("mnist-ap (ce, focal; 4 run(s)): skipped: MNIST not found under")
    assert "t10k-labels-idx1-ubyte.gz" in line and str(empty) in line and "or pass --download" in line
    recs = records(tmp_path / "r")
    assert len(recs) == 4 and all(r["status"] == "skipped" and r["reason"] == line.split("skipped: ", 1)[1]
                                  for r in recs)
    assert "4 skipped (no data)" in err and "Traceback" not in out + err


def test_download_is_tried_once_per_dataset_and_never_advised_again(capsys, tmp_path, monkeypatch) -> None:
    from surrogate_bench.plugins.registry import registry

    cls = registry().get_class("task", "mnist-ap")
    calls = []

    def offline(self, data_root, *, download=False):
        calls.append(download)
        raise DataUnavailable(f"MNIST download failed (URLError: no network\nat all); put the four MNIST files "
                              f"in {data_root}/mnist/, or pass --download")

    monkeypatch.setattr(cls, "load", offline)
    code, out, err = run_cli(capsys, *smoke(tmp_path, "--task", "mnist-ap", "--method", "ce,focal,hinge",
                                            "--seeds", "0,1,2", "--download", "--data-root", str(tmp_path)))
    assert code == 4 and calls == [True], (calls, out, err)
    assert "pass --download" not in out + err and "no network at all" in out
    assert len(out.splitlines()) == 1 and all("pass --download" not in r["reason"] for r in records(tmp_path / "r"))


def test_mpii_mini_names_only_the_missing_file(tmp_path) -> None:
    from surrogate_bench.launch.grid import data_missing

    mini = tmp_path / "mpii-mini"
    mini.mkdir()
    (mini / "mpii_val.json").write_text("[]")
    (mini / "mpii_gt_val.mat").write_bytes(b"")
    reason = data_missing("mpii-pckh", tmp_path)
    head = reason.split(";")[0]
    assert "mpii_train.json not found" in head and "mpii_val.json" not in head and "mpii_gt_val.mat" not in head


def test_profile_param_and_per_method_params(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, *smoke(tmp_path, "--task", "digits-ap", "--method", "ce", "--method", "focal",
                                            "--profile-param", "lr=0.01", "--profile-param", "epochs=2",
                                            "--method-param", "focal.gamma=1"))
    assert code == 0, err
    by_method = {r["method"]: r for r in records(tmp_path / "r")}
    assert set(by_method) == {"ce", "focal"}, "repeated --method accumulates"
    for rec in by_method.values():
        assert rec["profile_settings"]["lr"] == 0.01 and rec["profile_settings"]["epochs"] == 2
        assert rec["profile_params"] == {"epochs": "2", "lr": "0.01"} and len(rec["history"]) == 2
    assert by_method["focal"]["method_params"]["gamma"] == 1.0
    assert "gamma" not in by_method["ce"]["method_params"]


@pytest.mark.parametrize("extra,message", [
    (["--profile-param", "lrr=0.1"], "unknown profile setting 'lrr' (did you mean 'lr'?)"),
    (["--profile-param", "lr=-1"], "bad value"),
    (["--profile-param", "optimizer=adam"], "unknown profile setting 'optimizer'"),
    (["--method-param", "ce.gamma=1"], "unknown method parameter 'gamma' of ce"),
    (["--method-param", "focl.gamma=1"], "is not a method (did you mean 'focal'?)"),
    (["--method-param", "hinge.margin=1"], "method 'hinge' is not selected"),
    (["--method-param", "gama=1"], "did you mean 'gamma'?"),
    (["--seeds", "auto", "--margin", "0"], "bad --margin 0"),
    (["--margin", "0.01"], "--margin applies to --seeds auto"),
    (["--threads", "0"], "bad --threads 0"),
    (["--progress", "lg"], "did you mean 'log'?"),
])
def test_bad_params_are_one_line(extra, message, capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, *smoke(tmp_path, "--task", "digits-ap", "--method", "ce,focal", *extra))
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_threads_are_set_and_recorded(capsys, tmp_path) -> None:
    before = torch.get_num_threads()
    try:
        code, _, err = run_cli(capsys, *smoke(tmp_path, "--task", "digits-ap", "--method", "ce", "--threads", "2"))
        assert code == 0, err
        assert torch.get_num_threads() == 2
        (rec,) = records(tmp_path / "r")
        assert rec["environment"]["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_failed_plugin_loss_names_the_record_with_its_traceback(capsys, tmp_path) -> None:
    code, out, _ = run_cli(capsys, "--plugin", TINY, "--plugin", FAILING,
                           *smoke(tmp_path, "--task", "tiny-ap", "--method", "test-always-fails"))
    assert code == 1
    line = out.splitlines()[0]
    found = re.search(r"\(traceback in (\S+\.json)\)$", line)
    assert found and "deliberate failure" in line, line
    assert "traceback" in json.loads(Path(found.group(1)).read_text())


def test_summary_line_keeps_a_multi_line_reason_whole() -> None:
    from surrogate_bench.reporting.console import summary_line

    rec = {"task": "mnist-ap", "method": "ce", "profile": "quick", "seed": 0, "status": "skipped",
           "reason": "MNIST download failed (URLError)\nput the four MNIST files in /d/mnist/"}
    assert summary_line(rec).endswith("skipped: MNIST download failed (URLError) put the four MNIST files in /d/mnist/")


def test_version_suggestions_and_a_bare_command(capsys) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == "surrogate_bench 0.2.1"
    code, _, err = run_cli(capsys, "rnu")
    assert code == 2 and "did you mean 'run'?" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "run", "--tsk", "digits-ap", "--method", "ce")
    assert code == 2 and "unrecognized arguments: --tsk digits-ap (did you mean --task?)" in err
    code, out, _ = run_cli(capsys)
    assert code == 2 and all(f"  {c} " in out for c in ("run", "leaderboard", "clean", "list", "export"))
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "4 nothing ran" in " ".join(out.split())


def test_seeds_auto_hands_the_grid_to_the_auto_seeds_driver(capsys, tmp_path, monkeypatch) -> None:
    calls = {}

    def run_until_decided(specs_for_seeds, opts, cfg, *, min_seeds, max_seeds, step, margin, log):
        calls.update(min_seeds=min_seeds, max_seeds=max_seeds, step=step, margin=margin,
                     specs=specs_for_seeds([0, 1, 2]))
        return iter(())

    try:
        import surrogate_bench.launch.auto_seeds as module
        monkeypatch.setattr(module, "run_until_decided", run_until_decided)
    except ImportError:  # not written yet: stand in for it
        fake = types.ModuleType("surrogate_bench.launch.auto_seeds")
        fake.run_until_decided = run_until_decided
        monkeypatch.setitem(sys.modules, "surrogate_bench.launch.auto_seeds", fake)
    code, _, err = run_cli(capsys, *smoke(tmp_path, "--task", "digits-ap", "--method", "ce,focal,mse-heatmap",
                                          "--seeds", "auto", "--min-seeds", "3", "--max-seeds", "6",
                                          "--margin", "0.01"))
    assert code == 4, err  # the stand-in ran nothing
    assert (calls["min_seeds"], calls["max_seeds"], calls["step"], calls["margin"]) == (3, 6, 1, 0.01)
    assert sorted((s.method, s.seed) for s in calls["specs"]) == [(m, s) for m in ("ce", "focal") for s in range(3)]


def test_readme_main_command_is_a_valid_plan(capsys, tmp_path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("python -m surrogate_bench run --task digits-ap"))
    argv = line.split()[3:]
    code, _, err = run_cli(capsys, *argv, "--dry-run", "--results-dir", str(tmp_path / "r"),
                           "--data-root", str(tmp_path))
    assert code == 0, err
    assert re.search(r"plan: (\d+) run\(s\) to train", err) and "skipped (no data)" in err
    assert " 0 skipped (no data)" in err, "the main command needs no download"


def test_python_m_from_a_folder_holding_a_surrogate_bench_directory(tmp_path) -> None:
    (tmp_path / "surrogate_bench").mkdir()  # the clone folder, seen from its parent
    done = subprocess.run([sys.executable, "-m", "surrogate_bench", "--version"], cwd=tmp_path, capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "surrogate_bench 0.2.1", done.stderr


def test_results_load_defaults_and_errors(tmp_path, monkeypatch, capsys) -> None:
    from surrogate_bench import results

    monkeypatch.setenv("SURROGATE_BENCH_RESULTS", str(tmp_path / "user"))
    with pytest.raises(SuiteError, match="does not exist"):
        results.load()
    with pytest.raises(SuiteError, match=f"results directory {tmp_path / 'nope'} does not exist"):
        results.load(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    run_cli(capsys, *smoke(tmp_path, "--task", "mnist-ap,digits-ap", "--method", "ce", "--data-root", str(empty),
                           "--results-dir", str(tmp_path / "user")))
    frame = results.load()
    assert list(frame["task"]) == ["digits-ap"] and list(frame["status"]) == ["ok"]
    assert sorted(results.load(include_skips=True)["status"]) == ["ok", "skipped"]
