"""Parallel execution: ``--jobs N`` worker processes and ``--launcher submitit-local`` give the sequential records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from surrogate_bench import cli
from surrogate_bench.running import launch
from surrogate_bench.launch.executors import LaunchConfig, load_plugins
from surrogate_bench.running.runner import RunOptions, RunSpec, run_one
from surrogate_bench.store.records import read_record

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TINY, EXIT = str(PLUGINS / "tiny_ap_task.py"), str(PLUGINS / "exit_method.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # workers and reference: 1 thread each


def comparable(rec: dict) -> dict:
    hist = [{k: h[k] for k in ("epoch", "train_loss", "val_metric", "lr")} for h in rec["history"]]
    return {"test_metric": rec["test_metric"], "best_val_metric": rec["best_val_metric"], "history": hist}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> dict[int, dict]:
    """Seeds 0 and 1 run one after the other in this process (1 CPU thread, like each worker)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        load_plugins([TINY])
        opts = RunOptions(results_dir=tmp_path_factory.mktemp("seq"), data_root=tmp_path_factory.mktemp("data"),
                          device=torch.device("cpu"), progress=False, log=lambda m: None)
        recs = {s: run_one(RunSpec("tiny-ap", "ce", "smoke", s), opts) for s in (0, 1)}
    finally:
        torch.set_num_threads(before)
    assert all(r["status"] == "ok" for r in recs.values())
    assert comparable(recs[0]) != comparable(recs[1])
    return recs


def cli_cmd(results: Path, plugins: list[str], *extra: str) -> list[str]:
    plugin_args = [a for p in plugins for a in ("--plugin", p)]
    return [sys.executable, "-m", "surrogate_bench", *plugin_args, "run", "--task", "tiny-ap", "--profile", "smoke",
            "--seeds", "0,1", "--device", "cpu", "--no-progress", "--results-dir", str(results),
            "--data-root", str(results.parent), *extra]


def ok_records(results: Path) -> dict[int, dict]:
    recs = [read_record(p) for p in results.glob("runs/**/*.json")]
    assert all(r is not None for r in recs)
    return {r["seed"]: r for r in recs if r["method"] == "ce"}  # type: ignore[index]


def test_jobs_2_equals_sequential(sequential, tmp_path, capsys) -> None:
    results = tmp_path / "results"
    done = subprocess.run(cli_cmd(results, [TINY], "--method", "ce", "--jobs", "2"),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2 and "Traceback" not in done.stderr
    recs = ok_records(results)
    assert set(recs) == {0, 1} and all(comparable(recs[s]) == comparable(sequential[s]) for s in (0, 1))

    code = cli.main(["--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile", "smoke",
                     "--seeds", "0,1", "--jobs", "2", "--device", "cpu", "--results-dir", str(results),
                     "--data-root", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 2 and all("reused" in ln for ln in out)  # finished keys start no worker


@pytest.mark.slow
def test_a_crashing_worker_loses_only_its_run(sequential, tmp_path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(cli_cmd(results, [TINY, EXIT], "--method", "exit-now,ce", "--jobs", "4"),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 1, done.stderr  # the exit-now runs failed
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and "Traceback" not in done.stderr
    assert sum("failed: worker process died (exit code 3) before writing the record" in ln for ln in lines) == 2
    recs = ok_records(results)
    assert set(recs) == {0, 1} and all(comparable(recs[s]) == comparable(sequential[s]) for s in (0, 1))
    failed = [read_record(p) for p in results.glob("runs/**/exit-now-*.json")]
    assert len(failed) == 2 and all(r and r["status"] == "failed" for r in failed)


def test_submitit_local_equals_sequential(sequential, tmp_path) -> None:
    pytest.importorskip("submitit")
    results = tmp_path / "results"
    done = subprocess.run(cli_cmd(results, [TINY], "--method", "ce", "--launcher", "submitit-local", "--jobs", "2"),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
    recs = ok_records(results)
    assert set(recs) == {0, 1} and all(comparable(recs[s]) == comparable(sequential[s]) for s in (0, 1))
    launches = list((results / "submitit").iterdir())
    assert len(launches) == 1 and launches[0].is_dir(), launches  # one fresh folder per launch
    logs = list(launches[0].glob("*_log.out"))
    assert len(logs) == 2, list(launches[0].iterdir())
    assert len(list(launches[0].glob("outcome-*.json"))) == 2  # each job's end, as JSON (never a result pickle)


def testworker_devices_round_robin_over_gpus(monkeypatch) -> None:
    import surrogate_bench.running.environment as environment

    chosen: list[torch.device] = []
    monkeypatch.setattr(environment, "resolve_device", lambda name: torch.device(name))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    got = [launch.worker_device("cuda", slot) for slot in range(5)]
    assert [d.index for d in got] == [0, 1, 2, 0, 1] and chosen == got
    assert launch.worker_device("cuda:2", 0).index == 2
    assert launch.worker_device("cpu", 1).type == "cpu"


def test_launch_config_validation() -> None:
    from surrogate_bench.plugins.errors import SuiteError

    for bad in (dict(jobs=0), dict(launcher="mpi"), dict(slurm_time_min=0), dict(gpus_per_job=-1),
                dict(device="cuda:x")):
        with pytest.raises(SuiteError):
            LaunchConfig(**bad).validate()
