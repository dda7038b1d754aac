"""Throughput of K runs trained as one batched model against the same K runs trained separately.

``bench --batch-runs 1,2,4,8`` times, for each K and side by side in one invocation: *separate*, the K runs
spread over ``processes`` spawned processes of ``threads`` threads each, every process training its runs one
after the other with the runner's step (:class:`~surrogate_bench.running.step_capture.StepCapture`); *batched*, the same processes
each training its share of the K runs as one group (:class:`~surrogate_bench.batched.executor.GroupStep`, the executor's default
forward: a per-run loop over the stacked tensors on CPU, vmap on CUDA); *batched-vmap*, the same with the
vmapped forward. Every run does ``steps`` steps on real
training batches (its own random indices), after ``warmup`` steps. Aggregate samples/s = all samples / (last
end - first start), the processes having met at a barrier.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate
from torch import Tensor

from ..plugins.errors import SuiteError

MODES = ("separate", "batched", "batched-vmap")


@dataclass
class _BenchMember:
    """What :class:`~.batched.GroupLoss` needs of a run."""

    loss_fn: Any
    stream: Tensor
    vmap_key: str | None
    cuda_stream: Tensor | None = None


def _worker(out: Any, barrier: Any, slot: int, mode: str, seeds: list[int], task_name: str, method_name: str,
            profile: str, device: str, data_root: str, steps: int, warmup: int, threads: int) -> None:
    """One process: puts ("ok", slot, t0, t1, samples) or ("error", slot, one line) on ``out``."""
    try:
        torch.set_num_threads(threads)
        from ..plugins.registry import get_task, method_for
        from ..launch.executors import worker_device
        from ..batched.executor import VMAPPED_METHODS, GroupLoss, GroupStep
        from ..batched.model import StackedModels
        from ..running.data_cache import load_task_data
        from ..running.step import make_optimizer
        from ..running.step_capture import StepCapture
        from .steps import batch_for

        dev = worker_device(device, slot)
        task = get_task(task_name)
        prof = task.profile(profile)
        try:
            train = load_task_data(task, Path(data_root), False).train.to(dev)
            x_all, y_all = train.x, train.y
        except Exception:
            x_all, y_all, _ = batch_for(task, Path(data_root), prof.batch_size * 64, dev)
        bs, n = prof.batch_size, int(x_all.shape[0])
        methods, models, gens = [], [], []
        for seed in seeds:
            torch.manual_seed(seed)
            method = method_for(task, method_name)
            if method.supports(task) or method.learned:
                raise SuiteError(f"bench --batch-runs: {method_name} on {task_name} needs no preparation")
            models.append(task.build_model().to(dev).train())
            methods.append(method)
            gens.append(torch.Generator(device=dev).manual_seed(seed))
        index = [torch.randint(0, n, (steps + warmup, bs), generator=g, device=dev) for g in gens]
        if mode == "separate":
            def work(first: int, count: int) -> None:
                for k, (model, method) in enumerate(zip(models, methods)):
                    opt = make_optimizer(prof, model.parameters())
                    step = StepCapture(task, model, method.make_loss(task), opt, gens[k], dev, prof.amp, None,
                                       log=lambda m: None)
                    for i in range(first, first + count):
                        step(x_all[index[k][i]], y_all[index[k][i]])
        else:
            stacked = StackedModels(models, "vmap" if mode == "batched-vmap" else "auto")
            opt = make_optimizer(prof, stacked.parameters())
            key = repr(methods[0].config()) if method_name in VMAPPED_METHODS else None
            members = [_BenchMember(m.make_loss(task), torch.get_rng_state(), key) for m in methods]
            group = GroupStep(task, stacked, GroupLoss(members, dev), opt, gens, dev, prof.amp)
            rows = torch.stack(index)  # K x (warmup + steps) x bs

            def work(first: int, count: int) -> None:
                for i in range(first, first + count):
                    idx = rows[:, i]
                    group(x_all[idx], y_all[idx])
        work(0, warmup)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        barrier.wait(timeout=600)
        t0 = time.monotonic()
        work(warmup, steps)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.put(("ok", slot, t0, time.monotonic(), steps * bs * len(seeds)))
    except Exception as exc:
        barrier.abort()
        text = str(exc).strip().splitlines()
        out.put(("error", slot, f"{type(exc).__name__}: {text[0] if text else ''}"))


def _measure(mode: str, k: int, processes: int, threads: int, task: str, method: str, profile: str, device: str,
             data_root: Path, steps: int, warmup: int) -> float:
    """Aggregate training samples/s of K runs in ``mode``."""
    ctx = mp.get_context("spawn")
    procs, each = min(processes, k), threads
    shares = [list(range(k))[p::procs] for p in range(procs)]
    out, barrier = ctx.Queue(), ctx.Barrier(procs)
    workers = [ctx.Process(target=_worker, args=(out, barrier, p, mode, shares[p], task, method, profile, device,
                                                 str(data_root), steps, warmup, each)) for p in range(procs)]
    for w in workers:
        w.start()
    results = []
    try:
        for _ in workers:
            results.append(out.get(timeout=1800))
    except queue_mod.Empty:
        raise SuiteError(f"bench --batch-runs: {mode} K={k} timed out") from None
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    errors = [r[2] for r in results if r[0] == "error"]
    if errors:
        raise SuiteError(f"bench --batch-runs: {mode} K={k}: {errors[0]}")
    start, end = min(r[2] for r in results), max(r[3] for r in results)
    return sum(r[4] for r in results) / (end - start)


def bench_batched(task: str, method: str, ks: list[int], device: str, data_root: Path, profile: str = "paper",
                  steps: int = 300, warmup: int = 20, processes: int = 2, threads: int = 1) -> list[dict[str, Any]]:
    """One row per K: aggregate samples/s of separate, batched and vmap-batched runs, and the ratios."""
    if not ks or any(k < 1 for k in ks):
        raise SuiteError(f"bad --batch-runs {ks}: expected positive integers like 1,2,4,8")
    rows = []
    for k in ks:
        rate = {m: _measure(m, k, processes, threads, task, method, profile, device, data_root, steps, warmup)
                for m in MODES}
        rows.append({"task": task, "method": method, "profile": profile, "K": k, "steps": steps,
                     "processes": min(processes, k), "threads_per_process": threads,
                     **{f"{m}_samples_per_s": round(v, 1) for m, v in rate.items()},
                     "ratio_batched": round(rate["batched"] / rate["separate"], 2),
                     "ratio_batched_vmap": round(rate["batched-vmap"] / rate["separate"], 2)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["task", "method", "K", "processes", "separate_samples_per_s", "batched_samples_per_s",
            "batched-vmap_samples_per_s", "ratio_batched", "ratio_batched_vmap"]
    return tabulate([[r[c] for c in cols] for r in rows], headers=cols, tablefmt="github")


def bench_cli(args: Any, device: torch.device, data_root: Path, method_names: list[str]) -> int:
    """``bench --batch-runs K,...``: the table, and the rows as JSON with ``--json``."""
    from ..launch.grid import parse_seeds, select
    from ..running.environment import environment
    from .steps import write_json

    try:
        ks = parse_seeds(args.batch_runs)
    except SuiteError:
        raise SuiteError(f"bad --batch-runs {args.batch_runs!r}: expected positive integers like 1,2,4,8") from None
    threads = args.threads or 1
    rows = []
    for name in select("task", args.task, False):
        for method in method_names:
            rows += bench_batched(name, method, ks, str(device), data_root, args.profile, max(1, args.steps),
                                  processes=max(1, args.processes), threads=threads)
    print(table(rows))
    if args.json:
        write_json(rows, args.json, {"environment": environment(device), "steps": args.steps, "batch_runs": ks,
                                     "processes": args.processes, "threads_per_process": threads,
                                     "device": str(device)})
        print(f"wrote {args.json}")
    return 0
