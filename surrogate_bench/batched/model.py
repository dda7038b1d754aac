"""K networks of one architecture as one: stacked parameters and buffers, a vmapped functional forward.

``torch.func.stack_module_state`` turns K modules into one dict of K x ... parameters (leaf tensors that an
optimiser can own) and one of K x ... buffers; ``vmap(functional_call)`` runs all K forwards as batched
kernels. Batch-norm running statistics update in place on the *stacked* buffers (they are batched under
vmap, so each run's slice moves with its own batch statistics, as a separate module's would). Models that
draw random numbers in their forward (dropout) are refused by vmap (``randomness="error"``): under vmap their
draws could not equal K separate runs'.

``nn.Linear`` layers are routed through :func:`stacked_linear`, whose vmap rule is one ``baddbmm`` (a gemm per
run, as ``addmm`` does for a single run): vmap's own rule for ``linear`` folds the K runs into another gemm
whose rounding differs (~1e-7), which chaotic losses (Smooth-AP at temperature 0.01) amplify into different
trajectories. Forward and gradients of a stacked MLP are then bitwise those of the K separate MLPs on CPU.

Convolutions and batch norm under vmap are correct (running statistics included: the stacked buffers are
batched, so each slice moves with its run's batch statistics) but round differently from a separate run
(grouped convolutions, K x C-channel normalisation, no channels_last): ~1e-6 in the gradients, which SGD on a
batch-normed convnet amplifies within tens of steps exactly as a change of a single run's memory format does.

``forward="loop"`` runs each run's network on its slices of the *same* stacked tensors (``functional_call`` per
run; batch-norm statistics update the stacked buffers in place through the slices): forward and gradients are
bitwise those of separate runs, for every architecture, and one optimiser step still updates all K runs.
``forward="auto"`` is ``loop`` on CPU (exact, and faster there: a CPU step is compute- and memory-bound, and
per-run ``addmm`` beats ``bmm``; docs/batched.md) and ``vmap`` on CUDA (launch-bound: one kernel per layer for
all K runs instead of K; MLPs exact through ``stacked_linear``, convnets to rounding).
"""

from __future__ import annotations

import copy
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


@torch.library.custom_op("surrogate_bench::stacked_linear", mutates_args=())
def stacked_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear``; under vmap one ``baddbmm`` over the runs (rounding as K separate ``addmm`` calls)."""
    return F.linear(x, weight, bias)


@stacked_linear.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def _setup(ctx: Any, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.has_bias = inputs[2] is not None


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gradients outside vmap (a lone call): those of ``F.linear``."""
    x, weight = ctx.saved_tensors
    g2 = grad.reshape(-1, grad.shape[-1])
    return (grad @ weight, g2.t() @ x.reshape(-1, x.shape[-1]),
            g2.sum(0) if ctx.has_bias else None)


stacked_linear.register_autograd(_backward, setup_context=_setup)


def _linear_rule(info: Any, in_dims: tuple, x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, int]:
    """vmap rule: K x (N x in) inputs times K x out x in weights, bias added by the same gemm (beta = 1)."""
    k = info.batch_size

    def front(t: Tensor, dim: int | None) -> Tensor:
        return t.movedim(dim, 0) if dim is not None else t.expand(k, *t.shape)

    xs, ws = front(x, in_dims[0]), front(weight, in_dims[1])
    flat = xs.reshape(k, -1, xs.shape[-1])
    if bias is None:
        out = torch.bmm(flat, ws.transpose(1, 2))
    else:
        out = torch.baddbmm(front(bias, in_dims[2])[:, None, :], flat, ws.transpose(1, 2))
    return out.reshape(*xs.shape[:-1], ws.shape[1]), 0


stacked_linear.register_vmap(_linear_rule)


def _linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    return stacked_linear(x, self.weight, self.bias)


# layers whose vmapped forward and backward are bitwise a separate module's (Linear through stacked_linear)
VMAP_EXACT = (nn.Linear, nn.Flatten, nn.Identity, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Softplus,
              nn.Sequential)
FORWARDS = ("auto", "vmap", "loop")


def pick_forward(device: torch.device, forward: str = "auto") -> str:
    """``vmap`` or ``loop`` (see the module docstring): ``auto`` is vmap on CUDA, loop elsewhere."""
    if forward not in FORWARDS:
        raise ValueError(f"batched forward must be one of {', '.join(FORWARDS)}, not {forward!r}")
    if forward != "auto":
        return forward
    return "vmap" if device.type == "cuda" else "loop"


