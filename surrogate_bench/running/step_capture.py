"""The training step as one launch: a whole-step CUDA graph, a ``torch.compile``d step, or the eager step.

A ResNet-20 or an MLP step on an H100 is launch-bound: hundreds of tiny kernels queued by the CPU.
``StepCapture(mode="graph")`` captures augmentation + forward + loss + backward + optimiser step
once (static input buffers, the augmentation generator registered with the graph so every replay
draws fresh offsets, warm-up steps on a side stream) and replays it; evaluation batches of the
profile's size are captured likewise. ``mode="compile"`` hands the same step to ``torch.compile``.
``mode="eager"`` is :func:`~surrogate_bench.running.runner.train_step` itself, so CPU runs (and their
records) are unchanged. A step that cannot be captured falls back to eager automatically, with the
reason logged once and kept in :meth:`StepCapture.describe` (written to the run record). The step
implementation is an execution detail, not part of a run's key.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor, nn

from ..plugins.contracts import Task
from ..plugins.errors import SuiteError
from .step import autocast, train_step

MODES = ("auto", "graph", "compile", "eager")
ENV = "SURROGATE_BENCH_STEP_CAPTURE"  # default for --step-capture (auto when unset)


def resolve_mode(mode: str | None, device: torch.device) -> str:
    """``auto`` (or unset) -> ``graph`` on CUDA, ``eager`` elsewhere; a bad name is a SuiteError."""
    mode = (mode or os.environ.get(ENV) or "auto").lower()
    if mode not in MODES:
        raise SuiteError(f"bad --step-capture {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "auto":
        return "graph" if device.type == "cuda" else "eager"
    return mode


def eager_loss(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss without its own per-loss CUDA graph (``graphed_loss`` keeps it as ``.eager``): a whole-step
    capture cannot nest another capture."""
    return getattr(loss_fn, "eager", loss_fn)


