"""Rank statistics of a probe pool whose batches cluster in model states, with state-level intervals.

Batches of one model state share the model (and images), so they are not independent: every interval
here comes from a cluster bootstrap that resamples *states* with replacement (all batches of a drawn
state come along), vectorised over the resamples. When the states come from several baseline runs
(``runs``: the run of each state), the bootstrap is two-stage: runs are drawn with replacement, then
states within each drawn run, so an interval covers run-to-run variance too. Paired differences
(method - baseline) use the same resamples for both, so the shared pool's noise cancels.

An interval from fewer than ``MIN_INTERVAL_STATES`` states, or one where every resample gives the same
value (e.g. a between-state rho of -1 on a handful of monotone state means), is not an interval: it is
left out (NaN) and ``<name>_ci_note`` says "too few states for an interval".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
MIN_INTERVAL_STATES = 5  # fewer states: no bootstrap interval (a few distinct resamples are no interval)
TOO_FEW = "too few states for an interval"


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


def cluster_resamples(n_clusters: int, n_resamples: int = N_BOOTSTRAP, seed: int = 0,
                      runs: np.ndarray | None = None) -> np.ndarray:
    """R x C' indices of states drawn with replacement: the resamples every statistic of a pool shares.

    Without ``runs``, C' = C states drawn uniformly. With ``runs`` (the run of each of the C states), a
    two-stage draw: each resample draws as many runs as there are, with replacement, then for each drawn run
    as many of its states as the largest run has, with replacement (C' = runs x that size; equal-sized runs,
    as a pool's are, make it the plain two-stage cluster bootstrap)."""
    rng = np.random.default_rng(seed)
    if runs is None or len(np.unique(runs)) < 2:
        return rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    runs = np.asarray(runs)
    ids = np.unique(runs)
    members = [np.flatnonzero(runs == r) for r in ids]
    size = max(len(m) for m in members)
    table = np.zeros((len(ids), size), dtype=int)
    for i, m in enumerate(members):
        table[i, :len(m)] = m
    counts = np.asarray([len(m) for m in members])
    drawn = rng.integers(0, len(ids), size=(n_resamples, len(ids)))  # R x runs
    drawn = np.repeat(drawn, size, axis=1)  # R x (runs * size): the run of every slot
    within = np.floor(rng.random(drawn.shape) * counts[drawn]).astype(int)
    return table[drawn, within]


def state_runs(clusters: np.ndarray, runs: np.ndarray | None) -> np.ndarray | None:
    """The run of each distinct state (in ``np.unique`` order), from per-batch ``clusters`` and ``runs``."""
    if runs is None:
        return None
    clusters, runs = np.asarray(clusters), np.asarray(runs)
    states, first = np.unique(clusters, return_index=True)
    return runs[first]


def interval_note(boot: np.ndarray, n_states: int) -> str | None:
    """Why a bootstrap interval is not shown: fewer than ``MIN_INTERVAL_STATES`` states, or every finite
    resample gives the same value (a degenerate interval such as [-1, -1]); None when it is an interval."""
    b = np.asarray(boot, float)
    b = b[np.isfinite(b)]
    if n_states < MIN_INTERVAL_STATES or len(b) == 0 or float(np.ptp(b)) == 0.0:
        return TOO_FEW
    return None


def state_variance_share(metric: np.ndarray, clusters: np.ndarray) -> float:
    """Share of the batch metric's variance that comes from the model state: the between-state sum of
    squares over the total (one-way ANOVA, batch-weighted); NaN for constant metrics."""
    metric, clusters = np.asarray(metric, float), np.asarray(clusters)
    keep = np.isfinite(metric)
    metric, clusters = metric[keep], clusters[keep]
    if len(metric) < 2:
        return float("nan")
    grand = metric.mean()
    total = float(((metric - grand) ** 2).sum())
    if total == 0:
        return float("nan")
    between = sum(float((clusters == c).sum()) * (float(metric[clusters == c].mean()) - grand) ** 2
                  for c in np.unique(clusters))
    return between / total


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
               seed: int = 0, runs: np.ndarray | None = None) -> dict[str, float]:
    """Spearman rho overall, within states (mean over states) and between states (on state means), each
    with a state-bootstrap percentile 95% interval; Kendall tau overall; and, given the baseline's losses
    on the same batches, the paired differences delta_rho = rho(method) - rho(baseline) with intervals
    from the same resamples. Without ``clusters`` every batch is its own state (the old, batch bootstrap);
    with ``runs`` (per batch: the baseline run its state comes from) the resamples are two-stage (runs, then
    states). A degenerate interval is NaN with ``<name>_ci_note`` (:func:`interval_note`).
    """
    loss, metric = np.asarray(loss, float), np.asarray(metric, float)
    clusters = np.arange(len(loss)) if clusters is None else np.asarray(clusters)
    keep = np.isfinite(loss) & np.isfinite(metric)
    if baseline is not None:
        baseline = np.asarray(baseline, float)
        keep &= np.isfinite(baseline)
    loss, metric, clusters = loss[keep], metric[keep], clusters[keep]
    runs = None if runs is None else np.asarray(runs)[keep]
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
    s_runs = state_runs(clusters, runs)
    out["n_runs"] = int(len(np.unique(s_runs))) if s_runs is not None else 1
    idx = cluster_resamples(len(pool.states), n_resamples, seed, runs=s_runs)
    mine = _replicates(px, py, idx)
    out["spearman_within"] = mine["spearman_within"][0]
    out["spearman_between"] = mine["spearman_between"][0]
    n_states = len(pool.states)
    for name, (_, boot) in mine.items():
        note = interval_note(boot, n_states)
        if note is None:
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = percentile_interval(boot)
        else:
            out[f"{name}_ci_note"] = note
    if baseline is not None:
        base = _replicates(pool.pad(baseline[keep], clusters), py, idx)
        for name in names:
            out[f"delta_{name}"] = mine[name][0] - base[name][0]
            diff = mine[name][1] - base[name][1]
            finite = diff[np.isfinite(diff)]
            identical = len(finite) > 0 and not np.any(finite) and out[f"delta_{name}"] == 0  # the baseline's own ranks
            note = None if identical and n_states >= MIN_INTERVAL_STATES else interval_note(diff, n_states)
            if note is None:
                lo, hi = percentile_interval(diff)
                out[f"delta_{name}_ci_low"], out[f"delta_{name}_ci_high"] = lo, hi
            else:
                out[f"delta_{name}_ci_note"] = note
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
                 n_resamples: int = N_BOOTSTRAP, seed: int = 0, runs: np.ndarray | None = None,
                 min_states: int = 2) -> dict[str, float]:
    """Mean of per-batch values with a state-bootstrap 95% interval (a resample's mean pools the batches of
    its drawn states; two-stage over ``runs`` when given); with ``baseline`` values on the same batches, the
    paired difference too. Fewer than ``min_states`` states: no interval (``ci_note``)."""
    values, clusters = np.asarray(values, float), np.asarray(clusters)
    keep = np.isfinite(values)
    if baseline is not None:
        baseline = np.asarray(baseline, float)
        keep &= np.isfinite(baseline)
    values, clusters = values[keep], clusters[keep]
    runs = None if runs is None else np.asarray(runs)[keep]
    out = {"mean": float(values.mean()) if len(values) else float("nan"), "ci_low": float("nan"),
           "ci_high": float("nan"), "n_batches": int(len(values)), "n_states": int(len(np.unique(clusters)))}
    if baseline is not None:
        out.update(delta=float("nan"), delta_ci_low=float("nan"), delta_ci_high=float("nan"))
    if not len(values):
        return out
    pool = ClusteredPool.of(clusters)
    sums, counts = np.nan_to_num(pool.pad(values, clusters)).sum(1), pool.sizes.astype(float)
    s_runs = state_runs(clusters, runs)
    out["n_runs"] = int(len(np.unique(s_runs))) if s_runs is not None else 1
    idx = cluster_resamples(len(pool.states), n_resamples, seed, runs=s_runs)
    boot = sums[idx].sum(1) / counts[idx].sum(1)
    enough = len(pool.states) >= max(2, min_states)
    if enough:
        out["ci_low"], out["ci_high"] = percentile_interval(boot)
    else:
        out["ci_note"] = TOO_FEW
    if baseline is not None:
        b = baseline[keep]
        bsums = np.nan_to_num(pool.pad(b, clusters)).sum(1)
        out["delta"] = out["mean"] - float(b.mean())
        if enough:
            out["delta_ci_low"], out["delta_ci_high"] = percentile_interval(boot - bsums[idx].sum(1) / counts[idx].sum(1))
        else:
            out["delta_ci_note"] = TOO_FEW
    return out
