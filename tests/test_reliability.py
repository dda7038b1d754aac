"""No traceback anywhere (issue 11): one test (or a few) per class of fault.

1 records validated when read back; 2 OS errors answered in one line; 3 parameters checked against their
declared domains before any data is read; 4 the leaderboard survives any results folder; 5 signals and
workers; 6 caches that load but are malformed; 7 data files that parse but are empty; and a broken pipe.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from surrogate_bench.plugins.contracts import SEED_MAX, Domain
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import get_task, method_for, registry
from surrogate_bench.running import runner
from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.running.checkpoint import checkpoint_path
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one
from surrogate_bench.store.records import iter_records, read_record, record_problem, write_record
from cli_helpers import run_cli

PLUGINS = Path(__file__).parent / "plugins"
TINY = str(PLUGINS / "tiny_ap_task.py")
RAISING = str(PLUGINS / "raising_supports.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(results: Path, *extra: str) -> list[str]:
    return ["--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile", "smoke", "--device", "cpu",
            "--no-progress", "--results-dir", str(results), "--data-root", str(results.parent), *extra]


def one_line_exit_2(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in out + err


# -- 1. records are validated (schema + key) wherever they are read back -----------------------------------------
def _one_record(results: Path) -> Path:
    (path,) = results.glob("runs/**/*.json")
    return path


@pytest.mark.parametrize("damage", ["metric null", "field missing", "wrong type", "other key", "other run copied",
                                    "seed edited"])
def test_damaged_or_foreign_record_is_not_reused(damage, capsys, tmp_path) -> None:
    results = tmp_path / "results"
    code, out, _ = run_cli(capsys, *tiny(results))
    assert code == 0 and "reused" not in out
    path = _one_record(results)
    rec = json.loads(path.read_text())
    if damage == "metric null":
        rec["test_metric"] = None  # how a NaN metric is stored
    elif damage == "field missing":
        del rec["seed"]
    elif damage == "wrong type":
        rec["test_metric"] = "0.9"
    elif damage == "other key":
        rec["key"] = "0" * 20
    elif damage == "seed edited":  # the key is right, the record says another seed
        rec["seed"] = 10**400
    else:  # another run's (seed 1) record copied onto this path
        code, _, _ = run_cli(capsys, *tiny(results, "--seeds", "1"))
        other = next(p for p in results.glob("runs/**/*.json") if p != path)
        rec = json.loads(other.read_text())
    path.write_text(json.dumps(rec))
    code, out, err = run_cli(capsys, *tiny(results))
    assert code == 0 and "Traceback" not in out + err, (out, err)
    assert "reused" not in out and " AP " in out, out  # rerun, not reused and not a crash in the summary
    assert f"not reusing {path}" in err, err
    fresh = read_record(path, RunSpec("tiny-ap", "ce", "smoke", 0).key_at(tmp_path))
    assert fresh is not None and fresh["seed"] == 0 and math.isfinite(fresh["test_metric"])


def test_undefined_test_metric_is_a_failed_run_and_the_rerun_prints_one_line(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "score", lambda *a, **k: float("nan"))  # e.g. a test split without positives
    results = tmp_path / "results"
    for _ in range(2):
        code, out, err = run_cli(capsys, *tiny(results))
        assert code == 1 and "failed: UndefinedMetric" in out and "Traceback" not in out + err, (out, err)
    assert read_record(_one_record(results))["status"] == "failed"


def test_record_problem_oracle() -> None:
    good = {"kind": "run", "key": "k", "status": "ok", "task": "t", "method": "m", "profile": "p", "seed": 0,
            "test_metric": 0.5, "epochs": 1, "environment": {}, "metric_name": "AP",
            "extra_field_of_a_newer_version": [1]}
    assert record_problem(good) is None and record_problem(good, "k") is None
    assert "not this run's key" in record_problem(good, "other")
    for field, value, expected in [("test_metric", None, "null"), ("seed", "0", "str"), ("seed", True, "bool"),
                                   ("status", "done", "status"), ("kind", "bench", "kind"),
                                   ("history", [{"val_metric": "x"}], "history entry 0"),
                                   ("environment", "cpu", "environment")]:
        assert expected in record_problem({**good, field: value}), (field, value)
    assert "missing" in record_problem({k: v for k, v in good.items() if k != "task"})
    assert record_problem(good, "k", {"task": "t", "seed": 0}) is None
    assert "its seed 0 is not this run's 1" in record_problem(good, "k", {"seed": 1})
    assert record_problem({**good, "status": "skipped", "test_metric": None}) is None
    assert "not a JSON object" in record_problem([good])


# -- 2. OS errors: one line, exit 2 ------------------------------------------------------------------------------
def test_lock_path_that_is_a_directory_is_one_line(capsys, tmp_path) -> None:
    results = tmp_path / "results"
    load_plugins([TINY])
    spec = RunSpec("tiny-ap", "ce", "smoke", 0)
    path = spec.record_path(results, spec.key_at(tmp_path))
    Path(str(path) + ".lock").mkdir(parents=True)
    one_line_exit_2(*run_cli(capsys, *tiny(results)), "cannot lock record")


def test_record_folder_blocked_by_a_file_is_one_line(capsys, tmp_path) -> None:
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    (results / "runs" / "smoke").write_text("a file where a folder goes")
    one_line_exit_2(*run_cli(capsys, *tiny(results)), "cannot lock record")


def test_leaderboard_and_bench_outputs_that_cannot_be_written(capsys, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (tmp_path / "results").mkdir()
    one_line_exit_2(*run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path / "results"),
                             "--out", str(blocker / "LB.md")), str(blocker))
    one_line_exit_2(*run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path / "results"),
                             "--out", str(tmp_path / ("x" * 300 + ".md"))), "too long")
    code, out, err = run_cli(capsys, "--plugin", TINY, "bench", "--task", "tiny-ap", "--method", "ce", "--profile",
                             "smoke", "--steps", "1", "--device", "cpu", "--data-root", str(tmp_path),
                             "--json", str(blocker / "bench.json"))
    one_line_exit_2(code, "", err, str(blocker))


# -- 3. parameters: every one declares its domain; outside it is exit 2 before any data is read -----------------
def _builtin(kind: str) -> list[str]:
    from surrogate_bench.paths import builtin_plugin_root

    dirs = tuple(str(builtin_plugin_root() / d) + "/" for d in ("tasks", "methods"))  # not test / ad-hoc plugins
    return [n for n in registry().names(kind) if registry().get_class(kind, n).source.startswith(dirs)]


@pytest.mark.parametrize("kind", ["task", "method"])
def test_every_builtin_parameter_declares_a_domain_and_refuses_non_finite(kind) -> None:
    for name in _builtin(kind):
        cls = registry().get_class(kind, name)
        assert set(cls.param_domains) == set(cls.params), name
        assert all(isinstance(d, Domain) for d in cls.param_domains.values())
        cls()  # the defaults lie inside their domains
        for key, default in cls.params.items():
            if isinstance(default, float):
                for bad in ("inf", "-inf", "nan"):
                    with pytest.raises(SuiteError, match=f"parameter '{key}'"):
                        cls(**{key: bad})


BAD_PARAMS = {
    "temperature inf": (["--task", "mnist-ap", "--method", "uniloss", "--method-param", "temperature=inf"],
                        "finite"),
    "gain inf": (["--task", "mnist-ap", "--method", "uniloss", "--method-param", "gain=inf"], "finite"),
    "label smoothing nan": (["--task", "mnist-ap", "--method", "ce", "--method-param", "label_smoothing=nan"],
                            "finite"),
    "label smoothing 2": (["--task", "mnist-ap", "--method", "ce", "--method-param", "label_smoothing=2"],
                          "[0, 1]"),
    "negative split": (["--task", "mnist-ap", "--method", "ce", "--task-param", "val_size=-1"], "val_size"),
    "too large split": (["--task", "cifar10-acc", "--method", "ce", "--task-param", "val_size=50000"], "val_size"),
    "heatmap 0": (["--task", "synth-pose-pckh", "--method", "mse-heatmap", "--task-param", "heatmap_size=0"],
                  "heatmap_size"),
    "width 0": (["--task", "mpii-pckh", "--method", "mse-heatmap", "--task-param", "width=0"], "width"),
    "joint 16": (["--task", "mpii-pckh", "--method", "mse-heatmap", "--task-param", "joints=9:16"], "item 16"),
    "huge seed": (["--task", "mnist-ap", "--method", "ce", "--seeds", str(2**64)], "2^63"),
    "top_k without refactoring": (["--task", "mnist-ap", "--method", "uniloss", "--method-param", "top_k=3"],
                                  "top_k"),
    "weights without digest": (["--task", "mnist-ap", "--method", "reloss", "--method-param", "weights=w.pt"],
                               "weights_sha256"),
    "bad digest": (["--task", "mnist-ap", "--method", "reloss", "--method-param", "weights=w.pt",
                    "--method-param", "weights_sha256=xyz"], "weights_sha256"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_parameter_outside_its_domain_is_exit_2_before_data(case, capsys, tmp_path, monkeypatch) -> None:
    def no_data(*args, **kwargs):
        raise AssertionError("data was read")

    monkeypatch.setattr(runner, "load_task_data", no_data)
    extra, expected = BAD_PARAMS[case]
    results = tmp_path / "results"
    one_line_exit_2(*run_cli(capsys, "run", "--profile", "smoke", "--device", "cpu", "--no-progress",
                             "--results-dir", str(results), "--data-root", str(tmp_path), *extra), expected)
    assert not results.exists() or not list(results.rglob("*.json"))


def test_seed_limits() -> None:
    from surrogate_bench.launch.grid import parse_seeds

    assert parse_seeds(f"0,{SEED_MAX}") == [0, SEED_MAX]
    for bad in (str(SEED_MAX + 1), "-1"):
        with pytest.raises(SuiteError):
            parse_seeds(bad)
    with pytest.raises(SuiteError, match="seed"):
        get_task("synth-pose-pckh", seed=SEED_MAX + 1)


def test_top_k_is_fine_where_the_refactoring_has_it() -> None:
    assert method_for(get_task("cifar10-acc"), "uniloss", top_k="3").p["top_k"] == 3
    method_for(get_task("synth-pose-pckh"), "ce")  # unsupported pairs are skipped later, not refused here


# -- 4. the leaderboard survives any results folder ---------------------------------------------------------------
def _run_rec(key: str, seed: int, value) -> dict:
    return {"kind": "run", "key": key, "status": "ok", "task": "mnist-ap", "method": "ce", "profile": "quick",
            "seed": seed, "test_metric": value, "metric_name": "AP", "higher_is_better": True, "epochs": 3,
            "environment": {"device_name": "cpu (test)"}}


def test_leaderboard_skips_malformed_foreign_wrong_typed_and_duplicate_records(capsys, tmp_path) -> None:
    runs = tmp_path / "runs" / "quick" / "mnist-ap"
    write_record(runs / "ce-s0-aaaaaaaaaa.json", _run_rec("aaaaaaaaaa0000000000", 0, 0.5))
    write_record(runs / "ce-s1-bbbbbbbbbb.json", _run_rec("bbbbbbbbbb0000000000", 1, 0.7))
    (runs / "copy-of-s1.json").write_text((runs / "ce-s1-bbbbbbbbbb.json").read_text())  # a duplicate of one key
    bad = {"truncated.json": '{"kind": "run", "key"', "foreign.json": '{"hello": "world"}', "list.json": "[1, 2]",
           "binary.json": "\udcff"}
    for name, text in bad.items():
        (runs / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    write_record(runs / "typed.json", {**_run_rec("cccccccccc0000000000", 2, "high"), "seed": 2})
    write_record(runs / "env.json", {**_run_rec("dddddddddd0000000000", 3, 0.6), "environment": "cpu"})
    write_record(runs / "ce-s4-eeeeeeeeee.json", _run_rec("ffffffffff0000000000", 4, 0.6))  # key != file name
    code, out, err = run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path))
    assert code == 0 and "Traceback" not in out + err, err
    for name in [*bad, "typed.json", "env.json", "copy-of-s1.json", "ce-s4-eeeeeeeeee.json"]:
        assert f"warning: skipping {runs / name}" in err, (name, err)
    md = (tmp_path / "LEADERBOARD.md").read_text()
    assert "0.6000 ± 1.2706 (n=2)" in md, md  # 95% t interval: 0.1414 / sqrt(2) x t(0.975, 1)  # seeds 0 and 1, the duplicate counted once
    assert len(list(iter_records(tmp_path, "run", warn=None))) == 2


# -- 5. signals and workers -----------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_workers_stop_with_the_parent(sig, tmp_path) -> None:
    cmd = [sys.executable, "-m", "surrogate_bench", *tiny(tmp_path / "results", "--seeds", "0,1", "--jobs", "2",
                                                          "--task-param", "step_delay_ms=200")]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline:  # wait until both workers run
            workers = [p for p in _children(parent.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
            if len(workers) == 2 and list((tmp_path / "results").glob("checkpoints/*.pt")):
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the workers did not start"
        parent.send_signal(sig)
        out, err = parent.communicate(timeout=60)
        if sig != signal.SIGKILL:
            assert parent.returncode == 128 + sig and "Traceback" not in err, (parent.returncode, err)
            assert err.strip().splitlines()[-1] in ("interrupted", "terminated"), err
        deadline = time.monotonic() + 30
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), "a worker outlived its parent"
        assert not list((tmp_path / "results").glob("runs/**/*.json")), "no record written after the parent left"
    finally:
        parent.kill()
        parent.wait()


def _torch_loading(pid: int) -> bool:
    """The process has started loading torch's shared libraries (so it runs the suite's own imports)."""
    try:
        return "torch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


_SIGINT_AT_IMPORT = """
import os, runpy, signal, sys
where = sys.argv[1]
class SigintAt:  # a real SIGINT, sent by the process itself the moment `where` starts importing
    def find_spec(self, name, path=None, target=None):
        if name == where:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, SigintAt())
