"""Bad input: one clear line and exit code 2 for whole-command errors, a failed/skipped record for per-run faults."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surrogate_bench.store.records import read_record
from cli_helpers import run_cli

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TINY, NONFINITE = str(PLUGINS / "tiny_ap_task.py"), str(PLUGINS / "nonfinite_loss.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


def records(results: Path) -> list[dict]:
    paths = sorted(results.glob("runs/**/*.json"))
    recs = [read_record(p) for p in paths]
    assert all(r is not None for r in recs), "every record file is a complete, valid record"
    return recs  # type: ignore[return-value]


def base(results: Path, data: Path, *extra: str) -> list[str]:
    return ["run", "--task", "mnist-ap", "--method", "ce", "--profile", "smoke", "--no-progress", "--device", "cpu",
            "--results-dir", str(results), "--data-root", str(data), *extra]


WHOLE_COMMAND = {
    "unknown task": (["--task", "nope"], "unknown task 'nope'"),
    "unknown method": (["--method", "nope"], "unknown method 'nope'"),
    "seeds not int": (["--seeds", "x"], "bad --seeds 'x'"),
    "negative seed": (["--seeds", "-1"], "non-negative"),
    "unknown task param": (["--task-param", "nope=1"], "unknown task parameter 'nope'"),
    "param without =": (["--task-param", "nope"], "expected NAME=VALUE"),
    "bad task param value": (["--task-param", "positive_digit=abc"], "bad value 'abc'"),
    "bad method param value": (["--method-param", "label_smoothing=zz"], "bad value 'zz'"),
    "unknown profile": (["--profile", "nope"], "has no profile 'nope'"),
    "bad device": (["--device", "quantum"], "bad --device 'quantum'"),
    "missing data root": (["--data-root", "/nonexistent/data"], "/nonexistent/data does not exist"),
    "jobs zero": (["--jobs", "0"], "bad --jobs 0"),
    "jobs not int": (["--jobs", "x"], "invalid int value: 'x'"),
    "unknown launcher": (["--launcher", "nope"], "invalid choice: 'nope'"),
    "slurm time zero": (["--slurm-time", "0"], "bad --slurm-time 0"),
    "unknown flag": (["--bogus"], "unrecognized arguments: --bogus"),
}


@pytest.mark.parametrize("case", list(WHOLE_COMMAND))
def test_whole_command_error_is_one_line_exit_2(case, capsys, tmp_path) -> None:
    extra, expected = WHOLE_COMMAND[case]
    code, out, err = run_cli(capsys, *base(tmp_path / "results", tmp_path, *extra))  # the later flag wins
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err + out
    assert not list((tmp_path / "results").glob("runs/**/*.json"))


def test_more_whole_command_errors(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "--plugin", str(tmp_path / "missing.py"), "list")
    assert code == 2 and "plugin file not found" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "run", "--task", "mnist-ap")
    assert code == 2 and "pass --all, or both --task and --method" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, *base(tmp_path / "r", tmp_path, "--device", "cuda"))
        assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1
    if shutil.which("sbatch") is None:
        code, _, err = run_cli(capsys, "--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile",
                               "smoke", "--seeds", "0,1", "--launcher", "submitit", "--results-dir",
                               str(tmp_path / "r"), "--data-root", str(tmp_path))
        assert code == 2 and err.count("\n") == 1
        assert "sbatch is not on PATH" in err or "needs the submitit package" in err, err


def test_empty_data_root_gives_skipped_record_saying_where_to_put_files(capsys, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli(capsys, *base(tmp_path / "results", empty))
    assert code == 4, err  # nothing ran: exit 4 (run --help)
    assert "skipped: MNIST not found under" in out
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "skipped" and str(empty) in rec["reason"]
    assert "train-images-idx3-ubyte.gz" in rec["reason"] and "--download" in rec["reason"]


def _idx(dims: tuple[int, ...], body: int | None = None, magic: bytes = b"\x00\x00\x08") -> bytes:
    header = magic + bytes([len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + bytes(int(np.prod(dims)) if body is None else body)


MNIST_DAMAGE = {  # train-images file content -> what the failed record must say
    "truncated gzip": (gzip.compress(_idx((60000, 28, 28), 0) + np.random.default_rng(0).bytes(5000))[:1000],
                       "not a readable gzip file"),
    "wrong shape": (gzip.compress(_idx((100, 28, 28))), "expected shape (60000, 28, 28)"),
    "short body": (gzip.compress(_idx((60000, 28, 28), 1000)), "truncated or wrong file"),
    "bad header": (gzip.compress(_idx((60000, 28, 28), 10, magic=b"\x12\x34\x08")), "bad IDX header"),
}


@pytest.mark.parametrize("case", list(MNIST_DAMAGE))
def test_corrupt_mnist_gives_failed_record_naming_the_file(case, capsys, tmp_path) -> None:
    content, expected = MNIST_DAMAGE[case]
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").write_bytes(b"")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(content)
    code, out, err = run_cli(capsys, *base(tmp_path / "results", tmp_path / "data"))
    assert code == 1 and "failed: DataCorrupt" in out and "Traceback" not in out + err
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "failed"
    assert str(folder / "train-images-idx3-ubyte.gz") in rec["reason"] and expected in rec["reason"], rec["reason"]


class _Evil:
    """Unpickling this runs ``os.system`` — the restricted unpickler must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


