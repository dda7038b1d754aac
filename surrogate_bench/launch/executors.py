"""Execute run specs: in this process, in N local worker processes, or as Slurm jobs via submitit.

Every launcher yields one record per spec as runs finish. Workers re-load the ``--plugin`` files,
resolve their own device and call :func:`surrogate_bench.running.runner.run_one`, so the per-key file
lock, checkpoints and atomic records behave exactly as in a sequential run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is only needed by --launcher submitit / submitit-local
    Checkpointable = object  # type: ignore[assignment,misc]

from ..plugins.errors import SuiteError
from ..running.options import DeadlineReached, RunOptions
from ..running.runner import base_record, run_one
from ..running.spec import Resolved, RunSpec, resolve
from .signals import children_ignore_sigint, die_with_parent
from ..store.records import os_error_line, read_record, write_record

LAUNCHERS = ("local", "submitit", "submitit-local")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class LaunchConfig:
    """How to execute a grid: which launcher, how many at once, and the Slurm job resources."""

    launcher: str = "local"  # local (sequential or --jobs processes) | submitit (Slurm) | submitit-local
    jobs: int = 1  # local: worker processes; submitit-local: jobs at once; Slurm: array parallelism (>1)
    device: str = "auto"  # resolved inside each worker (a Slurm login node may have no GPU)
    plugins: tuple[str, ...] = ()
    slurm_partition: str | None = None
    slurm_time_min: int = 180
    gpus_per_job: int | None = None  # None: 1 when the device may be CUDA (Slurm) / CUDA is present (local)
    submitit_dir: Path | None = None  # default RESULTS_DIR/submitit
    poll_s: float = 0.5

    def validate(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise SuiteError(f"bad --launcher {self.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
        if self.jobs < 1:
            raise SuiteError(f"bad --jobs {self.jobs}: expected a positive integer")
        if self.slurm_time_min < 1:
            raise SuiteError(f"bad --slurm-time {self.slurm_time_min}: expected minutes >= 1")
        if self.gpus_per_job is not None and self.gpus_per_job < 0:
            raise SuiteError(f"bad --gpus-per-job {self.gpus_per_job}: expected an integer >= 0")
        if not DEVICE_PATTERN.match(self.device or "auto"):
            raise SuiteError(f"bad --device {self.device!r}: expected cpu, cuda or cuda:N")


def log_stderr(message: str) -> None:
    """The run log: one line to stderr (a module-level function, so RunOptions pickles)."""
    print(message, file=sys.stderr, flush=True)


def load_plugins(paths: Sequence[str | os.PathLike]) -> None:
    """Load ``--plugin`` files once per process (a second load of the same file is a no-op)."""
    from ..plugins.registry import load_plugin, registry

    reg = registry()
    reg.ensure_loaded()
    for path in paths:
        loaded = {cls.source for table in reg.classes.values() for cls in table.values()}
        if str(Path(path).resolve()) not in loaded:
            load_plugin(path)


def execute(specs: Sequence[RunSpec], opts: RunOptions, cfg: LaunchConfig) -> Iterator[dict[str, Any]]:
    """Run every spec with the configured launcher; yield each record as its run finishes."""
    cfg.validate()
    if cfg.launcher == "local" and (cfg.jobs == 1 or len(specs) <= 1):
        for i, spec in enumerate(specs):
            if _past(opts):
                raise DeadlineReached(f"deadline reached with {len(specs) - i} run(s) not started")
            yield run_one(spec, opts)
        return
    opts = replace(opts, progress=False, log=log_stderr)
    todo: list[Resolved] = []
    for spec in dict.fromkeys(specs):  # a key twice in one grid runs once
        r = resolve(spec, replace(opts, download=False))
        existing = None if opts.force else read_record(r.path, r.key, opts.log, spec.expected_fields())
        if existing and existing["status"] == "ok":
            yield {**existing, "reused": True}
        else:
            todo.append(r)
    if not todo:
        return
    if cfg.launcher == "local":
        yield from _run_processes(todo, opts, cfg)
    else:
        yield from _run_submitit(todo, opts, cfg)


def _past(opts: RunOptions) -> bool:
    return opts.deadline is not None and time.time() >= opts.deadline


# -- worker side --------------------------------------------------------------------------------
def _process_main(conn: Any, spec: RunSpec, opts: RunOptions, plugins: tuple[str, ...], device: str, slot: int,
                  threads: int, parent_pid: int | None = None) -> None:
    """One run in a spawned process: send back ("record", rec) or ("error", one line) through ``conn``.
    It dies with the parent (SIGTERM when the parent exits) and leaves Ctrl-C to the parent."""
    die_with_parent(parent_pid)
    try:
        torch.set_num_threads(threads)
        load_plugins(plugins)
        conn.send(("record", run_one(spec, replace(opts, device=worker_device(device, slot)))))
    except SuiteError as exc:
        conn.send(("error", str(exc)))
    except DeadlineReached as exc:
        conn.send(("deadline", str(exc)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the parent closed the pipe
        with contextlib.suppress(OSError):
            conn.send(("lost", f"worker process failed: {os_error_line(exc)}"))
    except Exception as exc:  # outside run_one's own guard (e.g. a plugin that breaks on import here)
        conn.send(("lost", f"worker process failed: {type(exc).__name__}: {exc}".splitlines()[0]))
    finally:
        conn.close()


def worker_device(name: str, index: int = 0) -> torch.device:
    from ..running.environment import resolve_device

    dev = resolve_device(name)
    if dev.type == "cuda":
        if dev.index is None and torch.cuda.device_count() > 1:
            dev = torch.device("cuda", index % torch.cuda.device_count())
        elif dev.index is None:
            dev = torch.device("cuda", 0)
        torch.cuda.set_device(dev)
    return dev


def run_in_worker(spec: RunSpec, opts: RunOptions, plugins: tuple[str, ...], device: str,
                  threads: int | None = None) -> dict[str, Any]:
    """Entry point of a submitit job: load plugins, pick the device on the node, run one spec."""
    if threads:
        torch.set_num_threads(threads)
    load_plugins(plugins)
    return run_one(spec, replace(opts, device=worker_device(device)))


class SubmititRun(Checkpointable):
    """A submitit job of one spec; on a Slurm time limit or preemption it requeues itself and resumes from its
    last epoch checkpoint (submitit calls ``checkpoint``, which resubmits the same arguments)."""

    def __call__(self, spec: RunSpec, opts: RunOptions, plugins: tuple[str, ...], device: str,
                 threads: int | None = None) -> dict[str, Any]:
        return run_in_worker(spec, opts, plugins, device, threads)


# -- parent side --------------------------------------------------------------------------------
def _threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` concurrent runs here: this process's share (no oversubscription)."""
    return max(1, torch.get_num_threads() // jobs)


def _lost_run(r: Resolved, opts: RunOptions, reason: str, since: float = 0.0) -> dict[str, Any]:
    """The record of a run whose worker died: its own record if it wrote one (after ``since``), else a failed one."""
    spec, path = r.spec, r.path
    existing = read_record(path, r.key, expect=spec.expected_fields())
    if existing is not None and path.stat().st_mtime >= since:
        return existing
    record = {**base_record(spec, r.key, r.task, r.method, opts, r.fp), "status": "failed", "reason": reason}
    try:
        write_record(path, record)
    except OSError as exc:
        raise SuiteError(f"cannot write record {path}: {os_error_line(exc)}") from None
    return record


def _run_processes(specs: list[Resolved], opts: RunOptions, cfg: LaunchConfig) -> Iterator[dict[str, Any]]:
    """At most ``jobs`` runs at once, each in its own spawned process (a crash loses only that run)."""
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    slots = min(cfg.jobs, len(specs))
    threads = _threads_per_job(slots)
    pending, free = list(specs), list(range(slots))
    running: dict[Any, tuple[Any, Any, Resolved, int, float]] = {}  # sentinel -> (process, conn, run, slot, t0)
    messages: dict[Any, Any] = {}  # sentinel -> what the worker sent (read as it comes: a pipe holds only ~64 KiB)
    stopped = 0  # runs that checkpointed and stopped at the deadline
    try:
        while (pending and not _past(opts)) or running:
            while pending and free and not _past(opts):
                r, slot = pending.pop(0), free.pop(0)
                spec = r.spec
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_process_main, name=f"surrogate_bench-{spec.task}-{spec.method}-s{spec.seed}",
                                   args=(send, spec, opts, tuple(cfg.plugins), cfg.device, slot, threads,
                                         os.getpid()))
                with children_ignore_sigint():
                    proc.start()
                send.close()
                running[proc.sentinel] = (proc, recv, r, slot, time.time())
            conns = {entry[1]: sentinel for sentinel, entry in running.items() if sentinel not in messages}
            ready = wait([*running, *conns])
            for conn in (c for c in ready if c in conns):
                try:
                    messages[conns[conn]] = conn.recv()
                except (EOFError, OSError):
                    messages[conns[conn]] = None
            for sentinel in (c for c in ready if c in running):
                proc, recv, r, slot, t0 = running.pop(sentinel)
                message = messages.pop(sentinel, None)
                if message is None and recv.poll():
                    try:
                        message = recv.recv()
                    except (EOFError, OSError):
                        pass
                proc.join()
                recv.close()
                free.append(slot)
                if message and message[0] == "record":
                    yield message[1]
                elif message and message[0] == "error":
                    raise SuiteError(message[1])
                elif message and message[0] == "deadline":
                    stopped += 1
                elif message and message[0] == "lost":
                    yield _lost_run(r, opts, message[1], since=t0)
                else:
                    how = f"signal {-proc.exitcode}" if (proc.exitcode or 0) < 0 else f"exit code {proc.exitcode}"
                    yield _lost_run(r, opts, f"worker process died ({how}) before writing the record", since=t0)
        if stopped or pending:
            raise DeadlineReached(f"deadline reached: {stopped} run(s) checkpointed, {len(pending)} not started")
    finally:  # interrupted or terminated: stop every worker and wait for it (a killed run resumes later)
        for proc, *_ in running.values():
            proc.terminate()
        for proc, recv, *_ in running.values():
            proc.join(timeout=10)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
            recv.close()