class StepCapture:
    """``step(x, y) -> detached loss`` on a storage batch, and ``predict_batch(x) -> decoded predictions``.

    Same contract as ``train_step``: no host sync inside a step. In graph mode the first ``warmup``
    steps run eagerly on a side stream (they are real training steps, as in eager mode), then the
    step is captured and replayed; a change of any learning rate (a scheduler milestone) recaptures.
    """

    def __init__(self, task: Task, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                 optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device, amp: bool,
                 mode: str | None = "auto", log: Callable[[str], None] = print, warmup: int = 3) -> None:
        self.task, self.model, self.optimizer, self.gen, self.device, self.amp = (
            task, model, optimizer, generator, device, amp)
        self.loss_fn, self.log = loss_fn, log
        self.requested = resolve_mode(mode, device)
        self.mode = self.requested
        self.fallback_reason: str | None = None
        self._warmup_left = warmup
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_lrs: tuple[float, ...] = ()
        self._static: dict[str, Tensor] = {}
        self._eval_graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}
        self._eval_broken = False
        self._compiled: Callable[[Tensor, Tensor], Tensor] | None = None
        self._compiled_ok = False
        if self.mode == "graph" and device.type != "cuda":
            self._fall_back(f"CUDA graphs need a CUDA device, not {device}")
        elif self.mode == "graph":
            self._make_capturable()
        elif self.mode == "compile":
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True  # random draws (augmentation, UniLoss anchors) as in eager
            self._compiled = torch.compile(self._body)

    # -- public -----------------------------------------------------------------------------
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if self.mode == "graph":
            return self._graph_step(x, y)
        if self.mode == "compile":
            return self._compile_step(x, y)
        return train_step(self.task, self.model, self.loss_fn, self.optimizer, x, y, self.gen, self.device,
                          self.amp)

    def describe(self) -> str:
        """What ran: ``graph``, ``compile``, ``eager``, or ``eager (REQUESTED failed: reason)``."""
        if self.fallback_reason:
            return f"eager ({self.requested} fell back: {self.fallback_reason})"
        return self.mode

    @torch.no_grad()
    def predict_batch(self, x: Tensor) -> Tensor:
        """Decoded predictions of one evaluation batch (model already in eval mode); captured in graph mode."""
        if self.mode != "graph" or self._eval_broken:
            return self._eval_body(x)
        key = (tuple(x.shape), x.dtype)
        entry = self._eval_graphs.get(key)
        if entry is None:
            if len(self._eval_graphs) >= 2:  # the full eval batch and at most one remainder shape
                return self._eval_body(x)
            try:
                entry = self._capture_eval(x)
            except Exception as exc:  # capture is an optimisation: evaluate eagerly
                self._eval_broken = True
                self.log(f"step capture: evaluation runs eagerly ({_one_line(exc)})")
                return self._eval_body(x)
            self._eval_graphs[key] = entry
        graph, static_x, static_out = entry
        static_x.copy_(x)
        graph.replay()
        return static_out.clone()

    # -- the step itself ----------------------------------------------------------------------
    def _autocast(self):
        if self.mode == "graph" and self.device.type == "cuda" and self.amp:  # no weight-cast cache in a graph
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        return autocast(self.device, self.amp)

    def _body(self, x: Tensor, y: Tensor) -> Tensor:
        """train_step without zero_grad (done outside a capture / compiled region)."""
        xb = self.task.inputs(x, train=True, generator=self.gen)
        with self._autocast():
            out = self.model(xb)
        loss = eager_loss(self.loss_fn)(out.float(), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _eval_body(self, x: Tensor) -> Tensor:
        xb = self.task.inputs(x, train=False)
        with self._autocast():
            out = self.model(xb)
        return self.task.decode(out.float())

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        self.mode = "eager"
        self.log(f"step capture: {self.requested} unavailable, training eagerly ({reason})")

    # -- torch.compile --------------------------------------------------------------------------
    def _compile_step(self, x: Tensor, y: Tensor) -> Tensor:
        assert self._compiled is not None
        self.optimizer.zero_grad(set_to_none=True)
        if self._compiled_ok:
            return self._compiled(x, y)
        try:  # the first call compiles; a compiler failure there means eager for the rest of the run
            loss = self._compiled(x, y)
        except Exception as exc:
            self._fall_back(f"torch.compile failed: {_one_line(exc)}")
            self.optimizer.zero_grad(set_to_none=True)
            return self(x, y)
        self._compiled_ok = True
        return loss

    # -- CUDA graph -----------------------------------------------------------------------------
    def _make_capturable(self) -> None:
        """Optimisers with a ``capturable`` flag (Adam, RMSprop, ...) keep their step counters on the device."""
        for group in self.optimizer.param_groups:
            if "capturable" in group and not group["capturable"]:
                group["capturable"] = True
                for p in group["params"]:
                    state = self.optimizer.state.get(p, {})
                    if torch.is_tensor(state.get("step")):
                        state["step"] = state["step"].to(p.device, torch.float32)

    def _lrs(self) -> tuple[float, ...]:
        return tuple(float(g["lr"]) for g in self.optimizer.param_groups)

    def _graph_step(self, x: Tensor, y: Tensor) -> Tensor:
        if self._warmup_left > 0:  # real steps, eagerly, on a side stream (lazy state: momentum, BN stats)
            self._warmup_left -= 1
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._body(x, y)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            return loss
        if self._graph is None or self._graph_lrs != self._lrs():
            try:
                self._capture(x, y)
            except Exception as exc:
                self._graph = None
                self._fall_back(f"CUDA graph capture failed: {_one_line(exc)}")
                return self(x, y)
        self._static["x"].copy_(x)
        self._static["y"].copy_(y)
        assert self._graph is not None
        self._graph.replay()
        return self._static["loss"].clone()

    def _capture(self, x: Tensor, y: Tensor) -> None:
        """Capture one step on static buffers (the learning rates are baked in: recaptured when they change)."""
        self._graph = None
        torch.cuda.synchronize(self.device)
        static_x, static_y = x.detach().clone(), y.detach().clone()
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        if self.gen.device.type == "cuda":
            graph.register_generator_state(self.gen)  # replays advance this generator's offset, as eager calls do
        with torch.cuda.graph(graph):
            static_loss = self._body(static_x, static_y)
        self._graph, self._graph_lrs = graph, self._lrs()
        self._static = {"x": static_x, "y": static_y, "loss": static_loss}

    def _capture_eval(self, x: Tensor) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor]:
        static_x = x.detach().clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            self._eval_body(static_x)  # warm-up (lazy buffers) outside the capture
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._eval_body(static_x)
        return graph, static_x, static_out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()
