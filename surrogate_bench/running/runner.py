"""Run one (task, method, profile, seed): prepare, train with checkpoints, evaluate, record.

A finished record is reused only when its stored key is this run's key (unless forced); a killed run
resumes from its last checkpoint; any fault inside a run becomes a *failed* record and the grid goes on.
The spec is resolved once (:func:`.spec.resolve`) and the resolved task and method are passed along.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..plugins.contracts import Method, PrepareContext, Task
from ..plugins.errors import NonFiniteLoss
from ..stats.bootstrap import bootstrap_interval
from ..store.provenance import provenance
from ..store.records import recorded
from .checkpoint import checkpoint_path, load_checkpoint, restore, rng_state, save_checkpoint
from .data_cache import check_nonempty, load_task_data, without_test
from .environment import environment, seed_everything
from .options import DeadlineReached, RunOptions, SimulatedCrash
from .progress import StepBar
from .spec import PROTOCOL_VERSION, Fingerprints, Resolved, RunSpec, resolve
from .step import make_optimizer, make_scheduler, predict, score

__all__ = ["DeadlineReached", "RunOptions", "RunSpec", "UndefinedMetric", "base_record", "resolve", "run_one",
           "run_resolved"]


class UndefinedMetric(ValueError):
    """The exact metric of the test split is NaN / infinite: the run has no result (a failed record)."""


def base_record(spec: RunSpec, key: str, task: Task, method: Method, opts: RunOptions,
                fp: Fingerprints) -> dict[str, Any]:
    """The fields every record of this run carries, whatever its outcome."""
    return {
        "kind": "run",
        "key": key,
        "protocol_version": PROTOCOL_VERSION,
        "task": spec.task,
        "method": spec.method,
        "task_params": task.p,
        "method_params": method.p,
        "profile": spec.profile,
        "profile_settings": spec.profile_of(task).as_dict(),
        "profile_params": dict(spec.profile_params),
        "seed": spec.seed,
        "metric_name": task.metric_name,
        "higher_is_better": task.higher_is_better,
        "evaluate_test": spec.evaluate_test,
        "environment": environment(opts.device),
        "provenance": provenance(task, method, fp.code, fp.data),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_one(spec: RunSpec, opts: RunOptions) -> dict[str, Any]:
    """Run (or reuse) one run; always returns its record, never raises for per-run faults."""
    return run_resolved(resolve(spec, opts), opts)


def run_resolved(r: Resolved, opts: RunOptions) -> dict[str, Any]:
    """:func:`run_one` for a spec already resolved (its task and method built once)."""
    def work() -> dict[str, Any]:
        if r.data_error is not None:
            raise r.data_error
        return train(r, opts)

    never_reuse = opts.force or r.data_error is not None  # missing data: a skip, whatever sits at the path
    record = recorded(r.path, never_reuse, lambda: base_record(r.spec, r.key, r.task, r.method, opts, r.fp),
                      lambda: r.method.supports(r.task), work, passthrough=(SimulatedCrash, DeadlineReached),
                      key=r.key, log=opts.log, expect=r.spec.expected_fields())
    if record["status"] == "ok" and not record.get("reused"):
        checkpoint_path(opts.results_dir, r.key).unlink(missing_ok=True)
    return record


def train(r: Resolved, opts: RunOptions) -> dict[str, Any]:
    """Train the resolved run to the end (resuming from its checkpoint) and return the result fields."""
    spec, task, method, key = r.spec, r.task, r.method, r.key
    device = opts.device
    profile = spec.profile_of(task)
    data = load_task_data(task, opts.data_root, opts.download, r.fp.data)
    if not spec.evaluate_test:
        data = without_test(data)
    data = data.limit(profile).to(device)
    check_nonempty(task, data, spec.evaluate_test)
    seed_everything(spec.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(spec.seed)

    model = task.build_model().to(device)
    if device.type == "cuda" and task.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ctx = PrepareContext(data=data, device=device, profile=profile, profile_name=spec.profile,
                         seed=spec.seed, artifacts_dir=Path(opts.results_dir) / "artifacts", log=opts.log)
    artifact = method.prepare(task, ctx)
    loss_fn = method.make_loss(task)
    optimizer = make_optimizer(profile, model.parameters())
    scheduler = make_scheduler(profile, optimizer)

    n = len(data.train)
    bs = min(profile.batch_size, n)
    steps = n // bs
    history: list[dict[str, Any]] = []
    start_epoch, train_time, seen, mid = 0, 0.0, 0, None
    ckpt_file = checkpoint_path(opts.results_dir, key)
    for stale in ckpt_file.parent.glob(f".{ckpt_file.name}.*.tmp"):  # left by a kill mid-save; we hold the key's lock
        stale.unlink(missing_ok=True)
    if opts.force:
        ckpt_file.unlink(missing_ok=True)
    state = load_checkpoint(ckpt_file, key, opts.log)
    resumed = state and restore(state, model, optimizer, scheduler, gen, profile.epochs, steps, ckpt_file, opts.log)
    if resumed:
        history, start_epoch, mid = resumed["history"], resumed["epoch"], resumed["mid"]
        train_time, seen = resumed["train_time"], resumed["seen"]
        where = f", step {mid['step']}" if mid else ""
        opts.log(f"resuming {spec.task}/{spec.method} seed {spec.seed} from epoch {start_epoch}/{profile.epochs}"
                 + where)

    def snapshot(epochs_done: int, elapsed: float, inside: dict[str, Any] | None = None) -> None:
        save_checkpoint(ckpt_file, {
            "key": key, "epoch": epochs_done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_state(gen), "history": history,
            "train_time": elapsed, "seen": seen, "artifact": json.dumps(artifact, default=str),
            "mid_epoch": inside,
        })

    from .step_capture import StepCapture

    stepper = StepCapture(task, model, loss_fn, optimizer, gen, device, profile.amp, opts.step_capture, opts.log)
    sign = 1.0 if task.higher_is_better else -1.0
    name = f"{spec.task}/{spec.method}/s{spec.seed}"
    bar = StepBar(profile.epochs * steps, start_epoch * steps + (int(mid["step"]) if mid else 0), name, opts.progress)
    bar.epoch = f"epoch {start_epoch + 1}/{profile.epochs} "
    for epoch in range(start_epoch, profile.epochs):
        model.train()
        losses = torch.empty(steps, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = last_save = time.perf_counter()
        if mid is not None:  # resume inside this epoch: same order, losses so far, RNG as saved
            perm, first = mid["perm"].to(device), int(mid["step"])
            losses[:first] = mid["losses"].to(device)
            mid = None
        else:
            perm, first = torch.randperm(n, device=device, generator=gen), 0
        for step in range(first, steps):
            idx = perm[step * bs:(step + 1) * bs]
            losses[step] = stepper(data.train.x[idx], data.train.y[idx])
            bar.step(losses, step)
            inside = {"step": step + 1, "perm": perm, "losses": losses[:step + 1]}
            if opts.deadline is not None and time.time() >= opts.deadline and step + 1 < steps:
                snapshot(epoch, train_time + time.perf_counter() - t0, _to_cpu(inside))
                raise DeadlineReached(f"{name}: deadline reached at epoch {epoch + 1}, step {step + 1}; checkpointed")
            every = opts.checkpoint_every_s
            if every is not None and step + 1 < steps and time.perf_counter() - last_save >= every:
                snapshot(epoch, train_time + time.perf_counter() - t0, _to_cpu(inside))
                last_save = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        seen += steps * bs
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad_step = int((~finite).nonzero()[0])
            raise NonFiniteLoss(f"non-finite loss at epoch {epoch + 1}, step {bad_step + 1}")
        check_finite_parameters(model, epoch + 1)  # a loss can stay finite on NaN outputs (rank-based AP losses)
        scheduler.step()
        val = float("nan")
        if len(data.val):
            val_preds = predict(task, model, data.val, device, profile, stepper.predict_batch)
            check_finite_predictions(val_preds, f"validation predictions after epoch {epoch + 1}")
            val = score(task, val_preds, data.val.y)
        history.append({"epoch": epoch + 1, "train_loss": float(losses.mean()), "val_metric": val,
                        "lr": optimizer.param_groups[0]["lr"], "train_time_s": round(train_time, 3)})
        bar.epoch_done(epoch + 1, profile.epochs, history[-1]["train_loss"], val)
        snapshot(epoch + 1, train_time)
        if opts.stop_after_epochs is not None and epoch + 1 >= opts.stop_after_epochs:
            raise SimulatedCrash(f"stopped after epoch {epoch + 1}")
        if opts.deadline is not None and time.time() >= opts.deadline and epoch + 1 < profile.epochs:
            raise DeadlineReached(f"{name}: deadline reached after epoch {epoch + 1}; checkpointed")
    bar.close()

    result: dict[str, Any] = {"test_metric": None, "test_metric_ci": None}
    if spec.evaluate_test:
        result.update(test_result(r, model, data.test, device, profile, stepper.predict_batch))
    vals = [h["val_metric"] for h in history if h["val_metric"] == h["val_metric"]]
    return {
        **result,
        "best_val_metric": max(vals, key=lambda v: sign * v) if vals else None,
        "final_val_metric": vals[-1] if vals else None,
        "epochs": profile.epochs,
        "history": history,
        "train_time_s": round(train_time, 3),
        "train_samples_per_s": round(seen / train_time, 1) if train_time > 0 else None,
        "n_train": n, "n_val": len(data.val), "n_test": len(data.test),
        "artifact": artifact,
        "step_capture": stepper.describe(),
    }


def test_result(r: Resolved, model: torch.nn.Module, test, device: torch.device, profile, batch_fn=None) -> dict:
    """The exact test metric, its test-set bootstrap interval and the task's secondary metrics."""
    task = r.task
    preds = predict(task, model, test, device, profile, batch_fn)
    check_finite_predictions(preds, "test predictions")
    value = score(task, preds, test.y)
    if not math.isfinite(value):
        raise UndefinedMetric(f"the test {task.metric_name} is undefined ({value}) on {len(test)} test samples of "
                              f"{r.spec.task} with {task.config()['params']} (e.g. no positive or visible target)")
    low, high = task.metric_range
    if not low - 1e-9 <= value <= high + 1e-9:
        raise UndefinedMetric(f"the test {task.metric_name} {value:g} of {r.spec.task} lies outside its declared range "
                              f"[{low:g}, {high:g}] (a metric bug in the task plugin, not a result)")
    ci = bootstrap_interval(task.score, preds, test.y)  # test-set sampling error of this run
    out: dict[str, Any] = {"test_metric": value, "test_metric_ci": list(ci) if ci else None}
    extra = task.extra_metrics(preds, test.y)
    if extra:
        out["test_metrics_extra"] = {k: float(v) for k, v in extra.items()}
    return out


