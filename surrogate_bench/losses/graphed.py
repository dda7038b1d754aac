"""CUDA-graph a loss function: a surrogate's many small kernels replayed as one graph per batch shape.

A loss like UniLoss is a hundred tiny ops; on a GPU its cost is the CPU launching them, not the
arithmetic. ``graphed_loss`` captures forward and backward once per (shape, dtype) of its inputs
with :func:`torch.cuda.make_graphed_callables` and replays them afterwards. Random draws inside
the graph advance the CUDA generator on every replay (PyTorch's graph-safe RNG), so each step
still samples fresh anchors. Anything else (CPU tensors, no grad, evaluation) runs the loss as is;
``SURROGATE_BENCH_CUDA_GRAPHS=0`` turns capture off (an execution detail: not part of a run's key).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def graphed_loss(loss: LossFn, max_shapes: int = 4) -> LossFn:
    """``loss`` with its CUDA training calls captured as graphs (at most ``max_shapes`` distinct shapes;
    further shapes, and any capture that fails, fall back to the eager loss)."""
    if os.environ.get("SURROGATE_BENCH_CUDA_GRAPHS", "1") == "0":
        return loss
    graphs: dict[tuple, LossFn] = {}
    broken: list[str] = []

    def run(outputs: Tensor, targets: Tensor) -> Tensor:
        if broken or not outputs.is_cuda or not (torch.is_grad_enabled() and outputs.requires_grad):
            return loss(outputs, targets)
        key = (tuple(outputs.shape), outputs.dtype, tuple(targets.shape), targets.dtype, outputs.device)
        fn = graphs.get(key)
        if fn is None:
            if len(graphs) >= max_shapes:
                return loss(outputs, targets)
            try:
                sample = (outputs.detach().clone().requires_grad_(True), targets.clone())
                fn = torch.cuda.make_graphed_callables(loss, sample, num_warmup_iters=3)
            except Exception as exc:  # capture is an optimisation: never fail a run over it
                broken.append(str(exc))
                warnings.warn(f"CUDA graph capture of the loss failed, running it eagerly: {exc}", stacklevel=2)
                return loss(outputs, targets)
            graphs[key] = fn
        return fn(outputs, targets)

    run.eager = loss  # type: ignore[attr-defined]  # for a whole-step capture, which cannot nest this one
    return run
