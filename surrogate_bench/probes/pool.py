"""The probe pool: one cached set of model states and evaluation batches per (task, profile), identical
for every method.

Construction (version 3): the task's baseline loss (CE / MSE-heatmap) trains a fresh model with the
profile's own budget and schedule once per seed of ``POOL_SEEDS`` (0, 1, 2: at least three baseline
runs, so the pool's intervals, which resample runs and then states within them, cover run-to-run
variance); ``STATES`` snapshots are taken at evenly spaced steps of each run, ending at its last step,
so the states span the trajectory up to the baseline's final accuracy (no untrained model, no weight
noise). Each state's outputs on the probe split (validation, else test) are
cut into batches (``COPIES`` shuffles); in every batch a uniform random fraction of the targets is
randomised (the ReLoss recipe, :func:`~surrogate_bench.reloss.collect.randomize_targets`), so the batch
metric spreads over [0, 1] at every state. The state weights and a set of clean held-out batches are
kept for the descent probe.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor, nn

from .. import __version__
from ..plugins.contracts import Profile, Task, TaskData
from ..plugins.registry import method_for
from ..reloss.collect import randomize_targets
from ..store.provenance import code_fingerprint, source_digest
from ..running.baseline import train_baseline
from ..running.step import autocast
from ..store.records import atomic_write_bytes

POOL_VERSION = 3  # bump when the construction changes what a pool holds (3: states of POOL_SEEDS runs)
POOL_SEEDS = (0, 1, 2)  # baseline runs whose states make the pool (>= 3: intervals cover run-to-run variance)
STATES = 8  # snapshots per run at steps k * total / STATES, k = 1..STATES (the last = the end of the run)
COPIES = 4  # shuffled cuts of the probe split per state
MAX_BATCHES_PER_STATE = 32
DESCENT_BATCHES = 8  # clean held-out batches per state for the descent probe
KEYS = ("outputs", "targets", "metric", "state", "corrupted", "state_step", "state_metric", "state_run",
        "weights", "eval_index", "settings")


@dataclass
class ProbePool:
    """B batches (outputs, partly randomised targets, exact batch metric) from S model states."""

    outputs: Tensor  # B x n x ...
    targets: Tensor  # B x n x ...
    metric: Tensor  # B
    digest: str  # sha256 of the stored pool: the same value for every method
    state: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # B: the batch's model state
    corrupted: Tensor = field(default_factory=lambda: torch.zeros(0))  # B: fraction of targets randomised
    state_step: list[int] = field(default_factory=list)  # S: baseline step of each state
    state_metric: list[float] = field(default_factory=list)  # S: exact metric of each state on the clean probe split
    weights: list[dict[str, Tensor]] = field(default_factory=list)  # S: model state dicts (descent probe)
    eval_index: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))  # E x n probe-split indices
    settings: dict[str, Any] = field(default_factory=dict)
    state_run: list[int] = field(default_factory=list)  # S: the seed of the baseline run each state comes from
    nbytes: int = 0  # size of the stored pool file

    def batch_run(self) -> Tensor:
        """B: the baseline run (seed) of each batch's state (all 0 for a pool without runs)."""
        runs = torch.as_tensor(self.state_run or [0] * len(self.state_step), dtype=torch.long)
        return runs[self.state] if len(self.state) else torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.metric.shape[0])

    def summary(self) -> dict[str, Any]:
        """What a probe record says about the pool it was measured on."""
        from .stats import state_variance_share

        per_state = torch.bincount(self.state, minlength=len(self.state_step)).tolist() if len(self.state) else []
        share = state_variance_share(self.metric.double().numpy(), self.state.numpy()) if len(self) else float("nan")
        return {"construction": self.settings.get("construction"), "baseline": self.settings.get("baseline"),
                "runs": sorted(set(self.state_run)), "state_run": list(self.state_run),
                "state_variance_share": share, "bytes": self.nbytes,
                "states": len(self.state_step), "state_step": list(self.state_step),
                "total_steps": self.settings.get("total_steps"),
                "state_metric": [float(m) for m in self.state_metric], "batches_per_state": per_state,
                "batch_size": self.settings.get("batch"), "split": self.settings.get("split"),
                "metric_min": float(self.metric.min()) if len(self) else None,
                "metric_max": float(self.metric.max()) if len(self) else None}


def baseline_method(task: Task) -> str:
    return "ce" if task.output_kind == "logits" else "mse-heatmap"


def pool_batch_size(task: Task) -> int:
    return 128 if task.output_kind == "logits" else 16


