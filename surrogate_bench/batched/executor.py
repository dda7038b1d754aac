"""Many runs as one: K runs of one task and profile trained together as a single stacked model.

``run_batched(specs, opts)`` trains K runs (different seeds, methods or method parameters; one task, task
parameters and profile, so one optimiser configuration) as one :class:`~.batched_model.StackedModels`:
stacked parameters and buffers, one forward over them (``vmap(functional_call)``, or per run on the stacked
tensors' slices), one optimiser over the stacked tensors. SGD (momentum, Nesterov, weight decay), Adam and RMSprop update elementwise, so every run's
update is the one its separate run would make. Each run keeps what makes it *that* run:

* its initialisation: its model is built right after ``seed_everything(seed)`` and its method prepared and
  its loss made in the order a single run would, one run after the other;
* its own ``torch.Generator`` for the data order (``randperm`` per epoch) and the augmentation draws
  (``task.train_batch`` is called per run, with its generator, on its own indices);
* its own global-RNG stream for loss randomness (UniLoss anchors, ...): the torch RNG state left after its
  ``prepare`` / ``make_loss`` is swapped in around each of its loss calls and saved after it;
* its own loss callable (``method.make_loss`` per run: stateful losses such as Smooth-AP's queue stay
  separate), called on its slice of the batched outputs; the K scalar losses are summed and back-propagated
  once (the parameters are separate, so each run's gradients are exactly its own);
* its own record, with the key and fields ``run_one`` writes plus ``"executor": "batched(K)"``; its validation
  and test evaluation run the runner's own ``predict`` / ``test_result`` on its network.

Losses: ``ce`` and ``mse-heatmap`` (stateless, no random draws) are called once per group of runs with the
same method parameters, vmapped over their slices; every other method (uniloss, reloss, smooth-ap, the AP
surrogates, plugins, ...) is called once per run, in a loop over the K runs (state, random draws or host
syncs that vmap cannot batch exactly).

A run whose loss or parameters become non-finite (checked per epoch, as a single run does) or whose loss / evaluation
raises fails alone: it gets the failed record a single run would get (same reason text), its loss is no
longer computed, and its parameters, buffers and optimiser state are zeroed (its gradients are then zero),
so it stays frozen while the group goes on. One checkpoint per group (every run's key in it) is written
atomically at epoch ends, at most every ``checkpoint_every_s`` inside an epoch and at the deadline.
The forward (:mod:`.batched_model`): ``vmap`` over the stacked tensors on CUDA, a loop of per-run
``functional_call`` on the stacked tensors' slices on CPU (bitwise a separate run's, and faster there);
``opts.extra["batched_forward"]`` = ``vmap`` / ``loop`` overrides. Not batched: ``channels_last`` and CUDA graphs
(the group step runs eagerly; see docs/batched.md).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from filelock import FileLock
from torch import Tensor
from torch.func import vmap

from ..plugins.contracts import Method, PrepareContext, Profile, Task
from ..plugins.errors import NonFiniteLoss, SuiteError
from ..store.records import os_error_line, read_record, record_problem, write_record
from .model import StackedModels
from ..running.checkpoint import save_checkpoint
from ..running.data_cache import check_nonempty, load_task_data, without_test
from ..running.environment import seed_everything
from ..running.options import DeadlineReached, RunOptions, SimulatedCrash
from ..running.runner import base_record, check_finite_predictions, run_resolved, test_result
from ..running.spec import Resolved, RunSpec, resolve
from ..running.step import autocast, make_optimizer, make_scheduler, predict, score
from ..running.step_capture import eager_loss

VMAPPED_METHODS = ("ce", "mse-heatmap")  # stateless and draw no random numbers: one vmapped call per group


# -- grouping ---------------------------------------------------------------------------------
def group_key(spec: RunSpec) -> tuple:
    """Runs with equal group keys can share one batched model (same task, task parameters, profile)."""
    return (spec.task, tuple(sorted(spec.task_params)), spec.profile, tuple(sorted(spec.profile_params)),
            spec.evaluate_test)


def group_specs(specs: Sequence[RunSpec], k: int) -> list[list[RunSpec]]:
    """Compatible specs in groups of at most ``k``, in first-seen order (each key once)."""
    buckets: dict[tuple, list[RunSpec]] = {}
    for spec in dict.fromkeys(specs):
        buckets.setdefault(group_key(spec), []).append(spec)
    return [bucket[i:i + k] for bucket in buckets.values() for i in range(0, len(bucket), k)]


def run_groups(specs: Sequence[RunSpec], opts: RunOptions, k: int) -> Iterator[dict[str, Any]]:
    """The sequential launcher with ``--batch-runs k``: finished keys are reused, the rest trained in groups."""
    pending = []
    for spec in dict.fromkeys(specs):
        r = resolve(spec, replace(opts, download=False))
        existing = None if opts.force else read_record(r.path, r.key, None, spec.expected_fields())
        if existing and existing["status"] == "ok":
            yield {**existing, "reused": True}
        else:
            pending.append(spec)
    groups = group_specs(pending, k)
    for i, group in enumerate(groups):
        if opts.deadline is not None and time.time() >= opts.deadline:
            raise DeadlineReached(f"deadline reached with {sum(map(len, groups[i:]))} run(s) not started")
        yield from run_batched(group, opts)


# -- per-run pieces -----------------------------------------------------------------------------
@dataclass
class Member:
    """One run of the group: its spec, resolved key, plugin instances, generator, loss and RNG stream."""

    r: Resolved
    gen: torch.Generator
    artifact: Any
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    stream: Tensor  # torch CPU RNG state of this run's loss stream
    cuda_stream: Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None  # the failure reason once it failed

    @property
    def spec(self) -> RunSpec:
        return self.r.spec

    @property
    def vmap_key(self) -> str | None:
        """Runs with the same key share one vmapped loss call; None: this run's loss is called on its own."""
        return repr(self.method.config()) if self.spec.method in VMAPPED_METHODS else None

    @property
    def method(self) -> Method:
        return self.r.method


