"""Run one (task, method, profile, seed): prepare, train with per-epoch checkpoints, evaluate, record.

A run's key covers its settings and the fingerprints of the code and data that produce it
(:mod:`.provenance`); a finished record is reused only when its stored key is that key (unless forced);
a killed run resumes from its last complete epoch; any fault inside a run becomes a *failed* record
and the grid goes on.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..plugins.contracts import Method, PrepareContext, Profile, Split, Task, TaskData
from .environment import environment, seed_everything
from .progress import StepBar
from ..plugins.errors import DataCorrupt, NonFiniteLoss, SuiteError
from ..plugins.registry import get_task, method_for
from .provenance import code_fingerprint, data_fingerprint, provenance
from ..taskkit.bootstrap import bootstrap_interval
from .store import recorded

DATA_UNAVAILABLE = "unavailable"  # the data fingerprint of a run whose data files are missing: never reused


@dataclass(frozen=True)
class Fingerprints:
    """What code and which data a run reads (see :mod:`.provenance`)."""

    code: str
    data: str


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run."""

    task: str
    method: str
    profile: str = "quick"
    seed: int = 0
    task_params: tuple[tuple[str, Any], ...] = ()
    method_params: tuple[tuple[str, Any], ...] = ()
    evaluate_test: bool = True  # False: a tuning trial, which never loads or scores the test split

    def build(self) -> tuple[Task, Method]:
        task = get_task(self.task, **dict(self.task_params))
        return task, method_for(task, self.method, **dict(self.method_params))

    def fingerprints(self, data_root: Path) -> Fingerprints:
        """Code and data fingerprints; the data one is ``unavailable`` when a data file is missing."""
        task, method = self.build()
        try:
            data = data_fingerprint(task, Path(data_root))
        except Exception:  # DataUnavailable, or a file that cannot be read
            data = DATA_UNAVAILABLE
        return Fingerprints(code_fingerprint(task, method), data)

    def identity(self, fp: Fingerprints) -> dict[str, Any]:
        task, method = self.build()
        out = {
            "task": task.config(),
            "method": method.config(),
            "profile": self.profile,
            "profile_settings": task.profile(self.profile).as_dict(),
            "seed": self.seed,
            "code_fingerprint": fp.code,
            "data_fingerprint": fp.data,
        }
        if not self.evaluate_test:
            out["evaluate_test"] = False
        return out

    def key(self, fp: Fingerprints) -> str:
        blob = json.dumps(self.identity(fp), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def expected_fields(self) -> dict[str, Any]:
        """The fields a record of this run must carry besides its key (checked before a record is reused)."""
        return {"kind": "run", "task": self.task, "method": self.method, "profile": self.profile, "seed": self.seed}

    def key_at(self, data_root: Path) -> str:
        """The key of this run on the data under ``data_root`` with the code as it is now."""
        return self.key(self.fingerprints(data_root))

    def record_path(self, results_dir: Path, key: str) -> Path:
        """``runs/<profile>/<task>/<method>-s<seed>-<key>.json``; tuning trials under ``tuning/.../trials``."""
        where = ("runs", self.profile, self.task) if self.evaluate_test else ("tuning", self.profile, self.task, "trials")
        return Path(results_dir).joinpath(*where) / f"{self.method}-s{self.seed}-{key[:10]}.json"


@dataclass
class RunOptions:
    results_dir: Path
    data_root: Path
    device: torch.device
    force: bool = False
    download: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    # test hook: raise after this many epochs (simulates a crash between checkpoints)
    stop_after_epochs: int | None = None
    # also checkpoint inside an epoch when this many seconds passed since the last save (None: epoch ends only)
    checkpoint_every_s: float | None = 60.0
    # training step: auto (CUDA graph on CUDA, eager on CPU) | graph | compile | eager; None: $SURROGATE_BENCH_STEP_CAPTURE or auto
    step_capture: str | None = None
    # wall-clock deadline (time.time()): checkpoint and raise DeadlineReached once passed (--max-minutes)
    deadline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
_DATA_CACHE: dict[tuple, TaskData] = {}


def load_task_data(task: Task, data_root: Path, download: bool, fingerprint: str | None = None) -> TaskData:
    """Load a task's data once per process (keyed by task config, root and data fingerprint)."""
    key = (json.dumps(task.config(), sort_keys=True, default=str), str(data_root), fingerprint)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # keep at most one dataset in memory
        _DATA_CACHE[key] = task.load(data_root, download=download)
    return _DATA_CACHE[key]


def make_optimizer(profile: Profile, params) -> torch.optim.Optimizer:
    if profile.optimizer == "sgd":
        return torch.optim.SGD(params, lr=profile.lr, momentum=profile.momentum,
                               weight_decay=profile.weight_decay, nesterov=profile.nesterov)
    if profile.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=profile.lr, weight_decay=profile.weight_decay)
    if profile.optimizer == "adam":
        return torch.optim.Adam(params, lr=profile.lr, weight_decay=profile.weight_decay)
    raise SuiteError(f"unknown optimizer {profile.optimizer!r} in profile")


def autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(task: Task, model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               generator: torch.Generator, device: torch.device, amp: bool) -> Tensor:
    """One optimisation step on a storage batch; returns the detached loss (no host sync)."""
    xb, y = task.train_batch(x, y, generator)
    with autocast(device, amp):
        out = model(xb)
    loss = loss_fn(out.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict(task: Task, model: nn.Module, split: Split, device: torch.device, profile: Profile,
            batch_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Decoded predictions for a whole split, evaluated in batches (by ``batch_fn`` when given: a captured one)."""
    model.eval()
    preds = []
    for start in range(0, len(split), profile.eval_batch_size):
        if batch_fn is not None:
            preds.append(batch_fn(split.x[start:start + profile.eval_batch_size]))
            continue
        xb = task.inputs(split.x[start:start + profile.eval_batch_size], train=False)
        with autocast(device, profile.amp):
            out = model(xb)
        preds.append(task.decode(out.float()))
    return torch.cat(preds)


def score(task: Task, predictions: Tensor, targets: Tensor) -> float:
    """The task's exact metric of decoded predictions (NaN where undefined, e.g. no positive)."""
    return float(task.score(predictions, targets))


def evaluate(task: Task, model: nn.Module, split: Split, device: torch.device, profile: Profile,
             batch_fn: Callable[[Tensor], Tensor] | None = None) -> float:
    return score(task, predict(task, model, split, device, profile, batch_fn), split.y)


# ------------------------------------------------------------------------------------------
def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "gen": gen.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": list(random.getstate()[1]) + [random.getstate()[0]],
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["gen"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    r = state["random"]
    random.setstate((r[-1], tuple(r[:-1]), None))


def checkpoint_path(results_dir: Path, key: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{key}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import io

    from .store import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str, "epoch": int, "model": dict, "optimizer": dict, "scheduler": dict, "rng": dict, "history": list,
    "train_time": (int, float), "seen": int}


def checkpoint_problem(state: Any, key: str) -> str | None:
    """Why a loaded checkpoint cannot resume the run ``key`` (None when its structure fits)."""
    if not isinstance(state, dict):
        return f"not a dict but {type(state).__name__}"
    for name, types in CHECKPOINT_FIELDS.items():
        if name not in state:
            return f"no {name!r}"
        if not isinstance(state[name], types) or isinstance(state[name], bool):
            return f"{name!r} is {type(state[name]).__name__}"
    if state["key"] != key:
        return "written for another run key"
    mid = state.get("mid_epoch")
    if mid is not None and not (isinstance(mid, dict) and isinstance(mid.get("step"), int)
                                and isinstance(mid.get("perm"), Tensor) and isinstance(mid.get("losses"), Tensor)):
        return "malformed 'mid_epoch'"
    return None


def load_checkpoint(path: Path, key: str, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The checkpoint for this key, or None if missing, unreadable, malformed or for another key (``log``
    hears why, except when it is missing)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        problem = f"unreadable ({type(exc).__name__})"
    else:
        problem = checkpoint_problem(state, key)
    if problem is not None:
        if log:
            log(f"ignoring checkpoint {path}: {problem}; starting from scratch")
        return None
    return state


# ------------------------------------------------------------------------------------------
def base_record(spec: RunSpec, key: str, task: Task, method: Method, opts: RunOptions,
                fp: Fingerprints) -> dict[str, Any]:
    return {
        "kind": "run",
        "key": key,
        "task": spec.task,
        "method": spec.method,
        "task_params": task.p,
        "method_params": method.p,
        "profile": spec.profile,
        "profile_settings": task.profile(spec.profile).as_dict(),
        "seed": spec.seed,
        "metric_name": task.metric_name,
        "higher_is_better": task.higher_is_better,
        "evaluate_test": spec.evaluate_test,
        "environment": environment(opts.device),
        "provenance": provenance(task, method, fp.code, fp.data),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclass(frozen=True)
class Resolved:
    """A spec bound to the code and data it would read now: its key, record path and any data fault."""

    spec: RunSpec
    task: Task
    method: Method
    fp: Fingerprints
    key: str
    path: Path
    data_error: Exception | None = None


def resolve(spec: RunSpec, opts: RunOptions) -> Resolved:
    """Fingerprint code and data *before* any reuse lookup. Missing data files: with ``download`` the task's
    loader fetches (or extracts) them first; otherwise (or if that fails) the key carries ``unavailable``
    and the fault, so the record is a data skip, never a reuse."""
    task, method = spec.build()
    code = code_fingerprint(task, method)
    error: Exception | None = None
    try:
        data = data_fingerprint(task, Path(opts.data_root))
    except Exception as exc:  # DataUnavailable, or an unreadable file
        data, error = DATA_UNAVAILABLE, exc
    if error is not None and opts.download and not method.supports(task):
        try:
            load_task_data(task, opts.data_root, True)
            data, error = data_fingerprint(task, Path(opts.data_root)), None
        except Exception as exc:
            error = exc
    fp = Fingerprints(code, data)
    key = spec.key(fp)
    return Resolved(spec, task, method, fp, key, spec.record_path(opts.results_dir, key), error)


def run_one(spec: RunSpec, opts: RunOptions) -> dict[str, Any]:
    """Run (or reuse) one run; always returns its record, never raises for per-run faults."""
    r = resolve(spec, opts)
    task, method, key = r.task, r.method, r.key

    def work() -> dict[str, Any]:
        if r.data_error is not None:
            raise r.data_error
        return _train(spec, key, task, method, opts, r.fp)

    never_reuse = opts.force or r.data_error is not None  # missing data: a skip, whatever sits at the path
    record = recorded(r.path, never_reuse, lambda: base_record(spec, key, task, method, opts, r.fp),
                      lambda: method.supports(task), work, passthrough=(_SimulatedCrash, DeadlineReached), key=key,
                      log=opts.log, expect=spec.expected_fields())
    if record["status"] == "ok" and not record.get("reused"):
        checkpoint_path(opts.results_dir, key).unlink(missing_ok=True)
    return record


class UndefinedMetric(ValueError):
    """The exact metric of the test split is NaN / infinite: the run has no result (a failed record)."""


def check_nonempty(task: Task, data: TaskData, with_test: bool = True) -> None:
    """A task whose loaded train (or test) split is empty fails in one line, not deep in the training loop."""
    for name in ("train", "test") if with_test else ("train",):
        if len(getattr(data, name)) == 0:
            raise DataCorrupt(f"task {task.name!r} loaded an empty {name} split; expected at least one sample "
                              f"(check its data files and size parameters)")


class _SimulatedCrash(RuntimeError):
    """Raised by the test hook ``stop_after_epochs`` to mimic a kill between epochs."""


def _without_test(data: TaskData) -> TaskData:
    """Train and validation only: the test split is not touched (tuning trials)."""
    return TaskData(data.train, data.val, Split(data.val.x[:0], data.val.y[:0]), data.extra)


class DeadlineReached(RuntimeError):
    """``RunOptions.deadline`` passed: the run saved a checkpoint and stopped; the same command resumes it."""


def _train(spec: RunSpec, key: str, task: Task, method: Method, opts: RunOptions,
           fp: Fingerprints) -> dict[str, Any]:
    device = opts.device
    profile = task.profile(spec.profile)
    data = load_task_data(task, opts.data_root, opts.download, fp.data)
    if not spec.evaluate_test:
        data = _without_test(data)
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
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(profile.milestones), profile.gamma)

    history: list[dict[str, Any]] = []
    start_epoch, train_time, seen = 0, 0.0, 0
    ckpt_file = checkpoint_path(opts.results_dir, key)
    n_steps = len(data.train) // min(profile.batch_size, len(data.train))
    for stale in ckpt_file.parent.glob(f".{ckpt_file.name}.*.tmp"):  # left by a kill mid-save; we hold the key's lock
        stale.unlink(missing_ok=True)
    if opts.force:
        ckpt_file.unlink(missing_ok=True)
    state = load_checkpoint(ckpt_file, key, opts.log)
    mid = None
    if state is not None:
        fresh = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "rng": _rng_state(gen)})
        try:  # a checkpoint that loads but does not fit (other shapes, broken RNG state) is ignored, not fatal
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"], gen)
            history, start_epoch = list(state["history"]), int(state["epoch"])
            train_time, seen = float(state["train_time"]), int(state["seen"])
            mid = state.get("mid_epoch")  # {"step", "perm", "losses"} when saved inside epoch start_epoch + 1
            if not 0 <= start_epoch <= profile.epochs or (mid and not 0 < int(mid["step"]) < n_steps):
                raise ValueError(f"epoch {start_epoch} / step {mid and mid['step']} out of range")
        except Exception as exc:
            opts.log(f"ignoring checkpoint {ckpt_file}: it does not fit this run ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''}); starting from scratch")
            model.load_state_dict(fresh["model"])
            optimizer.load_state_dict(fresh["optimizer"])
            scheduler.load_state_dict(fresh["scheduler"])
            _set_rng_state(fresh["rng"], gen)
            history, start_epoch, train_time, seen, mid = [], 0, 0.0, 0, None
        else:
            where = f", step {mid['step']}" if mid else ""
            opts.log(f"resuming {spec.task}/{spec.method} seed {spec.seed} from epoch {start_epoch}/{profile.epochs}"
                     + where)

    def snapshot(epochs_done: int, elapsed: float, inside: dict[str, Any] | None = None) -> None:
        save_checkpoint(ckpt_file, {
            "key": key, "epoch": epochs_done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(gen), "history": history,
            "train_time": elapsed, "seen": seen, "artifact": json.dumps(artifact, default=str),
            "mid_epoch": inside,
        })

    from .step_capture import StepCapture

    stepper = StepCapture(task, model, loss_fn, optimizer, gen, device, profile.amp, opts.step_capture, opts.log)
    n = len(data.train)
    bs = min(profile.batch_size, n)
    steps = n // bs
    sign = 1.0 if task.higher_is_better else -1.0
    bar = StepBar(profile.epochs * steps, start_epoch * steps + (int(mid["step"]) if mid else 0),
                  f"{spec.task}/{spec.method}/s{spec.seed}", opts.progress)
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
            if opts.deadline is not None and time.time() >= opts.deadline and step + 1 < steps:
                snapshot(epoch, train_time + time.perf_counter() - t0,
                         {"step": step + 1, "perm": perm.cpu(), "losses": losses[:step + 1].cpu()})
                raise DeadlineReached(f"{spec.task}/{spec.method} seed {spec.seed}: deadline reached at epoch "
                                      f"{epoch + 1}, step {step + 1}; checkpointed")
            every = opts.checkpoint_every_s
            if every is not None and step + 1 < steps and time.perf_counter() - last_save >= every:
                snapshot(epoch, train_time + time.perf_counter() - t0,
                         {"step": step + 1, "perm": perm.cpu(), "losses": losses[:step + 1].cpu()})
                last_save = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        seen += steps * bs
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad_step = int((~finite).nonzero()[0])
            raise NonFiniteLoss(f"non-finite loss at epoch {epoch + 1}, step {bad_step + 1}")
        scheduler.step()
        val = evaluate(task, model, data.val, device, profile, stepper.predict_batch) if len(data.val) else float("nan")
        history.append({"epoch": epoch + 1, "train_loss": float(losses.mean()), "val_metric": val,
                        "lr": optimizer.param_groups[0]["lr"], "train_time_s": round(train_time, 3)})
        bar.epoch_done(epoch + 1, profile.epochs, history[-1]["train_loss"], val)
        snapshot(epoch + 1, train_time)
        if opts.stop_after_epochs is not None and epoch + 1 >= opts.stop_after_epochs:
            raise _SimulatedCrash(f"stopped after epoch {epoch + 1}")
        if opts.deadline is not None and time.time() >= opts.deadline and epoch + 1 < profile.epochs:
            raise DeadlineReached(f"{spec.task}/{spec.method} seed {spec.seed}: deadline reached after epoch "
                                  f"{epoch + 1}; checkpointed")
    bar.close()

    test, test_ci = None, None
    if spec.evaluate_test:
        test_preds = predict(task, model, data.test, device, profile, stepper.predict_batch)
        test = score(task, test_preds, data.test.y)
        test_ci = bootstrap_interval(task.score, test_preds, data.test.y)  # test-set sampling error of this run
        if not math.isfinite(test):
            raise UndefinedMetric(f"the test {task.metric_name} is undefined ({test}) on {len(data.test)} test "
                                  f"samples of {spec.task} with {task.config()['params']} (e.g. no positive or "
                                  "visible target)")
    vals = [h["val_metric"] for h in history if h["val_metric"] == h["val_metric"]]
    best_val = max(vals, key=lambda v: sign * v) if vals else None
    return {
        "test_metric": test,
        "test_metric_ci": list(test_ci) if test_ci else None,
        "best_val_metric": best_val,
        "final_val_metric": vals[-1] if vals else None,
        "epochs": profile.epochs,
        "history": history,
        "train_time_s": round(train_time, 3),
        "train_samples_per_s": round(seen / train_time, 1) if train_time > 0 else None,
        "n_train": n, "n_val": len(data.val), "n_test": len(data.test),
        "artifact": artifact,
        "step_capture": stepper.describe(),
    }
