"""What comes back from disk is checked before use: digest-cache entries (repaired, never KeyError), probe
records and pools (never ok or reused without data; a pool only under its own settings), records that are
inconsistent or would be refused (never written as ok), tune seeds (each counted once) and grid points
(checked before any trial trains)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from surrogate_bench.launch.executors import load_plugins
from surrogate_bench.launch.tune import parse_grid, tune
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import get_task
from surrogate_bench.running.options import RunOptions
from surrogate_bench.running.runner import run_one
from surrogate_bench.running.spec import RunSpec
from surrogate_bench.store import provenance
from surrogate_bench.store.provenance import DigestCache, data_fingerprint
from surrogate_bench.store.records import read_record, record_problem, recorded

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
FILES = [PLUGINS / n for n in ("tiny_ap_task.py", "tiny_fast_task.py", "file_data_task.py")]


@pytest.fixture(autouse=True)
def _plugins() -> None:
    load_plugins(FILES)


def _opts(tmp_path: Path, data: Path | None = None, logs: list | None = None, **kw) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", data_root=data or tmp_path, device=torch.device("cpu"),
                      progress=False, log=(logs.append if logs is not None else lambda m: None), **kw)


def _data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    (root / "file-fast.bin").write_bytes(b"some data bytes")
    return root


# -- 5. caches ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["no sha256", "sha256 not hex", "entry a list", "cache a list", "not json"])
def test_damaged_digest_cache_is_repaired_naming_the_file(damage, tmp_path, capsys):
    root = _data(tmp_path)
    cache = tmp_path / "cache" / "digests.json"
    cache.parent.mkdir()
    task = get_task("file-fast")
    good = data_fingerprint(task, root, DigestCache(cache))
    entries = json.loads(cache.read_text())
    (name, entry), = entries.items()
    broken = {"no sha256": {name: {k: v for k, v in entry.items() if k != "sha256"}},
              "sha256 not hex": {name: {**entry, "sha256": 7}},
              "entry a list": {name: [1, 2]}, "cache a list": [entries], "not json": None}[damage]
    cache.write_text("{not json" if broken is None else json.dumps(broken))
    capsys.readouterr()
    provenance._NOTED.clear()
    assert data_fingerprint(task, root, DigestCache(cache)) == good  # re-hashed, never KeyError: 'sha256'
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cache) in err[0] and err[0].startswith("note: "), err
    assert json.loads(cache.read_text())[name]["sha256"] == entry["sha256"]  # repaired on disk
    assert data_fingerprint(task, root, DigestCache(cache)) == good and not capsys.readouterr().err


def test_a_run_through_a_damaged_cache_entry_is_ok(tmp_path, monkeypatch, capsys):
    root = _data(tmp_path)
    monkeypatch.setenv("SURROGATE_BENCH_CACHE", str(tmp_path / "cache"))
    spec = RunSpec("file-fast", "ce", "smoke", 0)
    key = spec.key_at(root)
    cache = tmp_path / "cache" / "digests.json"
    cache.write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "sha256"}
                                 for k, v in json.loads(cache.read_text()).items()}))
    rec = run_one(spec, _opts(tmp_path, root))
    assert rec["status"] == "ok" and rec["key"] == key, rec.get("reason")


# -- 2. probe records and pools -----------------------------------------------------------------------------------
def test_probe_without_data_is_a_data_skip_and_an_ok_record_under_unavailable_is_never_reused(tmp_path):
    from surrogate_bench.probes.probe import run_probe

    logs: list[str] = []
    empty = tmp_path / "empty"
    empty.mkdir()
    opts = _opts(tmp_path, empty, logs)
    rec = run_probe("file-fast", "ce", "smoke", opts)
    assert rec["status"] == "skipped" and rec["skip"] == "data" and "file-fast.bin" in rec["reason"], rec
    assert rec["provenance"]["data_fingerprint"] == "unavailable"
    assert not (tmp_path / "results" / "pools").exists(), "no pool is built without data"
    path = next((tmp_path / "results" / "probes").glob("**/*.json"))
    planted = {**rec, "status": "ok", "n_batches": 2, "points": [[0.1, 0.2, 0], [0.3, 0.4, 1]], "spearman": -1.0}
    for k in ("skip", "reason"):
        planted.pop(k)
    path.write_text(json.dumps(planted))  # what the old code saved: an ok probe measured on no data
    assert "unavailable" in record_problem(planted)
    again = run_probe("file-fast", "ce", "smoke", opts)
    assert again["status"] == "skipped" and not again.get("reused")
    assert any("not reusing" in m and "unavailable" in m for m in logs), logs


def test_recorded_never_writes_an_ok_record_under_unavailable_data(tmp_path):
    path = tmp_path / "probe.json"
    base = {"kind": "probe", "key": "k" * 20, "task": "t", "method": "m", "profile": "smoke", "metric_name": "ap",
            "environment": {}, "provenance": {"data_fingerprint": "unavailable"}}
    work = {"n_batches": 1, "points": [[0.0, 1.0, 0]]}  # the probe trained on data loaded some other way
    rec = recorded(path, False, lambda: dict(base), None, lambda: dict(work), log=lambda m: None)
    assert rec["status"] == "skipped" and rec["skip"] == "data"
    assert read_record(path)["status"] == "skipped"
    bad = recorded(tmp_path / "run.json", False, lambda: {**base, "kind": "run", "seed": 0,
                                                         "provenance": {"data_fingerprint": "x"}},
                   None, lambda: {"epochs": 2, "history": [{"epoch": 1, "val_metric": 0.5}], "test_metric": 0.5},
                   log=lambda m: None)
    assert bad["status"] == "failed" and "not a valid record" in bad["reason"] and "history" in bad["reason"]


def test_pool_copied_from_another_profile_is_rebuilt_with_one_line(tmp_path):
    from surrogate_bench.probes.pool import load_or_build_pool, pool_path

    task = get_task("tiny-fast")
    data = task.load(tmp_path).limit(task.profile("smoke"))
    results, logs = tmp_path / "results", []
    smoke = load_or_build_pool(task, data, "smoke", torch.device("cpu"), results, logs.append)
    src = pool_path(results, task, "smoke")
    dst = pool_path(results, task, "quick")
    assert src != dst
    shutil.copy(src, dst)  # the same tensors, stored settings of profile smoke, under quick's name
    logs.clear()
    quick = load_or_build_pool(task, data, "quick", torch.device("cpu"), results, logs.append)
    notes = [m for m in logs if "rebuilding" in m]
    assert len(notes) == 1 and "other settings" in notes[0] and "profile" in notes[0], logs
    assert quick.settings["profile"] == "quick" and smoke.settings["profile"] == "smoke"
    logs.clear()
    load_or_build_pool(task, data, "quick", torch.device("cpu"), results, logs.append)
    assert not any("rebuilding" in m for m in logs), "the rebuilt pool is its own and reused"
    logs.clear()  # a pool of other data (another data fingerprint) under this data's name is rebuilt too
    shutil.copy(pool_path(results, task, "quick"), pool_path(results, task, "quick", "other-data"))
    load_or_build_pool(task, data, "quick", torch.device("cpu"), results, logs.append, data_fp="other-data")
    assert any("data_fingerprint" in m and "rebuilding" in m for m in logs), logs


# -- 3. records read back: internal consistency ----------------------------------------------------------------------
def test_record_problem_checks_consistency_and_tune_records() -> None:
    run = {"kind": "run", "key": "k", "status": "ok", "task": "t", "method": "m", "profile": "p", "seed": 0,
           "metric_name": "ap", "environment": {}, "test_metric": 0.5, "epochs": 2,
           "history": [{"epoch": 1, "val_metric": 0.5}, {"epoch": 2, "val_metric": 0.6}]}
    assert record_problem(run) is None
    assert "history entries" in record_problem({**run, "history": []})  # all epochs claimed, none trained
    assert "provenance" in record_problem({**run, "provenance": "x"})
    assert "unavailable" in record_problem({**run, "provenance": {"data_fingerprint": "unavailable"}})
    assert record_problem({**run, "status": "skipped", "provenance": {"data_fingerprint": "unavailable"}}) is None
    tune_rec = {"kind": "tune", "key": "k", "status": "ok", "task": "t", "method": "m", "profile": "p",
                "metric_name": "ap", "seeds": [0, 1], "points": [{"a": 1}, {"a": 2}], "choice": {"a": 2},
                "trials": [{"params": {"a": 1}, "seed": 0, "status": "ok"}]}
    assert record_problem(tune_rec) is None
    assert "repeats" in record_problem({**tune_rec, "seeds": [0, 0, 1]})
    assert "choice" in record_problem({**tune_rec, "choice": {"a": 3}})
    assert "trials entry 0" in record_problem({**tune_rec, "trials": ["x"]})
    assert "non-integer" in record_problem({**tune_rec, "seeds": [0, "1"]})


# -- 4. seeds ---------------------------------------------------------------------------------------------------------
def test_tune_counts_a_repeated_seed_once_with_one_note(tmp_path):
    logs: list[str] = []
    grid = parse_grid(["label_smoothing=0,0.2"], "ce")
    rec = tune("tiny-fast", "ce", grid, "smoke", [0, 0, 1], 2, _opts(tmp_path, logs=logs))
    assert rec["seeds"] == [0, 1] and len(rec["trials"]) == 4, rec["seeds"]
    assert sorted(t["seed"] for t in rec["trials"]) == [0, 0, 1, 1]
    notes = [m for m in logs if "more than once" in m]
    assert len(notes) == 1 and "seed(s) 0" in notes[0], logs
    same = tune("tiny-fast", "ce", grid, "smoke", [0, 1], 2, _opts(tmp_path))
    assert same["key"] == rec["key"] and same["choice"] == rec["choice"]  # 0,0,1 is 0,1: the choice cannot flip
    assert read_record(Path(rec["path"]), rec["key"]) is not None


def test_tune_checks_every_grid_point_before_any_trial_trains(tmp_path):
    grid = {"label_smoothing": [0.0, 2.0]}  # the second point is outside [0, 1]
    with pytest.raises(SuiteError, match="label_smoothing"):
        tune("tiny-fast", "ce", grid, "smoke", [0], 2, _opts(tmp_path))
    assert not list((tmp_path / "results").glob("**/*.json")), "a trial trained before the grid was checked"


# -- odd files named like records ---------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_fifos_devices_and_folders_named_like_records_are_refused_without_blocking(tmp_path, capsys):
    import os

    from surrogate_bench.store.records import iter_records

    runs = tmp_path / "runs" / "smoke" / "t"
    runs.mkdir(parents=True)
    os.mkfifo(runs / "ce-s0-0123456789.json")  # a plain read would wait for a writer forever
    (runs / "ce-s1-0123456789.json").mkdir()
    if Path("/dev/zero").exists():
        os.symlink("/dev/zero", runs / "ce-s2-0123456789.json")  # a plain read would never end
    warned: list[str] = []
    assert list(iter_records(tmp_path, "run", warned.append)) == []
    assert len(warned) == 3 - (not Path("/dev/zero").exists()) and all("not a regular file" in m for m in warned)
    os.mkfifo(tmp_path / "digests.json")
    assert DigestCache(tmp_path / "digests.json", log=warned.append).entries == {}
    assert "digests.json" in warned[-1] and "FIFO" in warned[-1]