def _reason(exc: BaseException) -> str:
    """The reason text ``store.recorded`` writes for a fault."""
    return f"{type(exc).__name__}: {exc}".strip()


class GroupLoss:
    """Each live run's loss on its slice of the K x B x ... outputs: vmapped per method setting where the
    method is in ``VMAPPED_METHODS``, else one call per run inside that run's own RNG stream."""

    def __init__(self, members: list[Any], device: torch.device) -> None:
        """``members``: :class:`Member` s (or anything with ``loss_fn``, ``stream``, ``cuda_stream``, ``vmap_key``)."""
        self.members, self.device = members, device
        self.cuda = device.type == "cuda"
        self.vmapped: dict[str, list[int]] = {}
        for k, m in enumerate(members):
            if m.vmap_key is not None:
                self.vmapped.setdefault(m.vmap_key, []).append(k)
        self.vmapped = {c: ks for c, ks in self.vmapped.items() if len(ks) > 1}
        self.single = [k for k in range(len(members)) if not any(k in ks for ks in self.vmapped.values())]
        self._index = {c: torch.tensor(ks, device=device) for c, ks in self.vmapped.items()}
        self.errors: dict[int, BaseException] = {}  # run -> the exception its loss raised this step

    def drop(self, k: int) -> None:
        """Stop computing run ``k``'s loss (it failed)."""
        for c, ks in list(self.vmapped.items()):
            if k in ks:
                ks.remove(k)
                if len(ks) > 1:
                    self._index[c] = torch.tensor(ks, device=self.device)
                else:
                    del self.vmapped[c], self._index[c]
                    self.single = sorted(self.single + ks)
        if k in self.single:
            self.single.remove(k)

    def __call__(self, outputs: Tensor | list[Tensor],
                 targets: list[Tensor]) -> tuple[Tensor | None, dict[int, Tensor]]:
        """(sum of the live runs' losses, run -> its detached loss) from the K x B x ... outputs or a list of
        each run's outputs."""
        stacked = isinstance(outputs, Tensor)
        total: Tensor | None = None
        values: dict[int, Tensor] = {}
        for c, ks in self.vmapped.items():
            loss_fn = self.members[ks[0]].loss_fn
            if not stacked:
                out = torch.stack([outputs[k] for k in ks])
            else:
                out = outputs if len(ks) == outputs.shape[0] else outputs.index_select(0, self._index[c])
            vec = vmap(loss_fn)(out, torch.stack([targets[k] for k in ks]))
            total = vec.sum() if total is None else total + vec.sum()
            vec = vec.detach()
            for j, k in enumerate(ks):
                values[k] = vec[j]
        for k in self.single:
            m = self.members[k]
            torch.set_rng_state(m.stream)
            if self.cuda:
                torch.cuda.set_rng_state(m.cuda_stream, self.device)
            try:
                loss = m.loss_fn(outputs[k].clone() if stacked else outputs[k], targets[k])
            except Exception as exc:  # this run's fault only
                self.errors[k] = exc
                continue
            finally:
                m.stream = torch.get_rng_state()
                if self.cuda:
                    m.cuda_stream = torch.cuda.get_rng_state(self.device)
            total = loss if total is None else total + loss
            values[k] = loss.detach()
        return total, values