def _submitit_executor(cfg: LaunchConfig, opts: RunOptions):
    try:
        import submitit
    except ImportError:
        raise SuiteError(f"--launcher {cfg.launcher} needs the submitit package: pip install submitit") from None

    folder = Path(cfg.submitit_dir or Path(opts.results_dir) / "submitit")
    if cfg.launcher == "submitit":
        if shutil.which("sbatch") is None:
            raise SuiteError("--launcher submitit needs Slurm, but sbatch is not on PATH; "
                             "use --launcher submitit-local to run the jobs on this machine")
        gpus = cfg.gpus_per_job if cfg.gpus_per_job is not None else (0 if cfg.device == "cpu" else 1)
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = {"timeout_min": cfg.slurm_time_min, "gpus_per_node": gpus,
                                  "tasks_per_node": 1, "name": "surrogate_bench"}
        if cfg.slurm_partition:
            params["slurm_partition"] = cfg.slurm_partition
        if cfg.jobs > 1:
            params["slurm_array_parallelism"] = cfg.jobs
        executor.update_parameters(**params)
        return executor, gpus
    if cfg.slurm_partition:
        raise SuiteError("--slurm-partition only applies to --launcher submitit")
    cuda_here = torch.cuda.is_available() and cfg.device != "cpu"
    gpus = cfg.gpus_per_job if cfg.gpus_per_job is not None else (1 if cuda_here else 0)
    if gpus > torch.cuda.device_count():
        raise SuiteError(f"--gpus-per-job {gpus}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=cfg.slurm_time_min, gpus_per_node=gpus)
    return executor, gpus


def _run_submitit(specs: list[Resolved], opts: RunOptions, cfg: LaunchConfig) -> Iterator[dict[str, Any]]:
    executor, gpus = _submitit_executor(cfg, opts)
    local = cfg.launcher == "submitit-local"  # local jobs share this machine's cores; Slurm ones have their own
    threads = _threads_per_job(min(cfg.jobs, len(specs))) if local else None
    args = (tuple(str(Path(p).resolve()) for p in cfg.plugins), cfg.device, threads)
    pending = list(specs)
    running: dict[Any, Resolved] = {}
    if cfg.launcher == "submitit":  # one Slurm array; Slurm queues it
        with executor.batch():
            jobs = [executor.submit(SubmititRun(), r.spec, opts, *args) for r in pending]
        running = dict(zip(jobs, pending))
        pending = []
    n_gpu, submitted = torch.cuda.device_count(), 0
    try:
        while pending or running:
            while pending and len(running) < cfg.jobs:  # submitit-local: at most --jobs at once
                if gpus:  # spread jobs over the GPUs, round-robin
                    first = (submitted * gpus) % n_gpu
                    executor.update_parameters(visible_gpus=[(first + k) % n_gpu for k in range(gpus)])
                r = pending.pop(0)
                running[executor.submit(SubmititRun(), r.spec, opts, *args)] = r
                submitted += 1
            done = [job for job in running if job.done()]
            if not done:
                time.sleep(cfg.poll_s)
            for job in done:
                r = running.pop(job)
                try:
                    yield job.result()
                except Exception as exc:  # the job died or raised: keep the reason and the log path
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    yield _lost_run(r, opts, f"submitit job {job.job_id} failed: {first} "
                                                f"(log: {job.paths.stderr})")
    finally:
        for job in running:
            job.cancel(check=False)
