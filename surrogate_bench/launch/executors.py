"""Execute run specs: in this process, in N local worker processes, or as Slurm jobs via submitit.

Every launcher yields one record per spec as runs finish. Workers re-load the ``--plugin`` files,
resolve their own device and call :func:`surrogate_bench.running.runner.run_one`, so the per-key file
lock, checkpoints and atomic records behave exactly as in a sequential run.

Nothing an executor hands back is believed unchecked: a record sent by a worker must be a valid record of
the key, task, method, profile and seed asked for; a submitit job's outcome is the run's *own JSON record*
(written since the job was submitted, validated the same way), never ``job.result()`` -- submitit's result
pickles are never unpickled, and every launch uses a fresh submitit folder of its own
(``<folder>/<time>-<pid>-<random>/``), so no file left by an earlier job (job ids are process ids, reused)
is ever read. A run that ends without its record gets a failed one with the reason (and the job's log),
written by the parent only where no ok record is: only a run itself replaces a good record.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
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
from ..store.records import record_lock, atomic_write_bytes, os_error_line, read_record, record_problem, write_record

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
    batch_runs: int = 1  # >1: compatible runs trained K at a time as one batched model (batched/executor.py)

    def validate(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise SuiteError(f"bad --launcher {self.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
        if self.jobs < 1:
            raise SuiteError(f"bad --jobs {self.jobs}: expected a positive integer")
        if self.batch_runs < 1 or (self.batch_runs > 1 and (self.launcher != "local" or self.jobs > 1)):
            raise SuiteError(f"bad --batch-runs {self.batch_runs}: expected a positive integer; above 1 it needs "
                             "--launcher local and --jobs 1 (groups run in this process)")
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
    specs = unique_specs(specs, opts.log)
    if cfg.batch_runs > 1:
        from ..batched.executor import run_groups

        yield from run_groups(specs, opts, cfg.batch_runs)
        return
    if cfg.launcher == "local" and (cfg.jobs == 1 or len(specs) <= 1):
        for i, spec in enumerate(specs):
            if _past(opts):
                raise DeadlineReached(f"deadline reached with {len(specs) - i} run(s) not started")
            yield run_one(spec, opts)
        return
    # workers share stderr: log lines ("log" mode) stay readable, bars would interleave
    opts = replace(opts, progress="log" if opts.progress == "log" else False, log=log_stderr)
    todo: list[Resolved] = []
    keys: set[str] = set()
    for spec in specs:
        r = resolve(spec, replace(opts, download=False))
        if r.key in keys:  # two spellings of one run (e.g. a parameter given as 1 and 1.0): it runs once
            continue
        keys.add(r.key)
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


def unique_specs(specs: Sequence[RunSpec], log: Any = log_stderr) -> list[RunSpec]:
    """``specs`` with repeats dropped (first kept, order kept); one line on ``log`` says what was dropped."""
    unique = list(dict.fromkeys(specs))
    if len(unique) < len(specs):
        repeated = list(dict.fromkeys(s for i, s in enumerate(specs) if s in specs[:i]))
        names = ", ".join(s.label() for s in repeated[:3]) + (", ..." if len(repeated) > 3 else "")
        log(f"note: {len(specs) - len(unique)} repeated run(s) in the list ({names}); each runs once")
    return unique


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
    last epoch checkpoint (submitit calls ``checkpoint``, which resubmits the same arguments).

    Its outcome reaches the parent as files the suite writes, never as submitit's result pickle: the run's
    own JSON record, and ``outcome`` (a JSON file in this launch's folder) saying how the job ended: its
    record (reused or not), a whole-command error or a stop at the deadline. ``local``: a submitit-local job, which dies with its controller process (the parent
    stops a job by killing that controller) and leaves Ctrl-C to the parent."""

    def __init__(self, outcome: str | None = None, local: bool = False) -> None:
        self.outcome, self.local = outcome, local

    def __call__(self, spec: RunSpec, opts: RunOptions, plugins: tuple[str, ...], device: str,
                 threads: int | None = None) -> str:
        if self.local:
            controller = os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")
            die_with_parent(int(controller) if controller.isdigit() else None)
        try:
            rec = run_in_worker(spec, opts, plugins, device, threads)
        except SuiteError as exc:
            self._tell("error", str(exc))
            return "error"
        except DeadlineReached as exc:
            self._tell("deadline", str(exc))
            return "deadline"
        self._tell("record", "reused" if rec.get("reused") else "")  # the record is the JSON file of the run
        return str(rec.get("status"))

    def _tell(self, outcome: str, message: str) -> None:
        if self.outcome:
            atomic_write_bytes(Path(self.outcome), json.dumps({"outcome": outcome, "message": message}).encode())