def vmap_exact(model: nn.Module) -> bool:
    """True when every layer's vmapped forward and backward are bitwise a separate module's (MLPs)."""
    return all(isinstance(m, VMAP_EXACT) for m in model.modules())


class StackedModels:
    """``forward(xs: K x B x ...) -> K x B x ...``; ``shared(x: B x ...)`` feeds one batch to all K networks."""

    def __init__(self, models: list[nn.Module], forward: str = "auto") -> None:
        if not models:
            raise ValueError("StackedModels needs at least one model")
        self.k = len(models)
        first = next(iter(models[0].parameters()), None)
        self.forward = pick_forward(first.device if first is not None else torch.device("cpu"), forward)
        params, buffers = stack_module_state(models)  # copies: the K modules are no longer used
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        self.plain = copy.deepcopy(models[0]).to("meta")  # the architecture, without storage
        self.base = copy.deepcopy(self.plain)
        for module in self.base.modules():
            if type(module) is nn.Linear:
                module.forward = types.MethodType(_linear_forward, module)
        self._batched = vmap(self._one, in_dims=(0, 0, 0), randomness="error")
        self._shared = vmap(self._one, in_dims=(0, 0, None), randomness="error")

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def parameters(self) -> list[Tensor]:
        """The stacked parameters, in module order (what the optimiser owns)."""
        return list(self.params.values())

    def train(self, mode: bool = True) -> "StackedModels":
        self.base.train(mode)
        self.plain.train(mode)
        return self

    def eval(self) -> "StackedModels":
        return self.train(False)

    def __call__(self, xs: Tensor) -> Tensor:
        if self.forward == "loop":
            return torch.stack(self._loop(list(xs.unbind(0))))
        return self._batched(self.params, self.buffers, xs)

    def outputs(self, xs: Tensor) -> Tensor | list[Tensor]:
        """Training forward: the K x B x ... tensor (vmap), or each run's own output tensor (loop), so that a
        run's loss gradient enters its network exactly as in a separate run (same strides, no stack)."""
        return self._loop(list(xs.unbind(0))) if self.forward == "loop" else self(xs)

    def shared(self, x: Tensor) -> Tensor:
        """All K networks on the same input batch (evaluation)."""
        if self.forward == "loop":
            return torch.stack(self._loop([x] * self.k))
        return self._shared(self.params, self.buffers, x)

    def _loop(self, xs: list[Tensor]) -> list[Tensor]:
        """Run k's module on its slices (views: batch-norm statistics update the stacked buffers in place)."""
        params = {n: t.unbind(0) for n, t in self.params.items()}
        buffers = {n: t.unbind(0) for n, t in self.buffers.items()}
        outs = [functional_call(self.plain, ({n: v[k] for n, v in params.items()},
                                             {n: v[k] for n, v in buffers.items()}), (x,))
                for k, x in enumerate(xs)]
        return outs

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {"params": {n: t.detach().clone() for n, t in self.params.items()},
                "buffers": {n: t.detach().clone() for n, t in self.buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a :meth:`state_dict` in place (the optimiser keeps owning the same tensors); shapes must fit."""
        for part, mine in (("params", self.params), ("buffers", self.buffers)):
            theirs = state[part]
            if set(theirs) != set(mine):
                raise ValueError(f"stacked {part} names differ")
            for name, t in mine.items():
                if tuple(theirs[name].shape) != tuple(t.shape):
                    raise ValueError(f"{part} {name}: shape {tuple(theirs[name].shape)} is not {tuple(t.shape)}")
        with torch.no_grad():
            for part, mine in (("params", self.params), ("buffers", self.buffers)):
                for name, t in mine.items():
                    t.copy_(state[part][name])

    def model(self, k: int) -> nn.Module:
        """Run ``k``'s network as an ordinary module (a copy), e.g. to compare with a separate run."""
        module = copy.deepcopy(self.plain).to_empty(device=next(iter(self.params.values())).device)
        module.load_state_dict({**{n: t[k].detach() for n, t in self.params.items()},
                                **{n: t[k].detach() for n, t in self.buffers.items()}})
        return module

    @torch.no_grad()
    def zero_run(self, k: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Freeze run ``k`` for good: its parameters, float buffers and optimiser state slices set to 0, so
        SGD (momentum, weight decay), Adam and RMSprop leave them at 0 (its gradients are 0: its loss is no
        longer added) and a non-finite value cannot linger in its slice."""
        for t in [*self.params.values(), *self.buffers.values()]:
            if t.is_floating_point():
                t[k].zero_()
        if optimizer is not None:
            for p in self.params.values():
                for v in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(v) and v.shape == p.shape:
                        v[k].zero_()
