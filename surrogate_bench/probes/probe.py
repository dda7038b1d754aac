"""Spearman probes: how well a loss's batch value ranks batches like the exact metric does.

The papers' sign: rho = -1 means lower loss <=> better metric (perfect alignment). Statistics (overall,
within and between model states, state-bootstrap intervals, the paired difference to the task's
baseline loss on the same batches) are in :mod:`.stats`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..plugins.registry import get_task, method_for
from ..running.environment import environment
from ..running.options import RunOptions
from ..running.spec import PROTOCOL_VERSION
from ..store.records import recorded
from .pool import baseline_method
from .setup import is_baseline, pool_file, prepare_probe, probe_identity
from .stats import N_BOOTSTRAP, kendall, rank_stats, spearman  # noqa: F401  (re-exported: the probe's statistics)

PROBE_VERSION = 3  # 3: pool of states of 3 baseline runs, two-stage (run, state) bootstrap, degenerate intervals labelled
# 2: pool of states along a whole baseline run, state-bootstrap statistics, paired deltas
HEADLINE_SHARE = 0.10  # below this share of batch-metric variance from the state, rho within states is the headline


def probe_settings() -> dict[str, Any]:
    """What a probe record's key covers besides the task, method, profile and fingerprints."""
    return {"probe_version": PROBE_VERSION, "protocol_version": PROTOCOL_VERSION}


def headline(share: float) -> str:
    """Which rho is the headline: within states when the state explains little of the batch metric's variance
    (the between-state ranking then rests on a handful of nearly equal state means), else overall."""
    return "spearman_within" if share == share and share < HEADLINE_SHARE else "spearman"


def probe_path(results_dir: Path, task: str, method: str, profile: str, key: str) -> Path:
    return Path(results_dir) / "probes" / profile / task / f"{method}-{key[:10]}.json"


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
    ident = probe_identity("probe", task, method, profile, probe_settings(), opts.data_root, opts.download)
    path = probe_path(opts.results_dir, task_name, method_name, profile, ident.key)

    def base() -> dict[str, Any]:
        return {"kind": "probe", "key": ident.key, "task": task_name, "method": method_name, "profile": profile,
                "task_params": task.p, "method_params": method.p, "metric_name": task.metric_name,
                "protocol_version": PROTOCOL_VERSION, "probe_version": PROBE_VERSION,
                "probe_code_fingerprint": ident.provenance["probe_code_fingerprint"],
                "environment": environment(opts.device), "provenance": ident.provenance}

    def work() -> dict[str, Any]:
        setup = prepare_probe(task, method, profile, opts, ident.data_fingerprint)
        pool = setup.pool
        losses = batch_losses(method.make_loss(task), pool.outputs, pool.targets, opts.device)
        base_name = baseline_method(task)
        if is_baseline(task, method, method_name):
            base = losses
        else:
            base = batch_losses(method_for(task, base_name).make_loss(task), pool.outputs, pool.targets, opts.device)
        metric, states, runs = pool.metric.numpy(), pool.state.numpy(), pool.batch_run().numpy()
        summary = pool.summary()
        share = float(summary["state_variance_share"])
        return dict(pool_sha256=pool.digest, pool=summary, pool_file=pool_file(task_name, profile, pool),
                    artifact=setup.artifact, baseline=base_name, state_variance_share=share,
                    headline=headline(share),
                    bootstrap={"resamples": "two-stage: baseline runs with replacement, then model states within "
                                            "each drawn run (all batches of a drawn state together)",
                               "n": N_BOOTSTRAP, "interval": "percentile 95%"},
                    **rank_stats(losses, metric, states, baseline=base, runs=runs),
                    points=[[float(a), float(b), int(c)] for a, b, c in zip(losses, metric, states)])

    return recorded(path, opts.force, base, lambda: method.supports(task), work, key=ident.key, log=opts.log,
                    expect={"kind": "probe", "task": task_name, "method": method_name, "profile": profile})