class GroupStep:
    """One optimisation step of the whole group on K storage batches (K x B x ...); no host sync."""

    def __init__(self, task: Task, model: StackedModels, loss: GroupLoss, optimizer: torch.optim.Optimizer,
                 gens: list[torch.Generator], device: torch.device, amp: bool) -> None:
        self.task, self.model, self.loss, self.optimizer, self.gens = task, model, loss, optimizer, gens
        self.device, self.amp = device, amp
        self.nan = torch.full((), float("nan"), device=device)

    def __call__(self, xs: Tensor, ys: Tensor) -> Tensor:
        """K detached losses (NaN for runs whose loss is not computed)."""
        batches = [self.task.train_batch(xs[k], ys[k], g) for k, g in enumerate(self.gens)]
        xb = torch.stack([b[0] for b in batches])
        with autocast(self.device, self.amp):
            out = self.model.outputs(xb)
        out = out.float() if isinstance(out, Tensor) else [o.float() for o in out]
        total, values = self.loss(out, [b[1] for b in batches])
        self.optimizer.zero_grad(set_to_none=True)
        if total is not None:
            total.backward()
            self.optimizer.step()
        return torch.stack([values.get(k, self.nan) for k in range(len(self.gens))])


def _finite_runs(stacked: StackedModels) -> list[bool]:
    """Per run: are all its parameters finite (one device sync per epoch, as a single run's check)."""
    per = [p.detach().flatten(1).isfinite().all(1) for p in stacked.parameters()]
    return torch.stack(per).all(0).tolist()


# -- checkpoint -------------------------------------------------------------------------------
def group_checkpoint_path(results_dir: Path, keys: Sequence[str]) -> Path:
    """``checkpoints/group-<digest of the member keys>.pt``."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
    return Path(results_dir) / "checkpoints" / f"group-{digest}.pt"


def load_group_checkpoint(path: Path, keys: list[str], log: Callable[[str], None]) -> dict[str, Any] | None:
    """The group checkpoint if it is readable and written for exactly these member keys, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log(f"ignoring group checkpoint {path}: unreadable ({type(exc).__name__}); starting from scratch")
        return None
    if not isinstance(state, dict) or state.get("keys") != keys:
        log(f"ignoring group checkpoint {path}: written for other run keys; starting from scratch")
        return None
    return state


def _position(done: int, perms: Tensor, losses: Tensor) -> dict[str, Any]:
    """Where the group is inside an epoch: steps done, every run's order and its losses so far."""
    return {"step": done, "perm": perms.cpu(), "losses": losses[:, :done].cpu()}