def pool_settings(task: Task, profile_name: str, data_fp: str = "") -> dict:
    """What a pool is built from: the construction, the task and profile, and the code and data fingerprints
    of its baseline run (the training path, the task and baseline plugin files, this file; the data files)."""
    baseline = method_for(task, baseline_method(task))
    return {"task": task.config(), "profile": profile_name, "profile_settings": task.profile(profile_name).as_dict(),
            "baseline": baseline_method(task), "baseline_params": baseline.p, "seeds": list(POOL_SEEDS),
            "states": STATES, "copies": COPIES,
            "max_batches_per_state": MAX_BATCHES_PER_STATE, "descent_batches": DESCENT_BATCHES,
            "batch": pool_batch_size(task), "construction": POOL_VERSION, "version": __version__,
            "code_fingerprint": code_fingerprint(task, baseline), "pool_code": source_digest(Path(__file__).resolve()),
            "data_fingerprint": data_fp}


def built_settings(task: Task, data: TaskData, profile_name: str, data_fp: str = "", seed: int = 0) -> dict:
    """Everything a pool built now from ``data`` would store as its settings (compared before a stored pool is
    used): :func:`pool_settings`, the probe split, the baseline's step count and the seed of its batch cuts
    (the baseline runs' seeds are ``POOL_SEEDS``)."""
    profile = task.profile(profile_name)
    n = len(data.train)
    total = (n // min(profile.batch_size, n)) * profile.epochs if n else 0
    return {**pool_settings(task, profile_name, data_fp), "split": "val" if len(data.val) else "test",
            "total_steps": total, "seed": seed}


def pool_path(results_dir: Path, task: Task, profile_name: str, data_fp: str = "") -> Path:
    blob = json.dumps(pool_settings(task, profile_name, data_fp), sort_keys=True, default=str)
    return Path(results_dir) / "pools" / f"{task.name}-{profile_name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.pt"


@torch.no_grad()
def model_outputs(task: Task, model: nn.Module, x: Tensor, device: torch.device, profile: Profile) -> Tensor:
    """Raw outputs on storage samples ``x`` (eval mode, no augmentation, float32)."""
    model.eval()
    outs = []
    for s in range(0, len(x), profile.eval_batch_size):
        with autocast(device, profile.amp):
            outs.append(model(task.inputs(x[s:s + profile.eval_batch_size], train=False)).float())
    return torch.cat(outs)


def probe_split(data: TaskData):
    return data.val if len(data.val) else data.test


def snapshot_steps(total: int, states: int = STATES) -> list[int]:
    """Evenly spaced steps ending at ``total`` (duplicates dropped when the run is shorter than ``states``)."""
    return sorted({max(1, round(k * total / states)) for k in range(1, states + 1)})


def baseline_states(task: Task, data: TaskData, profile: Profile, device: torch.device, seed: int,
                    at: list[int]) -> list[dict[str, Tensor]]:
    """The baseline loss trained with the profile's optimiser and schedule; CPU state dicts at steps ``at``."""
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    loss_fn = method_for(task, baseline_method(task)).make_loss(task)
    states: list[dict[str, Tensor]] = []
    train_baseline(task, data, profile, loss_fn, gen, at,
                   lambda step, model: states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}))
    return states


