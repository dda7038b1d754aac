"""Throughput of each loss method per task and device: whole training step, and loss+backward alone.

The whole step is what the runner does (inputs + forward + loss + backward + optimiser step); the
loss+backward time is measured on fixed model outputs, so a surrogate's own cost can be read beside
cross-entropy's and beside the network's step. Warm-up steps absorb one-off costs; CUDA timings are
bracketed by ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tabulate import tabulate

from ..plugins.contracts import Method, Task
from ..plugins.errors import DataUnavailable, SuiteError
from ..running.data_cache import load_task_data
from ..running.step import autocast, make_optimizer
from ..running.step_capture import StepCapture


def _timed(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device, blocks: int = 5) -> float:
    """Seconds per call: the median over ``blocks`` blocks of ``steps`` calls each, after ``warmup`` calls
    (the median of blocks keeps a shared machine's bursts out of the figure)."""
    for _ in range(warmup):
        fn()
    per_call = []
    for _ in range(blocks):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        per_call.append((time.perf_counter() - t0) / steps)
    return statistics.median(per_call)


def batch_for(task: Task, data_root: Path, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A storage batch and its targets: real data when the root has it, else random tensors of the task's
    shapes (tasks that declare ``input_shape``: uint8 inputs, random class indices)."""
    try:
        data = load_task_data(task, data_root, download=False)
        n = min(batch_size, len(data.train))
        return data.train.x[:n].to(device), data.train.y[:n].to(device), "real"
    except DataUnavailable as exc:
        shape = getattr(task, "input_shape", None)
        if shape is None or task.output_kind != "logits":
            raise SuiteError(f"bench: no data for {task.name} ({exc}) and no input_shape to make random tensors")
        x = torch.randint(0, 256, (batch_size, *shape), dtype=torch.uint8, device=device)
        y = torch.randint(0, max(task.num_classes, 2), (batch_size,), device=device)
        return x, y, "random"


def bench_task(task: Task, methods: list[Method], device: torch.device, data_root: Path, profile: str = "paper",
               steps: int = 50, warmup: int = 10, step_capture: str | None = None) -> list[dict[str, Any]]:
    """One row per method: ms per whole step, samples/s, ms of loss+backward on fixed outputs."""
    prof = task.profile(profile)
    x, y, source = batch_for(task, data_root, prof.batch_size, device)
    n = int(x.shape[0])
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for method in methods:
        row: dict[str, Any] = {"task": task.name, "method": method.name, "device": str(device), "batch": n,
                               "data": source, "profile": profile}
        reason = method.supports(task) or ("learned: needs its prepared artifact" if method.learned else None)
        if reason:
            rows.append({**row, "skipped": reason})
            continue
        model = task.build_model().to(device)
        if device.type == "cuda" and task.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        opt = make_optimizer(prof, model.parameters())
        loss_fn = method.make_loss(task)

        stepper = StepCapture(task, model, loss_fn, opt, gen, device, prof.amp, step_capture, log=lambda m: None)

        def step() -> None:
            stepper(x, y)

        with torch.no_grad(), autocast(device, prof.amp):
            fixed = model(task.inputs(x, train=False)).float()

        def loss_only() -> None:
            out = fixed.detach().requires_grad_(True)
            loss_fn(out, y).backward()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step_s = _timed(step, max(1, steps // 3), min(warmup, steps), device, blocks=3)
        loss_s = _timed(loss_only, steps, warmup, device, blocks=5)
        rows.append({**row, "step_ms": 1e3 * step_s, "samples_per_s": n / step_s, "loss_bwd_ms": 1e3 * loss_s,
                     "step_capture": stepper.describe()})
        if device.type == "cuda":  # whole step and loss alone: model, optimiser state, the loss's temporaries
            rows[-1]["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    ce = next((r for r in rows if r["method"] == "ce" and "step_ms" in r), None)
    for r in rows:
        if ce and "step_ms" in r:
            r["loss_vs_ce"] = r["loss_bwd_ms"] / ce["loss_bwd_ms"]
            r["loss_vs_ce_step"] = r["loss_bwd_ms"] / ce["step_ms"]
            r["step_vs_ce"] = r["step_ms"] / ce["step_ms"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of bench rows."""
    head = ["task", "method", "device", "batch", "data", "ms/step", "samples/s", "loss+bwd ms",
            "loss / CE loss", "loss / CE step", "step / CE step", "peak MiB"]
    body = []
    for r in rows:
        if "skipped" in r:
            body.append([r["task"], r["method"], r["device"], r["batch"], r["data"], f"skipped: {r['skipped']}",
                         "", "", "", "", "", ""])
            continue
        body.append([r["task"], r["method"], r["device"], r["batch"], r["data"], f"{r['step_ms']:.2f}",
                     f"{r['samples_per_s']:.0f}", f"{r['loss_bwd_ms']:.3f}",
                     f"{r['loss_vs_ce']:.2f}" if "loss_vs_ce" in r else "",
                     f"{r['loss_vs_ce_step']:.3f}" if "loss_vs_ce_step" in r else "",
                     f"{r['step_vs_ce']:.2f}" if "step_vs_ce" in r else "",
                     f"{r['peak_mib']:.0f}" if "peak_mib" in r else ""])
    return tabulate(body, head, tablefmt="github")


def write_json(rows: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    from ..store.records import atomic_write_bytes

    atomic_write_bytes(Path(path), json.dumps({"meta": meta, "rows": rows}, indent=1, default=str).encode())
