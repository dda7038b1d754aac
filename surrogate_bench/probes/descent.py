"""The descent probe: does a step along a loss's gradient improve the exact metric?

A loss whose *value* tracks the metric (a good Spearman probe) may still have a gradient that does not
improve it. From every model state of the task's probe pool, each loss's descent direction is its gradient
averaged over ``GRAD_BATCHES`` training batches of the profile's batch size (the same batches for every
loss, un-augmented, training mode: batch-norm batch statistics), turned into the direction of the profile
optimiser's first step from a fresh state (SGD: the gradient; Adam / RMSprop: its element-wise sign, since
m / sqrt(v) = g / |g| at step one), i.e. the loss's expected update direction. The model then moves along
it by matched step sizes, ``STEP_SIZES`` x the state's parameter norm |theta| (the same lengths for every
loss, so losses differ only in *direction*; a size relative to |theta| is meaningful for SGD- and
Adam-trained models alike, where lr x |grad| is not), and the change of
the exact metric is measured on the pool's clean held-out samples (eval mode, the state's batch-norm
statistics), scored separately on two disjoint halves of them (a seeded split, stratified by class for
class labels).

The headline length comes from the baseline alone: the largest matched length at which the baseline's
own step improves the metric (change > 0) at most (more than half of the) states, judged on the *choose*
half; every method's change there, and its paired difference to the baseline, are reported on the other,
*report* half, so the choice does not select its own noise. No average over lengths is taken (a length
where the baseline's step hurts says nothing about which direction is better); the per-length curve on
the report half is kept beside the headline. If no length helps the baseline, there is no headline.
Intervals resample baseline runs and then states within them (:func:`~.stats.cluster_mean`).

Where cheap, the cosine between each loss's descent direction -grad and a finite-difference estimate of
the metric's ascent direction is reported, restricted to the model's output layer W (a few hundred
parameters; the eval-mode features of the held-out samples stay fixed). The estimate is Gaussian
smoothing with antithetic pairs, g_hat = sum_k [m(W + s u_k) - m(W - s u_k)] u_k / (2 s K), u_k ~ N(0, I),
K = ``FD_DIRECTIONS``, s = ``FD_SCALE`` x the RMS of W, m = the mean exact metric of the held-out batches.
The directions are seeded per state, so every loss is compared with the same estimate; its noise
(K < dim W, a piecewise-constant metric) caps the cosine well below 1 for every loss alike, so read it
across losses, not against 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..plugins.contracts import Task, TaskData
from ..plugins.registry import get_task, method_for
from ..running.environment import environment
from ..running.options import RunOptions
from ..running.spec import PROTOCOL_VERSION
from ..store.records import recorded
from .pool import ProbePool, baseline_method, probe_split
from .setup import is_baseline, pool_file, prepare_probe, probe_identity
from .stats import MIN_INTERVAL_STATES, cluster_mean

DESCENT_VERSION = 3  # 3: held-out halves, the length chosen from the baseline on one half, reported on the other
# 2: expected (batch-averaged) optimiser directions, lengths relative to |theta|, whole held-out set
GRAD_BATCHES = 8  # training batches (profile batch size) averaged into each loss's direction
STEP_SIZES = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)  # step lengths as fractions of the state's parameter norm
MAJORITY = 0.5  # the baseline's step must improve the metric at more than this share of states
HALVES_SEED = 12345  # the seeded split of the held-out samples into the choose and report halves
FD_DIRECTIONS = 512  # antithetic random directions of the output-layer finite-difference estimate
FD_SCALE = 0.1  # perturbation per coordinate, in units of the output layer's RMS weight
FD_CHUNK = 64  # perturbations evaluated at once

_BASELINE_CACHE: dict[str, dict[str, Any]] = {}  # one process probing several methods measures the baseline once


def descent_settings() -> dict[str, Any]:
    return {"version": DESCENT_VERSION, "protocol_version": PROTOCOL_VERSION, "grad_batches": GRAD_BATCHES, "step_sizes": list(STEP_SIZES),
            "fd_directions": FD_DIRECTIONS, "fd_scale": FD_SCALE, "majority": MAJORITY, "halves_seed": HALVES_SEED,
            "length_choice": "the largest step size at which the baseline's change on the choose half is > 0 at "
                             "more than `majority` of the states; reported on the disjoint report half",
            "step_norm": "step_sizes x the state's parameter norm, along the loss's batch-averaged -gradient",
            "direction": "the profile optimiser's first step: -grad (sgd), -sign(grad) (adam, rmsprop)"}


def _params(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def held_out_halves(y: Tensor, seed: int = HALVES_SEED) -> tuple[Tensor, Tensor]:
    """Two disjoint halves (sorted indices) of the held-out samples ``y`` (E x n ... flattened to E n): the
    *choose* half and the *report* half, a seeded split, stratified by class when ``y`` holds class labels
    (each class split in two, so an AP half keeps its positives)."""
    flat = y.flatten(0, 1).cpu()
    gen = torch.Generator().manual_seed(seed)
    n = len(flat)
    if flat.dim() == 1 and not flat.is_floating_point():
        choose, report = [], []
        for c in torch.unique(flat):
            members = torch.nonzero(flat == c).flatten()
            members = members[torch.randperm(len(members), generator=gen)]
            choose.append(members[: len(members) // 2])
            report.append(members[len(members) // 2:])
        a, b = torch.cat(choose), torch.cat(report)
    else:
        perm = torch.randperm(n, generator=gen)
        a, b = perm[: n // 2], perm[n // 2:]
    return a.sort().values, b.sort().values


def _held_out_outputs(task: Task, model: nn.Module, x: Tensor, chunk: int) -> Tensor:
    """Eval-mode outputs of the held-out samples (E x n storage batches, flattened to E n)."""
    model.eval()
    with torch.no_grad():
        flat = x.flatten(0, 1)
        return torch.cat([model(task.inputs(flat[i:i + chunk], train=False)).float()
                          for i in range(0, len(flat), chunk)]).cpu()


def _scores(task: Task, out: Tensor, y: Tensor, halves: tuple[Tensor, Tensor]) -> tuple[float, float, float]:
    """Exact metric of the whole held-out set, its choose half and its report half, each scored as one set."""
    flat = y.flatten(0, 1).cpu()

    def one(idx: Tensor | None) -> float:
        o, t = (out, flat) if idx is None else (out[idx], flat[idx])
        return float(task.batch_metric(o.unsqueeze(0), t.unsqueeze(0)).double()[0])

    return one(None), one(halves[0]), one(halves[1])


def _held_out_metric(task: Task, model: nn.Module, x: Tensor, y: Tensor, chunk: int) -> float:
    """Exact metric of the held-out samples (E x n storage batches) scored as one set, eval mode."""
    out = _held_out_outputs(task, model, x, chunk)
    return float(task.batch_metric(out.unsqueeze(0), y.flatten(0, 1).unsqueeze(0).cpu()).double()[0])


def _grad(task: Task, model: nn.Module, loss_fn: Callable, x: Tensor, y: Tensor) -> list[Tensor]:
    model.train()
    out = model(task.inputs(x, train=False)).float()
    return list(torch.autograd.grad(loss_fn(out, y), _params(model), allow_unused=True))


def _norm(grads: list[Tensor | None]) -> Tensor:
    return torch.sqrt(sum((g.double().square().sum() for g in grads if g is not None), torch.zeros((), dtype=torch.float64)))


def mean_gradient(task: Task, model: nn.Module, loss_fn: Callable, xs: Tensor, ys: Tensor) -> list[Tensor | None]:
    """The loss's gradient averaged over the batches ``xs``/``ys`` (B x n ...): its expected step direction."""
    total: list[Tensor | None] = [None] * len(_params(model))
    for x, y in zip(xs, ys):
        for i, g in enumerate(_grad(task, model, loss_fn, x, y)):
            if g is not None:
                total[i] = g.detach().clone() if total[i] is None else total[i] + g
    return [None if g is None else g / len(xs) for g in total]