# -- the executor -----------------------------------------------------------------------------
def run_batched(specs: Sequence[RunSpec], opts: RunOptions) -> list[dict[str, Any]]:
    """Train the specs as one batched group; one record per spec (in order), as ``run_one`` would write.

    Specs whose record is reusable, whose data is missing or whose method does not support the task go
    through ``run_one`` (reuse / skip records); the rest (at least two) are trained together.
    """
    specs = list(specs)
    if not specs:
        return []
    resolved = [resolve(s, opts) for s in specs]
    _check_compatible(resolved)
    by_key: dict[str, dict[str, Any]] = {}
    train: list[Resolved] = []
    for r in resolved:
        if r.key in by_key or any(t.key == r.key for t in train):
            continue
        if r.data_error is not None or _reusable(r, opts) or _unsupported(r):
            by_key[r.key] = run_resolved(r, opts)
        else:
            train.append(r)
    if len(train) == 1:
        by_key[train[0].key] = run_resolved(train[0], opts)
    elif train:
        with _locked_all([r.path for r in train]):
            again = [r for r in train if _reusable(r, opts)]  # another process may have finished some
            for r in again:
                by_key[r.key] = run_resolved(r, opts)
            rest = [r for r in train if r not in again]
            if len(rest) == 1:
                by_key[rest[0].key] = _single_under_lock(rest[0], opts)
            elif rest:
                by_key.update(_train_group(rest, opts))
    return [by_key[r.key] for r in resolved]


def _check_compatible(resolved: list[Resolved]) -> None:
    """One task config and one profile (so one optimiser setting) for the whole group, or a SuiteError."""
    first = resolved[0]
    for r in resolved[1:]:
        if group_key(r.spec) != group_key(first.spec) or r.task.config() != first.task.config():
            raise SuiteError(f"run_batched: {r.spec.task} {dict(r.spec.task_params)} / {r.spec.profile} cannot "
                             f"share a batched model with {first.spec.task} {dict(first.spec.task_params)} / "
                             f"{first.spec.profile} (one task, task parameters and profile per group)")
        if r.spec.profile_of(r.task).as_dict() != first.spec.profile_of(first.task).as_dict():
            raise SuiteError("run_batched: the runs' profile settings (optimiser) differ")


def _reusable(r: Resolved, opts: RunOptions) -> bool:
    if opts.force:
        return False
    rec = read_record(r.path, r.key, None, r.spec.expected_fields())
    return bool(rec and rec["status"] == "ok")


def _unsupported(r: Resolved) -> bool:
    """True when the pair is skipped (or ``supports`` raises): ``run_one`` writes that record."""
    try:
        return bool(r.method.supports(r.task))
    except Exception:
        return True


def _single_under_lock(r: Resolved, opts: RunOptions) -> dict[str, Any]:
    """A lone run while its lock is held by us: trained as a group of one (its record says batched(1))."""
    return _train_group([r], opts)[r.key]


@contextlib.contextmanager
def _locked_all(paths: list[Path]) -> Iterator[None]:
    """Hold every member's record lock (the ``<record>.lock`` that ``store.recorded`` takes), in path order."""
    locks = []
    try:
        for path in sorted(paths):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(str(path) + ".lock")
                lock.acquire()
            except OSError as exc:
                raise SuiteError(f"cannot lock record {path}: {os_error_line(exc)}") from None
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


