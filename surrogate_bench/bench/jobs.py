"""Aggregate training throughput of N concurrent runs on one device (``bench --jobs 1,2,4,8``).

A ResNet-20 or an MLP leaves most of an H100 idle; ``run --jobs N`` puts N worker processes on the
same GPU. This measures what that buys: N spawned processes each build the task's model and step
(the runner's :class:`~surrogate_bench.running.step_capture.StepCapture`), warm up, meet at a barrier,
then time the same number of steps. Aggregate samples/s = all samples / (last end - first start).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from ..plugins.errors import SuiteError


def _worker(out: Any, barrier: Any, slot: int, task_name: str, method_name: str, profile: str, device: str,
            data_root: str, steps: int, warmup: int, threads: int, step_capture: str | None,
            plugins: tuple[str, ...]) -> None:
    """One concurrent job: puts ("ok", slot, t0, t1, samples, step kind) or ("error", slot, one line) on ``out``."""
    try:
        torch.set_num_threads(threads)
        from ..plugins.registry import get_task, method_for
        from .steps import batch_for
        from ..launch.executors import worker_device, load_plugins
        from ..running.step import make_optimizer
        from ..running.step_capture import StepCapture

        load_plugins(plugins)
        dev = worker_device(device, slot)
        task = get_task(task_name)
        method = method_for(task, method_name)
        reason = method.supports(task) or ("learned: needs its prepared artifact" if method.learned else None)
        if reason:
            raise SuiteError(f"{method_name} on {task_name}: {reason}")
        prof = task.profile(profile)
        x, y, _ = batch_for(task, Path(data_root), prof.batch_size, dev)
        torch.manual_seed(slot)
        gen = torch.Generator(device=dev).manual_seed(slot)
        model = task.build_model().to(dev)
        if dev.type == "cuda" and task.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        opt = make_optimizer(prof, model.parameters())
        step = StepCapture(task, model, method.make_loss(task), opt, gen, dev, prof.amp, step_capture,
                           log=lambda m: None)
        for _ in range(warmup):
            step(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        barrier.wait(timeout=600)
        t0 = time.monotonic()
        for _ in range(steps):
            step(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.put(("ok", slot, t0, time.monotonic(), steps * int(x.shape[0]), step.describe()))
    except Exception as exc:  # report, and release the others waiting at the barrier
        barrier.abort()
        text = str(exc).strip().splitlines()
        out.put(("error", slot, f"{type(exc).__name__}: {text[0] if text else ''}"))


def bench_jobs(task: str, method: str, jobs: list[int], device: str, data_root: Path, profile: str = "paper",
               steps: int = 50, warmup: int = 10, step_capture: str | None = None,
               plugins: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per N in ``jobs``: aggregate and per-job samples/s of N concurrent processes on ``device``."""
    if not jobs or any(n < 1 for n in jobs):
        raise SuiteError(f"bad --jobs {jobs}: expected positive integers like 1,2,4,8")
    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    for n in jobs:
        out, barrier = ctx.Queue(), ctx.Barrier(n)
        threads = max(1, torch.get_num_threads() // n)
        procs = [ctx.Process(target=_worker, args=(out, barrier, k, task, method, profile, device, str(data_root),
                                                    steps, warmup, threads, step_capture, plugins))
                 for k in range(n)]
        for p in procs:
            p.start()
        results = []
        try:
            for _ in range(n):
                results.append(out.get(timeout=1800))
        except queue_mod.Empty:
            raise SuiteError(f"bench --jobs {n}: a worker gave no result within 30 minutes") from None
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.terminate()
                    p.join()
        errors = sorted({r[2] for r in results if r[0] == "error" and "BrokenBarrier" not in r[2]})
        if errors or any(r[0] != "ok" for r in results):
            raise SuiteError(f"bench --jobs {n} ({task}/{method}): {errors[0] if errors else 'a worker failed'}")
        start, end = min(r[2] for r in results), max(r[3] for r in results)
        samples = sum(r[4] for r in results)
        per_job = [r[4] / (r[3] - r[2]) for r in results]
        rows.append({"task": task, "method": method, "device": device, "profile": profile, "jobs": n,
                     "batch": results[0][4] // steps, "steps_per_job": steps, "step_capture": results[0][5],
                     "aggregate_samples_per_s": samples / (end - start),
                     "per_job_samples_per_s": sum(per_job) / n, "wall_s": end - start})
    base = rows[0]["aggregate_samples_per_s"] if rows and rows[0]["jobs"] == 1 else None
    for r in rows:
        r["speedup_vs_1"] = r["aggregate_samples_per_s"] / base if base else None
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of bench --jobs rows."""
    head = ["task", "method", "device", "step", "jobs", "batch", "aggregate samples/s", "per job samples/s",
            "x vs 1 job"]
    body = [[r["task"], r["method"], r["device"], r["step_capture"], r["jobs"], r["batch"],
             f"{r['aggregate_samples_per_s']:.0f}", f"{r['per_job_samples_per_s']:.0f}",
             f"{r['speedup_vs_1']:.2f}" if r["speedup_vs_1"] else ""] for r in rows]
    return tabulate(body, head, tablefmt="github")