def _output_layer(model: nn.Module, x: Tensor) -> tuple[nn.Module, Tensor] | None:
    """The last parameterised module run and its input, when its output is the model's output (else None)."""
    seen: list[tuple[nn.Module, Tensor, Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0].detach(), out.detach())))
             for m in model.modules() if not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    if not seen or not isinstance(seen[-1][0], (nn.Linear, nn.Conv2d)) or not torch.equal(seen[-1][2], out):
        return None
    return seen[-1][0], seen[-1][1]


def fd_cosine(task: Task, model: nn.Module, losses: dict[str, Callable], x: Tensor, y: Tensor,
              seed: int) -> dict[str, float]:
    """Cosine between -grad of each loss and the estimated metric ascent direction, output layer only.

    ``x``/``y``: E x n held-out storage batches and clean targets. NaN when the output layer is not the
    model's last operation or the estimate is zero (no perturbation changed the metric)."""
    flat_x, flat_y = x.flatten(0, 1), y.flatten(0, 1)
    found = _output_layer(model, task.inputs(flat_x, train=False))
    if found is None:
        return {name: float("nan") for name in losses}
    layer, feats = found
    names = [n for n, _ in layer.named_parameters()]
    base = {n: p.detach().clone() for n, p in layer.named_parameters()}
    flat = torch.cat([v.flatten() for v in base.values()])
    sizes = [v.numel() for v in base.values()]

    def outputs(w: Tensor) -> Tensor:
        parts = dict(zip(names, (t.view_as(base[n]) for n, t in zip(names, torch.split(w, sizes)))))
        return torch.func.functional_call(layer, parts, (feats,)).float()

    def metric_of(ws: Tensor) -> Tensor:
        outs = torch.func.vmap(outputs)(ws)  # K x (E n) x ...: every perturbation in one call
        b = outs.reshape(len(ws) * x.shape[0], x.shape[1], *outs.shape[2:])
        t = y.repeat(len(ws), *([1] * (y.dim() - 1)))
        return task.batch_metric(b.cpu(), t.cpu()).double().view(len(ws), x.shape[0]).nanmean(1)

    with torch.no_grad():
        feats_shape_out = outputs(flat).shape[1:]
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(FD_DIRECTIONS, flat.numel(), generator=gen, dtype=torch.float64).to(flat.device)
    s = FD_SCALE * float(flat.double().square().mean().sqrt())
    diffs = []
    with torch.no_grad():
        for i in range(0, FD_DIRECTIONS, FD_CHUNK):
            uc = u[i:i + FD_CHUNK].to(flat.dtype)
            diffs.append(metric_of(flat + s * uc) - metric_of(flat - s * uc))
    g_hat = (torch.cat(diffs).to(u.device)[:, None] * u).sum(0) / (2 * s * FD_DIRECTIONS)
    if not task.higher_is_better:
        g_hat = -g_hat
    out: dict[str, float] = {}
    for name, loss_fn in losses.items():
        torch.manual_seed(seed)
        w = flat.clone().requires_grad_(True)
        out_w = outputs(w).reshape(*x.shape[:2], *feats_shape_out)
        val = torch.stack([loss_fn(o, t) for o, t in zip(out_w, y)]).mean()  # the mean batch loss
        (g,) = torch.autograd.grad(val, w, allow_unused=True)
        if g is None or not float(g_hat.norm()) > 0 or not float(g.norm()) > 0:
            out[name] = float("nan")
        else:
            out[name] = float(torch.nn.functional.cosine_similarity(-g.double(), g_hat, dim=0))
    return out


