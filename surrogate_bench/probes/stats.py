"""Rank statistics of a probe pool whose batches cluster in model states, with state-level intervals.

Batches of one model state share the model (and images), so they are not independent: every interval
here comes from a cluster bootstrap that resamples *states* with replacement (all batches of a drawn
state come along), vectorised over the resamples. Paired differences (method - baseline) use the same
resamples for both, so the shared pool's noise cancels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95


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


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of every row pair of two R x N arrays; NaN entries (padding) are left out of their row.

    Ranks are scipy's average ranks per row; a row with fewer than 2 values or a constant side gives NaN.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = np.atleast_2d(x).copy(), np.atleast_2d(y).copy()
    bad = ~(np.isfinite(x) & np.isfinite(y))
    x[bad] = np.nan
    y[bad] = np.nan
    rx = stats.rankdata(x, axis=1, nan_policy="omit")
    ry = stats.rankdata(y, axis=1, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = rx - np.nanmean(rx, axis=1, keepdims=True)
        dy = ry - np.nanmean(ry, axis=1, keepdims=True)
        num = np.nansum(dx * dy, axis=1)
        den = np.sqrt(np.nansum(dx * dx, axis=1) * np.nansum(dy * dy, axis=1))
        rho = num / den
    rho[(den == 0) | ((~bad).sum(axis=1) < 2)] = np.nan
    return np.clip(rho, -1.0, 1.0)


def cluster_resamples(n_clusters: int, n_resamples: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """R x C indices of states drawn with replacement: the resamples every statistic of a pool shares."""
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_resamples, n_clusters))


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates ignored; NaN if none is finite)."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return float("nan"), float("nan")
    a = (1 - confidence) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


@dataclass
class ClusteredPool:
    """Per-batch values grouped by state: ``padded[c, j]`` is the j-th batch of state c (NaN-padded)."""

    states: np.ndarray  # the distinct state ids, in order
    sizes: np.ndarray  # batches per state

    @classmethod
    def of(cls, clusters: np.ndarray) -> "ClusteredPool":
        states, sizes = np.unique(np.asarray(clusters), return_counts=True)
        return cls(states, sizes)

    def pad(self, values: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """C x max-size array of ``values`` per state, NaN where a state has fewer batches."""
        values, clusters = np.asarray(values, float), np.asarray(clusters)
        out = np.full((len(self.states), int(self.sizes.max())), np.nan)
        for c, s in enumerate(self.states):
            v = values[clusters == s]
            out[c, :len(v)] = v
        return out


def _within(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Spearman rho inside each state (C values, NaN where undefined)."""
    return rowwise_spearman(px, py)