def _json_safe(obj: Any) -> Any:
    """The record as it reads back from JSON (non-finite numbers become None, as the store writes them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _write(path: Path, record: dict[str, Any]) -> None:
    try:
        write_record(path, record)
    except OSError as exc:
        raise SuiteError(f"cannot write record {path}: {os_error_line(exc)}") from None


def _train_group(rs: list[Resolved], opts: RunOptions) -> dict[str, dict[str, Any]]:
    """Build, train, evaluate and record the group; a fault of one run fails only that run."""
    t_start = time.perf_counter()
    group = f"batched({len(rs)})"
    records: dict[str, dict[str, Any]] = {}
    bases = {r.key: base_record(r.spec, r.key, r.task, r.method, opts, r.fp) for r in rs}

    def fail(r: Resolved, exc: BaseException | str, tb: str | None = None) -> None:
        """Write ``r``'s failed record (reason as ``store.recorded`` words it)."""
        reason = exc if isinstance(exc, str) else _reason(exc)
        if tb is None and not isinstance(exc, str):
            tb = "".join(traceback.format_exception(exc, limit=8))
        rec = {**bases[r.key], "status": "failed", "reason": reason, "executor": group, "traceback": tb or "",
               "wall_time_s": round(time.perf_counter() - t_start, 3)}
        _write(r.path, rec)
        records[r.key] = rec

    first = rs[0]
    device, profile = opts.device, first.spec.profile_of(first.task)
    task = first.task
    try:
        data = load_task_data(task, opts.data_root, opts.download, first.fp.data)
        if not first.spec.evaluate_test:
            data = without_test(data)
        data = data.limit(profile).to(device)
        check_nonempty(task, data, first.spec.evaluate_test)
    except (KeyboardInterrupt, DeadlineReached, SimulatedCrash):
        raise
    except Exception as exc:  # a data fault is every run's
        for r in rs:
            fail(r, exc)
        return records

    members: list[Member] = []
    models = []
    for r in rs:  # each run built as a single run builds it, one after the other
        try:
            seed_everything(r.spec.seed)
            gen = torch.Generator(device=device)
            gen.manual_seed(r.spec.seed)
            model = r.task.build_model().to(device)
            ctx = PrepareContext(data=data, device=device, profile=profile, profile_name=r.spec.profile,
                                 seed=r.spec.seed, artifacts_dir=Path(opts.results_dir) / "artifacts", log=opts.log)
            artifact = r.method.prepare(task, ctx)
            loss_fn = r.method.make_loss(task)
            if device.type == "cuda":
                loss_fn = eager_loss(loss_fn)  # a per-loss CUDA graph would not follow the swapped RNG stream
            stream = torch.get_rng_state()
            cuda_stream = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        except (KeyboardInterrupt, DeadlineReached, SimulatedCrash):
            raise
        except Exception as exc:
            fail(r, exc)
            continue
        members.append(Member(r, gen, artifact, loss_fn, stream, cuda_stream))
        models.append(model)
    if not members:
        return records
    try:
        _loop(members, models, task, data, profile, opts, group, bases, t_start, fail, records)
    except (KeyboardInterrupt, DeadlineReached, SimulatedCrash):
        raise
    except Exception as exc:  # a fault of the shared step: every run still alive fails with it
        tb = traceback.format_exc(limit=8)
        for m in members:
            if m.r.key not in records:
                fail(m.r, exc, tb)
    return records