sys.argv = ["surrogate_bench", "list"]
runpy.run_module("surrogate_bench", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("where", ["torch", "torch.nn", "torch.optim", "surrogate_bench.plugins.registry"])
def test_ctrl_c_while_importing_torch_is_one_line(where) -> None:
    """SIGINT at the start of torch's import, inside it (torch.nn, torch.optim) and in the suite's own imports.

    The process sends the signal to itself when the import of ``where`` begins, so where it lands does not
    depend on how loaded the machine is (the earlier version polled /proc/<pid>/maps from outside and slept,
    which a busy machine could turn into an interrupt somewhere else, or into a timeout)."""
    proc = subprocess.run([sys.executable, "-c", _SIGINT_AT_IMPORT, where], capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 130 and proc.stderr == "interrupted\n", (proc.returncode, proc.stderr)


def test_supports_that_raises_is_a_failed_record_and_the_grid_goes_on(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, "--plugin", RAISING, *tiny(tmp_path / "results", "--method",
                                                                 "test-supports-raises,ce"))
    assert code == 1 and "Traceback" not in out + err, (out, err)
    lines = out.splitlines()
    assert "failed: RuntimeError: deliberate failure in supports()" in lines[0] and " AP " in lines[1], out


# -- 6. caches that load but are malformed are ignored with a message and rebuilt -----------------------------------
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("content", ["no model", "wrong types", "not a dict", "other shapes"])
def test_malformed_checkpoint_is_ignored(content, force, tmp_path) -> None:
    load_plugins([TINY])
    logs: list[str] = []
    opts = RunOptions(results_dir=tmp_path / "results", data_root=tmp_path, device=torch.device("cpu"),
                      progress=False, log=logs.append, force=force)
    spec = RunSpec("tiny-ap", "ce", "smoke", 0)
    key = spec.key_at(tmp_path)
    state = {"no model": {"key": key, "epoch": 2},
             "wrong types": {"key": key, "epoch": "2", "model": {}, "optimizer": {}, "scheduler": {},
                             "rng": {}, "history": [], "train_time": 1.0, "seen": 3},
             "not a dict": [1, 2, 3],
             "other shapes": {"key": key, "epoch": 2, "model": {"0.weight": torch.zeros(3)},
                              "optimizer": {}, "scheduler": {}, "rng": {}, "history": [], "train_time": 1.0,
                              "seen": 3}}[content]
    path = checkpoint_path(opts.results_dir, key)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    rec = run_one(spec, opts)
    assert rec["status"] == "ok", rec.get("reason")
    assert force or any("ignoring checkpoint" in m for m in logs), logs
    assert not any(m.startswith("resuming") for m in logs)


@pytest.mark.parametrize("content", ["no outputs", "not a dict", "other settings"])
def test_malformed_probe_pool_is_rebuilt(content, tmp_path) -> None:
    from surrogate_bench.probes.pool import load_or_build_pool, pool_path

    load_plugins([TINY])
    task = get_task("tiny-ap")
    data = task.load(tmp_path).limit(task.profile("smoke"))
    results, logs = tmp_path / "results", []
    path = pool_path(results, task, "smoke")
    path.parent.mkdir(parents=True)
    good = {"outputs": torch.zeros(2, 3, 2), "targets": torch.zeros(2, 3), "metric": torch.zeros(2)}
    torch.save({"no outputs": {"targets": torch.zeros(2, 3), "metric": torch.zeros(2)}, "not a dict": [1],
                "other settings": {**good, "settings": "{}"}}[content], path)
    pool = load_or_build_pool(task, data, "smoke", torch.device("cpu"), results, logs.append)
    assert any("unusable" in m and "rebuilding" in m for m in logs), logs
    assert len(pool) > 0 and pool.outputs.shape[0] == len(pool)
    logs.clear()
    assert len(load_or_build_pool(task, data, "smoke", torch.device("cpu"), results, logs.append)) == len(pool)
    assert not any("rebuilding" in m for m in logs), "the rebuilt pool is reused"


# -- 7. data files that parse but are empty -------------------------------------------------------------------------
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


def test_empty_split_from_any_task_is_named(tmp_path) -> None:
    from surrogate_bench.plugins.contracts import Split, TaskData
    from surrogate_bench.plugins.errors import DataCorrupt

    empty = Split(torch.zeros(0, 28, 28), torch.zeros(0))
    some = Split(torch.zeros(4, 28, 28), torch.zeros(4))
    with pytest.raises(DataCorrupt, match="empty train split"):
        runner.check_nonempty(get_task("mnist-ap"), TaskData(empty, some, some))
    runner.check_nonempty(get_task("mnist-ap"), TaskData(some, empty, some))  # no validation split is allowed


# -- and: a closed pipe --------------------------------------------------------------------------------------------
def test_list_into_a_closed_pipe_is_quiet() -> None:
    done = subprocess.run(f"{sys.executable} -m surrogate_bench list | head -1", shell=True, capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert done.stdout.count("\n") == 1 and done.stderr == "", done.stderr