def _between(px: np.ndarray, py: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """Spearman rho of the state means (one value per resample row of ``idx``)."""
    with np.errstate(invalid="ignore"):
        mx, my = np.nanmean(px, axis=1), np.nanmean(py, axis=1)
    if idx is None:
        return rowwise_spearman(mx[None], my[None])
    return rowwise_spearman(mx[idx], my[idx])


def _overall(px: np.ndarray, py: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman rho over all batches of the resampled states (a row of ``idx`` = one resample)."""
    r = idx.shape[0]
    return rowwise_spearman(px[idx].reshape(r, -1), py[idx].reshape(r, -1))


def rank_stats(loss: np.ndarray, metric: np.ndarray, clusters: np.ndarray | None = None,
               baseline: np.ndarray | None = None, n_resamples: int = N_BOOTSTRAP,
               seed: int = 0) -> dict[str, float]:
    """Spearman rho overall, within states (mean over states) and between states (on state means), each
    with a state-bootstrap percentile 95% interval; Kendall tau overall; and, given the baseline's losses
    on the same batches, the paired differences delta_rho = rho(method) - rho(baseline) with intervals
    from the same resamples. Without ``clusters`` every batch is its own state (the old, batch bootstrap).
    """
    loss, metric = np.asarray(loss, float), np.asarray(metric, float)
    clusters = np.arange(len(loss)) if clusters is None else np.asarray(clusters)
    keep = np.isfinite(loss) & np.isfinite(metric)
    if baseline is not None:
        baseline = np.asarray(baseline, float)
        keep &= np.isfinite(baseline)
    loss, metric, clusters = loss[keep], metric[keep], clusters[keep]
    out: dict[str, float] = {"spearman": spearman(loss, metric), "kendall": kendall(loss, metric),
                             "n_batches": int(len(loss))}
    pool = ClusteredPool.of(clusters) if len(loss) else None
    out["n_states"] = int(len(pool.states)) if pool is not None else 0
    names = ("spearman", "spearman_within", "spearman_between")
    for name in names:
        out.setdefault(name, float("nan"))
        out[f"{name}_ci_low"] = out[f"{name}_ci_high"] = float("nan")
    if baseline is not None:
        for name in names:
            out[f"delta_{name}"] = out[f"delta_{name}_ci_low"] = out[f"delta_{name}_ci_high"] = float("nan")
    if pool is None or len(loss) < 2:
        return out
    px, py = pool.pad(loss, clusters), pool.pad(metric, clusters)
    idx = cluster_resamples(len(pool.states), n_resamples, seed)
    mine = _replicates(px, py, idx)
    out["spearman_within"] = mine["spearman_within"][0]
    out["spearman_between"] = mine["spearman_between"][0]
    multi = len(pool.states) >= 2  # one state: no between-state spread to resample
    for name, (_, boot) in mine.items():
        if multi:
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = percentile_interval(boot)
    if baseline is not None:
        base = _replicates(pool.pad(baseline[keep], clusters), py, idx)
        for name in names:
            out[f"delta_{name}"] = mine[name][0] - base[name][0]
            if multi:
                lo, hi = percentile_interval(mine[name][1] - base[name][1])
                out[f"delta_{name}_ci_low"], out[f"delta_{name}_ci_high"] = lo, hi
    return out


def _replicates(px: np.ndarray, py: np.ndarray, idx: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """(point estimate, bootstrap replicates) of the overall, within- and between-state rho."""
    within = _within(px, py)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: states with a constant side
        w_point = float(np.nanmean(within))
        w_boot = np.nanmean(within[idx], axis=1)
    overall = float(rowwise_spearman(px.reshape(1, -1), py.reshape(1, -1))[0])
    return {"spearman": (overall, _overall(px, py, idx)), "spearman_within": (w_point, w_boot),
            "spearman_between": (float(_between(px, py)[0]), _between(px, py, idx))}


def cluster_mean(values: np.ndarray, clusters: np.ndarray, baseline: np.ndarray | None = None,
                 n_resamples: int = N_BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """Mean of per-batch values with a state-bootstrap 95% interval (a resample's mean pools the batches of
    its drawn states); with ``baseline`` values on the same batches, the paired difference too."""
    values, clusters = np.asarray(values, float), np.asarray(clusters)
    keep = np.isfinite(values)
    if baseline is not None:
        baseline = np.asarray(baseline, float)
        keep &= np.isfinite(baseline)
    values, clusters = values[keep], clusters[keep]
    out = {"mean": float(values.mean()) if len(values) else float("nan"), "ci_low": float("nan"),
           "ci_high": float("nan"), "n_batches": int(len(values)), "n_states": int(len(np.unique(clusters)))}
    if baseline is not None:
        out.update(delta=float("nan"), delta_ci_low=float("nan"), delta_ci_high=float("nan"))
    if not len(values):
        return out
    pool = ClusteredPool.of(clusters)
    sums, counts = np.nan_to_num(pool.pad(values, clusters)).sum(1), pool.sizes.astype(float)
    idx = cluster_resamples(len(pool.states), n_resamples, seed)
    boot = sums[idx].sum(1) / counts[idx].sum(1)
    if len(pool.states) >= 2:
        out["ci_low"], out["ci_high"] = percentile_interval(boot)
    if baseline is not None:
        b = baseline[keep]
        bsums = np.nan_to_num(pool.pad(b, clusters)).sum(1)
        out["delta"] = out["mean"] - float(b.mean())
        if len(pool.states) >= 2:
            out["delta_ci_low"], out["delta_ci_high"] = percentile_interval(boot - bsums[idx].sum(1) / counts[idx].sum(1))
    return out