def _loop(members: list[Member], models: list, task: Task, data, profile: Profile, opts: RunOptions, group: str,
          bases: dict[str, dict[str, Any]], t_start: float,
          fail: Callable[..., None], records: dict[str, dict[str, Any]]) -> None:
    """The epochs of the group, its checkpoints, the test evaluation; every record goes into ``records``."""
    device, K = opts.device, len(members)
    keys = [m.r.key for m in members]
    stacked = StackedModels(models, str(opts.extra.get("batched_forward", "auto")))
    del models
    optimizer = make_optimizer(profile, stacked.parameters())
    scheduler = make_scheduler(profile, optimizer)
    losses_fn = GroupLoss(members, device)
    stepper = GroupStep(task, stacked, losses_fn, optimizer, [m.gen for m in members], device, profile.amp)
    n = len(data.train)
    bs = min(profile.batch_size, n)
    steps = n // bs
    ckpt = group_checkpoint_path(opts.results_dir, keys)
    for stale in ckpt.parent.glob(f".{ckpt.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    if opts.force:
        ckpt.unlink(missing_ok=True)
    start_epoch, train_time, seen, mid = 0, 0.0, 0, None
    state = load_group_checkpoint(ckpt, keys, opts.log)
    if state is not None:
        fresh = copy.deepcopy({"model": stacked.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(),
                               "rng": [(m.gen.get_state(), m.stream, m.cuda_stream) for m in members]})
        try:  # a checkpoint that loads but does not fit is ignored, as a single run's is
            stacked.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            for m, rng, hist, failed in zip(members, state["rng"], state["history"], state["failed"], strict=True):
                m.gen.set_state(rng["gen"])
                m.stream = rng["torch"]
                if device.type == "cuda":
                    m.cuda_stream = rng["cuda"]
                m.history, m.failed = list(hist), failed
            start_epoch, train_time, seen = int(state["epoch"]), float(state["train_time"]), int(state["seen"])
            mid = state.get("mid_epoch")
            if not 0 <= start_epoch <= profile.epochs or (mid and not 0 < int(mid["step"]) < steps):
                raise ValueError(f"epoch {start_epoch} / step {mid and mid['step']} out of range")
        except Exception as exc:
            opts.log(f"ignoring group checkpoint {ckpt}: it does not fit this group ({_reason(exc).splitlines()[0]}); "
                     "starting from scratch")
            stacked.load_state_dict(fresh["model"])
            optimizer.load_state_dict(fresh["optimizer"])
            scheduler.load_state_dict(fresh["scheduler"])
            for m, (gen_state, stream, cuda_stream) in zip(members, fresh["rng"]):
                m.gen.set_state(gen_state)
                m.stream, m.cuda_stream, m.history, m.failed = stream, cuda_stream, [], None
            start_epoch, train_time, seen, mid = 0, 0.0, 0, None
        else:
            opts.log(f"resuming {group} of {task.name} from epoch {start_epoch}/{profile.epochs}"
                     + (f", step {mid['step']}" if mid else ""))
    for k, m in enumerate(members):
        if m.failed is not None:  # failed before the checkpoint: stays failed and frozen (zeroed in the state)
            losses_fn.drop(k)
            rec = read_record(m.r.path, m.r.key)
            if rec is None or rec["status"] != "failed":
                fail(m.r, m.failed)
            else:
                records[m.r.key] = rec

    def snapshot(epochs_done: int, elapsed: float, inside: dict[str, Any] | None = None) -> None:
        save_checkpoint(ckpt, {
            "keys": keys, "epoch": epochs_done, "model": stacked.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": [{"gen": m.gen.get_state(), "torch": m.stream,
                     **({"cuda": m.cuda_stream} if device.type == "cuda" else {})} for m in members],
            "history": [m.history for m in members], "failed": [m.failed for m in members],
            "train_time": elapsed, "seen": seen, "mid_epoch": inside})

    def kill(k: int, exc: BaseException, tb: str | None = None) -> None:
        m = members[k]
        m.failed = _reason(exc)
        losses_fn.drop(k)
        stacked.zero_run(k, optimizer)
        fail(m.r, exc, tb)

    for epoch in range(start_epoch, profile.epochs):
        stacked.train()
        losses = torch.zeros(K, steps, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = last_save = time.perf_counter()
        if mid is not None:
            perms, first = mid["perm"].to(device), int(mid["step"])
            losses[:, :first] = mid["losses"].to(device)
            mid = None
        else:
            perms, first = torch.stack([torch.randperm(n, device=device, generator=m.gen) for m in members]), 0
        for step in range(first, steps):
            idx = perms[:, step * bs:(step + 1) * bs]
            losses[:, step] = stepper(data.train.x[idx], data.train.y[idx])
            if losses_fn.errors:  # a loss raised (a Python exception: no device sync involved)
                for k, exc in sorted(losses_fn.errors.items()):
                    kill(k, exc, "".join(traceback.format_exception(exc, limit=8)))
                losses_fn.errors.clear()
            if opts.deadline is not None and time.time() >= opts.deadline and step + 1 < steps:
                snapshot(epoch, train_time + time.perf_counter() - t0, _position(step + 1, perms, losses))
                raise DeadlineReached(f"{group} of {task.name}: deadline reached at epoch {epoch + 1}, "
                                      f"step {step + 1}; checkpointed")
            every = opts.checkpoint_every_s
            if every is not None and step + 1 < steps and time.perf_counter() - last_save >= every:
                snapshot(epoch, train_time + time.perf_counter() - t0, _position(step + 1, perms, losses))
                last_save = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        seen += steps * bs
        finite = torch.isfinite(losses).all(dim=1).tolist()
        for k, m in enumerate(members):
            if m.failed is None and not finite[k]:
                bad = int((~torch.isfinite(losses[k])).nonzero()[0])
                kill(k, NonFiniteLoss(f"non-finite loss at epoch {epoch + 1}, step {bad + 1}"))
        finite = _finite_runs(stacked)
        for k, m in enumerate(members):  # a loss can stay finite on NaN outputs (rank-based AP losses)
            if m.failed is None and not finite[k]:
                kill(k, NonFiniteLoss(f"non-finite model parameters after epoch {epoch + 1} (the model diverged)"))
        scheduler.step()
        live = [k for k, m in enumerate(members) if m.failed is None]
        if not live:  # every run failed: nothing left to train
            ckpt.unlink(missing_ok=True)
            return
        for k in live:
            m = members[k]
            try:
                val = float("nan")
                if len(data.val):
                    val_preds = predict(task, stacked.model(k), data.val, device, profile)
                    check_finite_predictions(val_preds, f"validation predictions after epoch {epoch + 1}")
                    val = score(task, val_preds, data.val.y)
            except Exception as exc:
                kill(k, exc)
                continue
            m.history.append({"epoch": epoch + 1, "train_loss": float(losses[k].mean()), "val_metric": val,
                              "lr": optimizer.param_groups[0]["lr"], "train_time_s": round(train_time, 3)})
        snapshot(epoch + 1, train_time)
        if opts.stop_after_epochs is not None and epoch + 1 >= opts.stop_after_epochs:
            raise SimulatedCrash(f"stopped after epoch {epoch + 1}")
        if opts.deadline is not None and time.time() >= opts.deadline and epoch + 1 < profile.epochs:
            raise DeadlineReached(f"{group} of {task.name}: deadline reached after epoch {epoch + 1}; checkpointed")

    sign = 1.0 if task.higher_is_better else -1.0
    for k, m in enumerate(members):
        if m.failed is not None:
            continue
        try:  # the runner's own test evaluation on this run's network: metric, range check, interval, extras
            result: dict[str, Any] = {"test_metric": None, "test_metric_ci": None}
            if m.spec.evaluate_test:
                result.update(test_result(m.r, stacked.model(k), data.test, device, profile))
        except Exception as exc:
            fail(m.r, exc)
            continue
        vals = [h["val_metric"] for h in m.history if h["val_metric"] == h["val_metric"]]
        rec = {**bases[m.r.key], **result,
               "best_val_metric": max(vals, key=lambda v: sign * v) if vals else None,
               "final_val_metric": vals[-1] if vals else None, "epochs": profile.epochs, "history": m.history,
               "train_time_s": round(train_time, 3),
               "train_samples_per_s": round(seen / train_time, 1) if train_time > 0 else None,
               "n_train": n, "n_val": len(data.val), "n_test": len(data.test), "artifact": m.artifact,
               "step_capture": f"eager (batched, {stacked.forward})", "status": "ok", "executor": group,
               "wall_time_s": round(time.perf_counter() - t_start, 3)}
        problem = record_problem(_json_safe(rec), m.r.key, m.spec.expected_fields())
        if problem is not None:  # as store.recorded: never write an ok record the suite would refuse to read
            fail(m.r, f"the result is not a valid record: {problem}")
            continue
        _write(m.r.path, rec)
        records[m.r.key] = rec
    ckpt.unlink(missing_ok=True)