def build_pool(task: Task, data: TaskData, profile_name: str, device: torch.device, seed: int = 0,
               data_fp: str = "", seeds: tuple[int, ...] | None = None) -> dict:
    """Snapshot one baseline run per seed of ``seeds`` (default ``POOL_SEEDS``), cut each state's probe-split
    outputs into partly randomised batches; states are numbered run by run."""
    profile = task.profile(profile_name)
    n = pool_batch_size(task)
    probe = probe_split(data)
    if len(probe) < n:
        raise ValueError(f"probe split of {task.name} has {len(probe)} samples; need at least {n}")
    total = (len(data.train) // min(profile.batch_size, len(data.train))) * profile.epochs
    steps = snapshot_steps(total)
    weights, state_step, state_run = [], [], []
    for run_seed in (POOL_SEEDS if seeds is None else seeds):
        got = baseline_states(task, data, profile, device, run_seed, steps)
        weights += got
        state_step += steps[:len(got)]
        state_run += [int(run_seed)] * len(got)
    gen = torch.Generator().manual_seed(seed + 1)
    ys = probe.y.cpu()
    m = len(probe) // n * n
    eval_index = torch.randperm(len(probe), generator=gen)[: min(DESCENT_BATCHES, m // n) * n].view(-1, n)
    model = task.build_model().to(device)
    outs, tgts, metrics, state_ids, fracs, state_metric = [], [], [], [], [], []
    for s, w in enumerate(weights):
        model.load_state_dict(w)
        out = model_outputs(task, model, probe.x, device, profile).cpu()
        state_metric.append(float(task.metric(out, ys)))
        cut_o, cut_t = [], []
        for _ in range(COPIES):
            idx = torch.randperm(len(probe), generator=gen)[:m]
            cut_o.append(out[idx].reshape(-1, n, *out.shape[1:]))
            cut_t.append(ys[idx].reshape(-1, n, *ys.shape[1:]))
        o, clean = torch.cat(cut_o)[:MAX_BATCHES_PER_STATE], torch.cat(cut_t)[:MAX_BATCHES_PER_STATE]
        noisy = randomize_targets(task, clean, o, gen)
        metric = task.batch_metric(o, noisy).double()
        frac = (noisy != clean).flatten(2).any(-1).double().mean(1) if noisy.dim() > 2 else (noisy != clean).double().mean(1)
        keep = torch.isfinite(metric)  # e.g. AP of a batch without a positive
        outs.append(o[keep])
        tgts.append(noisy[keep])
        metrics.append(metric[keep])
        fracs.append(frac[keep])
        state_ids.append(torch.full((int(keep.sum()),), s, dtype=torch.long))
    settings = built_settings(task, data, profile_name, data_fp, seed)
    return {"outputs": torch.cat(outs).to(torch.float16 if task.output_kind == "heatmaps" else torch.float32),
            "targets": torch.cat(tgts), "metric": torch.cat(metrics), "state": torch.cat(state_ids),
            "corrupted": torch.cat(fracs), "state_step": torch.tensor(state_step),
            "state_run": torch.tensor(state_run, dtype=torch.long),
            "state_metric": torch.tensor(state_metric, dtype=torch.float64), "weights": weights,
            "eval_index": eval_index, "settings": json.dumps(settings, sort_keys=True, default=str)}


def _well_formed(state: Any) -> bool:
    """A stored pool has every field, consistent lengths and at least one batch."""
    if not isinstance(state, dict) or any(k not in state for k in KEYS):
        return False
    try:
        b, s = int(state["metric"].shape[0]), len(state["weights"])
        return (b > 0 and s > 0 and state["outputs"].shape[0] == state["targets"].shape[0] == b
                and state["state"].shape[0] == state["corrupted"].shape[0] == b
                and int(state["state"].max()) < s
                and len(state["state_step"]) == len(state["state_metric"]) == len(state["state_run"]) == s
                and isinstance(json.loads(state["settings"]), dict))
    except Exception:
        return False


def pool_problem(state: dict, expected: dict, probe_len: int) -> str | None:
    """Why a well-formed stored pool is not the one this probe asks for (None when it is): its settings (task
    config, profile and its settings, baseline, construction, code and data fingerprints, split, steps, seed)
    must equal ``expected``, its batch metrics must be finite and its held-out indices inside the probe split."""
    stored = json.loads(state["settings"])
    differ = sorted(k for k in set(stored) | set(expected)
                    if json.dumps(stored.get(k), sort_keys=True, default=str)
                    != json.dumps(expected.get(k), sort_keys=True, default=str))
    if differ:
        return f"built for other settings: {', '.join(differ[:6])}{', ...' if len(differ) > 6 else ''} differ"
    if not bool(torch.isfinite(state["metric"].double()).all()):
        return "non-finite batch metrics"
    index = state["eval_index"]
    if not isinstance(index, Tensor) or (index.numel() and not 0 <= int(index.min()) <= int(index.max()) < probe_len):
        return "held-out indices outside the probe split"
    return None


def load_or_build_pool(task: Task, data: TaskData, profile_name: str, device: torch.device,
                       results_dir: Path, log=print, data_fp: str = "") -> ProbePool:
    """The cached pool for (task, profile, code, data), built once. A stored pool is used only when it is well
    formed and its stored settings equal what this probe asks for (:func:`pool_problem`); otherwise (a file
    copied from another profile, data or code) it is rebuilt with one line saying why."""
    path = pool_path(results_dir, task, profile_name, data_fp)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        state = None
        if path.is_file():
            try:
                raw = path.read_bytes()
                state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
                problem = (pool_problem(state, built_settings(task, data, profile_name, data_fp), len(probe_split(data)))
                           if _well_formed(state) else "malformed: missing fields or inconsistent shapes")
                digest = hashlib.sha256(raw).hexdigest()
            except Exception as exc:
                problem = f"unreadable ({type(exc).__name__})"
            if problem is not None:
                log(f"probe pool {path.name} is unusable ({problem}); rebuilding")
                state = None
        if state is None:
            log(f"building probe pool for {task.name} ({profile_name}): {len(POOL_SEEDS)} {baseline_method(task)} "
                f"runs of the profile (seeds {', '.join(map(str, POOL_SEEDS))}), {STATES} states each")
            state = build_pool(task, data, profile_name, device, data_fp=data_fp)
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write_bytes(path, buf.getvalue())
            digest = hashlib.sha256(buf.getvalue()).hexdigest()
            raw = buf.getvalue()
    return ProbePool(state["outputs"].float(), state["targets"], state["metric"], digest, state=state["state"],
                     corrupted=state["corrupted"], state_step=[int(v) for v in state["state_step"]],
                     state_metric=[float(v) for v in state["state_metric"]], weights=state["weights"],
                     eval_index=state["eval_index"], settings=json.loads(state["settings"]),
                     state_run=[int(v) for v in state["state_run"]], nbytes=len(raw))