def check_finite_parameters(model: torch.nn.Module, epoch: int) -> None:
    """A diverged model fails its run even when its loss hid it (one device sync per epoch)."""
    if not bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()):
        raise NonFiniteLoss(f"non-finite model parameters after epoch {epoch} (the model diverged)")


def check_finite_predictions(preds: torch.Tensor, what: str) -> None:
    """NaN / infinite decoded outputs are a diverged model, never a metric (e.g. AP of NaN scores)."""
    if preds.is_floating_point() and not bool(preds.isfinite().all()):
        raise NonFiniteLoss(f"non-finite {what} (the model diverged)")


def _to_cpu(inside: dict[str, Any]) -> dict[str, Any]:
    return {"step": inside["step"], "perm": inside["perm"].cpu(), "losses": inside["losses"].cpu()}


_MOVED = {  # names that lived here before 0.2.0 -> their module now
    "load_task_data": "data_cache", "check_nonempty": "data_cache", "make_optimizer": "step", "autocast": "step",
    "train_step": "step", "predict": "step", "score": "step", "evaluate": "step", "checkpoint_path": "checkpoint",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "checkpoint_problem": "checkpoint",
    "CHECKPOINT_FIELDS": "checkpoint", "Fingerprints": "spec", "Resolved": "spec", "DATA_UNAVAILABLE": "spec",
    "_SimulatedCrash": "options",
}


def __getattr__(name: str) -> Any:
    """Names moved out of this module in 0.2.0 still resolve, with a DeprecationWarning, until 0.3.0."""
    if name in _MOVED:
        import importlib
        import warnings

        where = f"{__package__}.{_MOVED[name]}"
        new = "SimulatedCrash" if name == "_SimulatedCrash" else name
        warnings.warn(f"surrogate_bench.running.runner.{name} moved to {where}.{new}", DeprecationWarning, 2)
        return getattr(importlib.import_module(where), new)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