@pytest.mark.parametrize("case", ["not a pickle", "truncated", "wrong format", "executes code"])
def test_bad_cifar_batch_gives_failed_record(case, capsys, tmp_path) -> None:
    pytest.importorskip("surrogate_bench.datasets.cifar")
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR_FILES[1:]:
        (folder / name).write_bytes(b"")
    marker = tmp_path / "pwned"
    good = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))})
    content, expected = {
        "not a pickle": (b"this is not a pickle at all", "not a complete CIFAR pickle"),
        "truncated": (good[: len(good) // 2], "not a complete CIFAR pickle"),
        "wrong format": (pickle.dumps({b"data": np.zeros((10, 7), np.float32)}), "expected a dict with b'data'"),
        "executes code": (pickle.dumps({b"data": _Evil(marker)}), "refused pickle global"),
    }[case]
    (folder / "data_batch_1").write_bytes(content)
    code, out, err = run_cli(capsys, "run", "--task", "cifar10-acc", "--method", "ce", "--profile", "smoke",
                             "--device", "cpu", "--no-progress", "--results-dir", str(tmp_path / "results"),
                             "--data-root", str(tmp_path / "data"))
    assert code == 1 and "failed: DataCorrupt" in out and "Traceback" not in out + err, (out, err)
    (rec,) = records(tmp_path / "results")
    assert str(folder / "data_batch_1") in rec["reason"] and expected in rec["reason"], rec["reason"]
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.parametrize("value,at_step,where", [("nan", 20, "epoch 2, step 4"), ("inf", 5, "epoch 1, step 5")])
def test_nonfinite_loss_fails_run_with_epoch_and_step_and_grid_goes_on(value, at_step, where, capsys,
                                                                       tmp_path) -> None:
    code, out, err = run_cli(capsys, "--plugin", TINY, "--plugin", NONFINITE, "run", "--task", "tiny-ap",
                             "--method", "nonfinite-at,ce", "--profile", "smoke", "--device", "cpu", "--no-progress",
                             "--method-param", f"at_step={at_step}", "--method-param", f"value={value}",
                             "--results-dir", str(tmp_path / "results"), "--data-root", str(tmp_path))
    assert code == 1, (out, err)
    lines = out.splitlines()
    assert len(lines) == 2 and f"failed: NonFiniteLoss: non-finite loss at {where}" in lines[0]
    assert " AP " in lines[1], "the grid goes on to the next run"
    by_method = {r["method"]: r for r in records(tmp_path / "results")}
    assert by_method["nonfinite-at"]["status"] == "failed" and where in by_method["nonfinite-at"]["reason"]
    assert by_method["ce"]["status"] == "ok"


def test_read_only_results_dir_chmod(capsys, tmp_path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        try:
            (results / "probe").write_text("x")
            (results / "probe").unlink()
            pytest.skip("running as a user that can write to a read-only directory (root)")
        except PermissionError:
            pass
        code, out, err = run_cli(capsys, *base(results, tmp_path))
        assert code == 2 and "is not writable" in err and err.count("\n") == 1 and "Traceback" not in err
    finally:
        results.chmod(0o755)


def test_unwritable_results_dir_simulated(capsys, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out, err = run_cli(capsys, *base(blocker / "results", tmp_path))
    assert code == 2 and f"results directory {blocker / 'results'} is not writable" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_record_write_failure_mid_grid_is_one_line(capsys, tmp_path, monkeypatch) -> None:
    import surrogate_bench.store.records as store

    def refuse(path, record):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store, "write_record", refuse)
    code, out, err = run_cli(capsys, "--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce", "--profile",
                             "smoke", "--device", "cpu", "--no-progress", "--results-dir", str(tmp_path / "results"),
                             "--data-root", str(tmp_path))
    assert code == 2 and "cannot write record" in err and "Permission denied" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_two_processes_same_key_give_one_record(tmp_path) -> None:
    """Started together: one trains, the other waits on the key's lock and reuses the finished record."""
    cmd = [sys.executable, "-m", "surrogate_bench", "--plugin", TINY, "run", "--task", "tiny-ap", "--method", "ce",
           "--profile", "smoke", "--task-param", "step_delay_ms=10", "--device", "cpu", "--no-progress",
           "--results-dir", str(tmp_path / "results"), "--data-root", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("Traceback" not in err and out.count("\n") == 1 for out, err in outs), outs
    assert sum("reused" in out for out, _ in outs) == 1, outs
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "ok"
    leftovers = [p.name for p in (tmp_path / "results").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_real_subprocess_error_is_one_line(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "surrogate_bench", "run", "--task", "mnist-ap", "--method", "ce",
                           "--seeds", "x", "--results-dir", str(tmp_path)], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: bad --seeds 'x': expected integers like 0,1,2\n"


def test_divergence_hidden_by_a_finite_loss_fails_the_run(capsys, tmp_path) -> None:
    hidden = str(PLUGINS / "hidden_divergence.py")
    code, out, err = run_cli(capsys, "--plugin", TINY, "--plugin", hidden, "run", "--task", "tiny-ap", "--method",
                             "hidden-divergence,ce", "--profile", "smoke", "--device", "cpu", "--no-progress",
                             "--results-dir", str(tmp_path / "results"), "--data-root", str(tmp_path))
    assert code == 1, (out, err)
    by_method = {r["method"]: r for r in records(tmp_path / "results")}
    assert by_method["hidden-divergence"]["status"] == "failed"
    assert "non-finite model parameters after epoch 1" in by_method["hidden-divergence"]["reason"]
    assert by_method["ce"]["status"] == "ok"