ADAPTIVE = ("adam", "rmsprop")  # optimisers whose first step from a fresh state is -lr' sign(grad)


def update_direction(grads: list[Tensor | None], optimizer: str) -> list[Tensor | None]:
    """The direction of the profile optimiser's first step from a fresh state: the gradient for SGD (momentum
    has nothing to add yet), its element-wise sign for Adam / RMSprop (m / sqrt(v) = g / |g| at step one)."""
    if optimizer in ADAPTIVE:
        return [None if g is None else g.sign() for g in grads]
    return grads


def descent_probe(task: Task, data: TaskData, pool: ProbePool, loss_fn: Callable, device: torch.device,
                  batch_size: int, seed: int = 0, fd: bool = True, optimizer: str = "sgd") -> dict[str, Any]:
    """Per state: the exact-metric change on the held-out set after a step of each matched size along the
    direction the profile's ``optimizer`` would take for the loss's expected gradient, and the output-layer
    finite-difference cosine. Signs: positive change = the metric improved. A zero or non-finite gradient is
    ``stuck`` (it does not move: change 0). ``change`` is on the whole held-out set, ``change_choose`` /
    ``change_report`` on its two disjoint halves (:func:`held_out_halves`)."""
    probe = probe_split(data)
    ex, ey = probe.x[pool.eval_index.to(probe.x.device)], probe.y[pool.eval_index.to(probe.y.device)]
    sign = 1.0 if task.higher_is_better else -1.0
    model = task.build_model().to(device)
    bs = min(batch_size, len(data.train))
    chunk = max(1, ex.shape[1] * 4)
    halves = held_out_halves(ey)
    runs = list(pool.state_run) or [0] * len(pool.weights)
    rows: list[dict[str, Any]] = []
    for s, weights in enumerate(pool.weights):
        model.load_state_dict(weights)
        before = _scores(task, _held_out_outputs(task, model, ex, chunk), ey, halves)
        gen = torch.Generator().manual_seed(seed * 1000 + s)
        idx = torch.stack([torch.randperm(len(data.train), generator=gen)[:bs] for _ in range(GRAD_BATCHES)])
        idx = idx.to(data.train.x.device)
        torch.manual_seed(seed * 1000 + s)  # a stochastic loss (random anchors) draws the same numbers for every run
        grads = update_direction(mean_gradient(task, model, loss_fn, data.train.x[idx], data.train.y[idx]), optimizer)
        model.load_state_dict(weights)  # the training-mode forwards moved batch-norm statistics: back to the state's
        norm = float(_norm(grads))
        theta = float(_norm([p.detach() for p in _params(model)]))
        stuck = not (np.isfinite(norm) and norm > 0)
        changes: list[list[float]] = [[], [], []]  # whole, choose half, report half
        for size in STEP_SIZES:
            if stuck:
                for c in changes:
                    c.append(0.0)
                continue
            with torch.no_grad():
                for p, g in zip(_params(model), grads):
                    if g is not None:
                        p.sub_(g.to(p.dtype), alpha=size * theta / norm)
            after = _scores(task, _held_out_outputs(task, model, ex, chunk), ey, halves)
            for c, a, b in zip(changes, after, before):
                c.append(sign * (a - b))
            model.load_state_dict(weights)
        cos = fd_cosine(task, model, {"loss": loss_fn}, ex, ey, seed * 1000 + s)["loss"] if fd else float("nan")
        rows.append({"state": s, "run": int(runs[s]), "theta_norm": theta, "grad_norm": norm, "stuck": stuck,
                     "fd_cosine": cos, "before": before[0], "before_choose": before[1], "before_report": before[2],
                     "step_norms": [size * theta for size in STEP_SIZES], "change": changes[0],
                     "change_choose": changes[1], "change_report": changes[2]})
    return {"states": rows, "halves": {"choose": len(halves[0]), "report": len(halves[1]),
                                       "disjoint": not bool(np.intersect1d(halves[0].numpy(), halves[1].numpy()).size)}}


