"""Spearman probes: how well a loss's batch value ranks batches like the exact metric does.

The papers' sign: rho = -1 means lower loss <=> better metric (perfect alignment).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from .. import __version__
from ..plugins.contracts import PrepareContext
from ..running.environment import environment
from .pool import load_or_build_pool
from ..plugins.registry import get_task, method_for
from ..running.runner import RunOptions, load_task_data
from ..running.store import recorded

N_BOOTSTRAP = 1000


def _finite_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Spearman rho (average ranks for ties); NaN, silently, for constant input."""
    x, y = _finite_pair(np.asarray(x, float), np.asarray(y, float))
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Kendall tau-b (tie-corrected); NaN, silently, for constant input."""
    x, y = _finite_pair(np.asarray(x, float), np.asarray(y, float))
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def rank_stats(loss: np.ndarray, metric: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Spearman rho with a percentile-bootstrap 95% interval (paired resampling) and Kendall tau."""
    loss, metric = _finite_pair(np.asarray(loss, float), np.asarray(metric, float))
    rho = spearman(loss, metric)
    lo = hi = float("nan")
    if rho == rho and len(loss) >= 4:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap((loss, metric), spearman, paired=True, vectorized=False,
                                  n_resamples=N_BOOTSTRAP, confidence_level=0.95, method="percentile",
                                  rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"spearman": rho, "spearman_ci_low": lo, "spearman_ci_high": hi, "kendall": kendall(loss, metric),
            "n_batches": int(len(loss))}


def probe_path(results_dir: Path, task: str, method: str, profile: str, key: str) -> Path:
    return Path(results_dir) / "probes" / profile / task / f"{method}-{key[:10]}.json"


def probe_key(task, method, profile: str) -> str:
    blob = json.dumps({"task": task.config(), "method": method.config(), "profile": profile,
                       "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@torch.no_grad()
def batch_losses(loss_fn, outputs: torch.Tensor, targets: torch.Tensor, device: torch.device) -> np.ndarray:
    torch.manual_seed(0)  # stochastic losses (UniLoss's random anchors) see the same draws for every pool
    vals = [float(loss_fn(o.to(device), t.to(device))) for o, t in zip(outputs, targets)]
    return np.asarray(vals, dtype=float)


def run_probe(task_name: str, method_name: str, profile: str, opts: RunOptions,
              task_params: dict | None = None, method_params: dict | None = None) -> dict[str, Any]:
    """Probe one (task, method) on the task's shared pool; returns (and stores) its record."""
    task = get_task(task_name, **(task_params or {}))
    method = method_for(task, method_name, **(method_params or {}))
    key = probe_key(task, method, profile)
    path = probe_path(opts.results_dir, task_name, method_name, profile, key)

    def base() -> dict[str, Any]:
        return {"kind": "probe", "key": key, "task": task_name, "method": method_name, "profile": profile,
                "task_params": task.p, "method_params": method.p, "metric_name": task.metric_name,
                "environment": environment(opts.device)}

    def work() -> dict[str, Any]:
        prof = task.profile(profile)
        data = load_task_data(task, opts.data_root, opts.download).limit(prof).to(opts.device)
        pool = load_or_build_pool(task, data, profile, opts.device, opts.results_dir, opts.log)
        ctx = PrepareContext(data=data, device=opts.device, profile=prof, profile_name=profile, seed=0,
                             artifacts_dir=Path(opts.results_dir) / "artifacts", log=opts.log)
        artifact = method.prepare(task, ctx)
        losses = batch_losses(method.make_loss(task), pool.outputs, pool.targets, opts.device)
        metric = pool.metric.numpy()
        return dict(pool_sha256=pool.digest, artifact=artifact, **rank_stats(losses, metric),
                    points=[[float(a), float(b)] for a, b in zip(losses, metric)])

    return recorded(path, opts.force, base, lambda: method.supports(task), work, key=key, log=opts.log,
                    expect={"kind": "probe", "task": task_name, "method": method_name, "profile": profile})