# -- parent side --------------------------------------------------------------------------------
def _threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` concurrent runs here: this process's share (no oversubscription)."""
    return max(1, torch.get_num_threads() // jobs)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of ``path``, None when absent: a record written since has another stamp
    (records are written by rename, so each write is a new inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def fresh_record(r: Resolved, before: tuple[int, int, int] | None) -> dict[str, Any] | None:
    """The run's own record when one was written since ``before`` was stamped and it is a valid record of
    this run's key, task, method, profile and seed; else None."""
    stamp = file_stamp(r.path)
    if stamp is None or stamp == before:
        return None
    return read_record(r.path, r.key, expect=r.spec.expected_fields())


def _lost_run(r: Resolved, opts: RunOptions, reason: str, before: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """The record of a run whose worker or job ended without handing back its record: the run's own record if
    it wrote one since ``before``; else a failed record with ``reason``. Under the record's lock (a concurrent
    run of the key finishes first). The parent writes that failed record only where no ok record of this run
    is: a good record (e.g. under ``--force``) is kept on disk and the failure is only reported."""
    spec, path = r.spec, r.path
    with record_lock(path):
        own = fresh_record(r, before)
        if own is not None:
            return own
        record = {**base_record(spec, r.key, r.task, r.method, opts, r.fp), "status": "failed", "reason": reason}
        existing = read_record(path, r.key, expect=spec.expected_fields())
        if existing is not None and existing["status"] == "ok":
            record["reason"] = f"{reason}; the earlier ok record {path} is kept"
            return record
        try:
            write_record(path, record)
        except OSError as exc:
            raise SuiteError(f"cannot write record {path}: {os_error_line(exc)}") from None
    return record


def _checked(message: Any, r: Resolved) -> tuple[str, Any]:
    """A worker's message, its record validated against what was asked (else a lost run)."""
    if not (isinstance(message, tuple) and len(message) == 2 and isinstance(message[0], str)):
        return "died", None
    kind, body = message
    if kind == "record":
        problem = record_problem(body, r.key, r.spec.expected_fields())
        if problem is not None:
            return "lost", f"worker process sent a record that is not this run's: {problem}"
    elif not isinstance(body, str):
        return "lost", f"worker process sent a malformed {kind!r} message"
    return kind, body


def _run_processes(specs: list[Resolved], opts: RunOptions, cfg: LaunchConfig) -> Iterator[dict[str, Any]]:
    """At most ``jobs`` runs at once, each in its own spawned process (a crash loses only that run)."""
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    slots = min(cfg.jobs, len(specs))
    threads = _threads_per_job(slots)
    pending, free = list(specs), list(range(slots))
    running: dict[Any, tuple[Any, Any, Resolved, int, Any]] = {}  # sentinel -> (process, conn, run, slot, stamp)
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
                running[proc.sentinel] = (proc, recv, r, slot, file_stamp(r.path))
            conns = {entry[1]: sentinel for sentinel, entry in running.items() if sentinel not in messages}
            ready = wait([*running, *conns])
            for conn in (c for c in ready if c in conns):
                try:
                    messages[conns[conn]] = conn.recv()
                except (EOFError, OSError):
                    messages[conns[conn]] = None
            for sentinel in (c for c in ready if c in running):
                proc, recv, r, slot, before = running.pop(sentinel)
                message = messages.pop(sentinel, None)
                if message is None and recv.poll():
                    try:
                        message = recv.recv()
                    except (EOFError, OSError):
                        pass
                proc.join()
                recv.close()
                free.append(slot)
                kind, body = _checked(message, r) if message is not None else ("died", None)
                if kind == "record":
                    yield body
                elif kind == "error":
                    raise SuiteError(body)
                elif kind == "deadline":
                    stopped += 1
                elif kind == "lost":
                    yield _lost_run(r, opts, body, before)
                else:
                    how = f"signal {-proc.exitcode}" if (proc.exitcode or 0) < 0 else f"exit code {proc.exitcode}"
                    yield _lost_run(r, opts, f"worker process died ({how}) before writing the record", before)
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


def launch_folder(base: Path) -> Path:
    """A fresh folder for one launch's submitit files, ``<base>/<time>-<pid>-<random>``: nothing an earlier
    launch left (a result pickle of a reused job id, a submitted pickle) can be found by this one's jobs."""
    folder = Path(base) / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise SuiteError(f"cannot make the submitit folder {folder}: {os_error_line(exc)}") from None
    return folder


def _submitit_executor(cfg: LaunchConfig, opts: RunOptions, folder: Path):
    try:
        import submitit
    except ImportError:
        raise SuiteError(f"--launcher {cfg.launcher} needs the submitit package: pip install submitit") from None

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


def _read_outcome(path: Path) -> tuple[str, str] | None:
    """What a job said about its end (``record``, ``error`` or ``deadline`` and a message), from the JSON file
    this launch gave it; None when it wrote none or the file is not such an object."""
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (isinstance(out, dict) and out.get("outcome") in ("record", "error", "deadline")
            and isinstance(out.get("message"), str)):
        return out["outcome"], out["message"]
    return None


def _last_log_line(path: Path) -> str:
    """The last line of a job's stderr log that names an error (for the failed record's reason), or ''."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    hits = [ln.strip() for ln in lines if re.match(r"^\w*(Error|Exception|Interrupt)\b.*:", ln.strip())]
    return hits[-1][:300] if hits else ""


def _stop_local_job(job: Any) -> None:
    """Stop a submitit-local job without submitit's noise: kill its controller (which ignores Ctrl-C and would
    print a traceback on the SIGINT submitit's ``cancel`` sends); the run dies with it (see SubmititRun)."""
    process = getattr(job, "_process", None)
    if process is None:
        return
    with contextlib.suppress(OSError):
        process.send_signal(signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=10)


def _run_submitit(specs: list[Resolved], opts: RunOptions, cfg: LaunchConfig) -> Iterator[dict[str, Any]]:
    folder = launch_folder(Path(cfg.submitit_dir or Path(opts.results_dir) / "submitit"))
    executor, gpus = _submitit_executor(cfg, opts, folder)
    local = cfg.launcher == "submitit-local"  # local jobs share this machine's cores; Slurm ones have their own
    threads = _threads_per_job(min(cfg.jobs, len(specs))) if local else None
    args = (tuple(str(Path(p).resolve()) for p in cfg.plugins), cfg.device, threads)
    pending = list(enumerate(specs))
    running: dict[Any, tuple[Resolved, Any, Path]] = {}  # job -> (run, record stamp at submission, outcome file)

    def job_of(i: int, r: Resolved) -> tuple[SubmititRun, tuple[Resolved, Any, Path]]:
        outcome = folder / f"outcome-{i}-{r.key[:10]}.json"
        return SubmititRun(str(outcome), local), (r, file_stamp(r.path), outcome)

    if cfg.launcher == "submitit":  # one Slurm array; Slurm queues it
        made = [job_of(i, r) for i, r in pending]
        with executor.batch():
            jobs = [executor.submit(fn, entry[0].spec, opts, *args) for fn, entry in made]
        running = dict(zip(jobs, (entry for _, entry in made)))
        pending = []
    n_gpu, submitted, stopped = torch.cuda.device_count(), 0, 0
    try:
        while (pending and not _past(opts)) or running:
            while pending and len(running) < cfg.jobs and not _past(opts):  # submitit-local: at most --jobs at once
                if gpus:  # spread jobs over the GPUs, round-robin
                    first = (submitted * gpus) % n_gpu
                    executor.update_parameters(visible_gpus=[(first + k) % n_gpu for k in range(gpus)])
                fn, entry = job_of(*pending.pop(0))
                with children_ignore_sigint():  # a terminal's Ctrl-C reaches the whole group: the parent decides
                    running[executor.submit(fn, entry[0].spec, opts, *args)] = entry
                submitted += 1
            done = [job for job in running if job.done()]
            if not done:
                time.sleep(cfg.poll_s)
            for job in done:  # never job.result(): that unpickles a file; the record is the run's own JSON
                r, before, outcome = running.pop(job)
                told = _read_outcome(outcome)
                if told and told[0] == "error":
                    raise SuiteError(told[1])
                if told and told[0] == "deadline":
                    stopped += 1
                    continue
                own = fresh_record(r, before)
                if own is not None:  # a concurrent run of the key may have written it: the job then reused it
                    yield {**own, "reused": True} if told == ("record", "reused") else own
                    continue
                last = _last_log_line(job.paths.stderr)
                yield _lost_run(r, opts, f"submitit job {job.job_id} ended without writing its record"
                                         f"{f' ({last})' if last else ''} (log: {job.paths.stderr})", before)
        if stopped or pending:
            raise DeadlineReached(f"deadline reached: {stopped} run(s) checkpointed, {len(pending)} not started")
    finally:
        for job in running:
            if local:
                _stop_local_job(job)
            else:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