def choose_length(base_rows: list[dict[str, Any]], sizes: tuple[float, ...] | list[float] | None = None,
                  majority: float = MAJORITY) -> dict[str, Any]:
    """The headline step length, from the baseline's rows alone: per length, the share of states at which the
    baseline's own step improved the metric on the *choose* half (change > 0); the chosen length is the
    largest one whose share exceeds ``majority`` (None when no length does)."""
    sizes = list(STEP_SIZES if sizes is None else sizes)
    change = np.asarray([r.get("change_choose", r["change"]) for r in base_rows], float)  # S x sizes
    share = [float(np.mean(change[:, j] > 0)) if len(change) else float("nan") for j in range(len(sizes))]
    helps = [s > majority for s in share]
    chosen = max((j for j, h in enumerate(helps) if h), default=None)
    return {"baseline_improves_share": share, "baseline_helps": helps, "chosen_index": chosen,
            "chosen_size": None if chosen is None else float(sizes[chosen]), "majority": majority}


def summarise(rows: list[dict[str, Any]], base_rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The change at the step length chosen from the baseline (:func:`choose_length`, on the choose half),
    measured on the report half, with a run-then-state bootstrap interval and the paired difference to the
    baseline; the same at every length (the per-length curve, report half); the mean output-layer cosine.
    No length helps the baseline: ``no_helpful_length`` and no headline (``improvement_is_headline`` false;
    ``improvement`` then holds the smallest length's change, never to be shown as a headline)."""
    states = np.asarray([r["state"] for r in rows])
    runs = np.asarray([r.get("run", 0) for r in rows])
    report = np.asarray([r.get("change_report", r["change"]) for r in rows], float)  # S x sizes
    base = np.asarray([r.get("change_report", r["change"]) for r in base_rows], float) if base_rows else None
    choice = choose_length(base_rows if base_rows else rows, [float(x) for x in STEP_SIZES[:report.shape[1]]]
                           if report.ndim == 2 else None)
    cos = np.asarray([r["fd_cosine"] for r in rows], float)
    cos_stats = cluster_mean(cos, np.arange(len(cos)), runs=runs,
                             min_states=MIN_INTERVAL_STATES) if np.isfinite(cos).any() else None
    out: dict[str, Any] = {"n_states": int(len(np.unique(states))), "n_runs": int(len(np.unique(runs))),
                           "stuck_states": int(sum(bool(r["stuck"]) for r in rows)),
                           "fd_cosine_states": int(np.isfinite(cos).sum()),
                           "fd_cosine": cos_stats["mean"] if cos_stats else float("nan"),
                           "fd_cosine_ci_low": cos_stats["ci_low"] if cos_stats else float("nan"),
                           "fd_cosine_ci_high": cos_stats["ci_high"] if cos_stats else float("nan"),
                           "length_choice": choice, "chosen_size": choice["chosen_size"],
                           "no_helpful_length": choice["chosen_index"] is None}
    by_size = []
    for j, size in enumerate(STEP_SIZES[:report.shape[1]]):
        sj = cluster_mean(report[:, j], states, baseline=None if base is None else base[:, j], runs=runs,
                          min_states=MIN_INTERVAL_STATES)
        by_size.append({"size": size, "improvement": sj["mean"], "ci_low": sj["ci_low"], "ci_high": sj["ci_high"],
                        "baseline_improves_share": choice["baseline_improves_share"][j],
                        "baseline_helps": choice["baseline_helps"][j], "chosen": j == choice["chosen_index"],
                        **({"delta": sj["delta"], "delta_ci_low": sj["delta_ci_low"], "delta_ci_high": sj["delta_ci_high"]}
                           if base is not None else {})})
    out["by_step_size"] = by_size
    # the headline: the chosen length; with none (no headline), the record still stores the smallest length's
    # change (an ok record carries a finite ``improvement``), flagged ``improvement_is_headline: false``
    j = choice["chosen_index"] if choice["chosen_index"] is not None else 0
    at = by_size[j] if by_size else {}
    nan = float("nan")
    out.update(improvement=at.get("improvement", nan), improvement_ci_low=at.get("ci_low", nan),
               improvement_ci_high=at.get("ci_high", nan), improvement_at=at.get("size"),
               improvement_is_headline=choice["chosen_index"] is not None)
    if base is not None:
        out.update(delta_improvement=at.get("delta", nan), delta_improvement_ci_low=at.get("delta_ci_low", nan),
                   delta_improvement_ci_high=at.get("delta_ci_high", nan))
    return out


def descent_path(results_dir: Path, task: str, method: str, profile: str, key: str) -> Path:
    return Path(results_dir) / "descent" / profile / task / f"{method}-{key[:10]}.json"


def run_descent(task_name: str, method_name: str, profile: str, opts: RunOptions,
                task_params: dict | None = None, method_params: dict | None = None) -> dict[str, Any]:
    """Descent-probe one (task, method) from the states of the task's shared pool; returns (and stores) its record."""
    task = get_task(task_name, **(task_params or {}))
    method = method_for(task, method_name, **(method_params or {}))
    ident = probe_identity("descent", task, method, profile, descent_settings(), opts.data_root, opts.download)
    path = descent_path(opts.results_dir, task_name, method_name, profile, ident.key)

    def base() -> dict[str, Any]:
        return {"kind": "descent", "key": ident.key, "task": task_name, "method": method_name, "profile": profile,
                "task_params": task.p, "method_params": method.p, "metric_name": task.metric_name,
                "higher_is_better": task.higher_is_better, "settings": descent_settings(),
                "protocol_version": PROTOCOL_VERSION, "descent_version": DESCENT_VERSION,
                "probe_code_fingerprint": ident.provenance["probe_code_fingerprint"],
                "environment": environment(opts.device), "provenance": ident.provenance}

    def work() -> dict[str, Any]:
        setup = prepare_probe(task, method, profile, opts, ident.data_fingerprint)
        pool = setup.pool

        def measure(loss_fn: Callable) -> dict[str, Any]:
            return descent_probe(task, setup.data, pool, loss_fn, opts.device, setup.profile.batch_size,
                                 optimizer=setup.profile.optimizer)

        base_name = baseline_method(task)
        cache_key = json.dumps([pool.digest, task.config(), profile, descent_settings()], sort_keys=True, default=str)
        if is_baseline(task, method, method_name):
            mine = base_res = _BASELINE_CACHE[cache_key] = measure(method.make_loss(task))
        else:
            if cache_key not in _BASELINE_CACHE:
                _BASELINE_CACHE[cache_key] = measure(method_for(task, base_name).make_loss(task))
            base_res = _BASELINE_CACHE[cache_key]
            mine = measure(method.make_loss(task))
        return dict(pool_sha256=pool.digest, pool=pool.summary(), pool_file=pool_file(task_name, profile, pool),
                    artifact=setup.artifact, baseline=base_name, halves=mine["halves"],
                    **summarise(mine["states"], base_res["states"]), states=mine["states"])

    return recorded(path, opts.force, base, lambda: method.supports(task), work, key=ident.key, log=opts.log,
                    expect={"kind": "descent", "task": task_name, "method": method_name, "profile": profile})


def descent_line(rec: dict[str, Any]) -> str:
    """One line per descent record for the CLI: the change at the chosen length (report half), its paired
    difference to the baseline, the per-length curve."""
    head = f"descent {rec['task']:16s} {rec['method']:12s} {rec['profile']:6s}: "
    if rec["status"] != "ok":
        return head + f"{rec['status']}: {rec.get('reason', '')}".splitlines()[0]

    def f(v: Any) -> str:
        return "nan" if v is None or v != v else f"{v:+.4f}"

    sizes = " / ".join(f(b.get("improvement")) for b in rec.get("by_step_size") or [])
    lengths = "/".join(f"{100 * float(b['size']):g}%" for b in rec.get("by_step_size") or [])
    curve = f"(curve at {lengths} of |theta|: {sizes})"
    if not rec.get("improvement_is_headline", True):
        return head + f"no length helps the baseline {rec['baseline']}: no headline {curve}"
    return head + (f"at {100 * float(rec['chosen_size']):g}% of |theta|: change {f(rec['improvement'])} "
                   f"[{f(rec['improvement_ci_low'])}, {f(rec['improvement_ci_high'])}] vs {rec['baseline']} "
                   f"{f(rec.get('delta_improvement'))} [{f(rec.get('delta_improvement_ci_low'))}, "
                   f"{f(rec.get('delta_improvement_ci_high'))}] {curve}, output-layer cosine {f(rec['fd_cosine'])} "
                   f"over {int(rec['n_states'])} states")
