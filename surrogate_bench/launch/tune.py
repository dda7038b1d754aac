"""Tune a method's parameters on a task by the *validation* metric only, with a fixed trial budget.

Each trial is an ordinary run (same runner, checkpoints, reuse by key) marked ``evaluate_test=False``:
the test split is neither given to the method nor scored. The choice is the grid point with the best
mean (over seeds) *final* validation metric -- the final model is the one a run reports on test, so the
selection matches what is reported; ties go to the earlier grid point. Every method tuned for a
comparison gets the same ``budget`` (number of grid points): a grid with more points is subsampled
with a fixed seed, one with fewer is refused. The result (trials and choice) is a ``tune`` record under
``<results>/tuning/<profile>/<task>/<method>-<key>.json``, which a task's ``method_defaults_source`` cites.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..plugins.contracts import coerce
from ..plugins.errors import SuiteError
from ..plugins.registry import get_task, method_for, registry
from ..store.provenance import git_state
from ..running.options import RunOptions
from ..running.runner import run_one
from ..running.spec import RunSpec, resolve
from ..store.records import write_record

SELECTION = "final_val_metric"


def parse_grid(items: Iterable[str], method: str) -> dict[str, list[Any]]:
    """``--grid gain=1,10 --grid temperature=1,2`` -> {"gain": [1.0, 10.0], "temperature": [1.0, 2.0]},
    values coerced to the types of the method's declared parameters."""
    declared = registry().get_class("method", method).params
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise SuiteError(f"bad --grid {item!r}: expected NAME=V1,V2,...")
        name, values = item.split("=", 1)
        if name not in declared:
            raise SuiteError(f"bad --grid {item!r}: method {method!r} has no parameter {name!r} "
                             f"(has: {', '.join(sorted(declared)) or 'none'})")
        if name in grid:
            raise SuiteError(f"bad --grid {item!r}: {name!r} given twice")
        vals = [coerce(v.strip(), declared[name], f"--grid {name}") for v in values.split(",") if v.strip()]
        if not vals:
            raise SuiteError(f"bad --grid {item!r}: no values")
        grid[name] = list(dict.fromkeys(vals))
    if not grid:
        raise SuiteError("tune: pass at least one --grid NAME=V1,V2,...")
    return grid


def grid_points(grid: dict[str, list[Any]], budget: int) -> list[dict[str, Any]]:
    """The ``budget`` grid points tried: all of them when the grid has exactly ``budget`` points, a fixed
    seeded subsample (in grid order) when it has more; fewer is an error (budgets must be equal)."""
    names = sorted(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]
    if budget < 1:
        raise SuiteError(f"bad --budget {budget}: expected a positive number of grid points")
    if len(points) < budget:
        raise SuiteError(f"tune: the grid has {len(points)} points, fewer than --budget {budget}; every method "
                         "gets the same budget, so widen the grid (or lower the budget for every method)")
    if len(points) > budget:
        keep = sorted(random.Random(0).sample(range(len(points)), budget))
        points = [points[i] for i in keep]
    return points


def _score(values: list[float | None], higher: bool) -> float:
    """Mean final validation metric over seeds; a failed or missing trial makes the point the worst."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return -math.inf
    mean = sum(values) / len(values)  # type: ignore[arg-type]
    return mean if higher else -mean


def unique_seeds(seeds: Iterable[int], log: Callable[[str], None] = print) -> list[int]:
    """``seeds`` with repeats dropped (order kept), one line on ``log`` when any were: a seed given twice is
    one trial, counted once in a point's mean (it cannot tip the choice)."""
    seeds = list(seeds)
    unique = list(dict.fromkeys(seeds))
    if not unique:
        raise SuiteError("tune: pass at least one seed")
    if len(unique) < len(seeds):
        repeated = sorted({s for i, s in enumerate(seeds) if s in seeds[:i]})
        log(f"note: seed(s) {', '.join(map(str, repeated))} given more than once; each counted once")
    return unique


def save_tune_record(record: dict[str, Any], results_dir: Path, profile: str, task: str, method: str,
                     key: str) -> dict[str, Any]:
    """Write a tune record at its path (one line on an OS error) and return it with its ``path``."""
    path = tune_path(results_dir, profile, task, method, key)
    try:
        write_record(path, record)
    except OSError as exc:
        raise SuiteError(f"cannot write record {path}: {exc.strerror or exc}") from None
    record["path"] = str(path)
    return record


def tune_path(results_dir: Path, profile: str, task: str, method: str, key: str) -> Path:
    return Path(results_dir) / "tuning" / profile / task / f"{method}-{key[:10]}.json"


def tune(task_name: str, method_name: str, grid: dict[str, list[Any]], profile: str, seeds: list[int],
         budget: int, opts: RunOptions, task_params: dict[str, Any] | None = None,
         command: str = "", on_trial: Callable[[dict[str, Any]], None] = lambda rec: None) -> dict[str, Any]:
    """Run the trials (validation only), choose by validation, write and return the ``tune`` record."""
    task = get_task(task_name, **(task_params or {}))
    task.profile(profile)
    method_for(task, method_name)  # unknown method: SuiteError before any training
    points = grid_points(grid, budget)
    t_params = tuple(sorted((task_params or {}).items()))
    seeds = unique_seeds(seeds, opts.log)
    for point in points:  # every grid point's parameters checked (domains, combinations) before any trial trains
        RunSpec(task_name, method_name, profile, seeds[0], t_params, tuple(sorted(point.items()))).build()
    trials: list[dict[str, Any]] = []
    for point in points:
        for seed in seeds:
            spec = RunSpec(task_name, method_name, profile, seed, t_params, tuple(sorted(point.items())),
                           evaluate_test=False)
            rec = run_one(spec, opts)
            on_trial(rec)
            trials.append({"params": point, "seed": seed, "key": rec["key"], "status": rec["status"],
                           "reason": rec.get("reason"), "reused": bool(rec.get("reused")),
                           "final_val_metric": rec.get("final_val_metric"),
                           "best_val_metric": rec.get("best_val_metric"),
                           "record": spec.record_path(Path("."), rec["key"]).as_posix()})
    higher = task.higher_is_better
    scores = []
    for point in points:
        vals = [t["final_val_metric"] if t["status"] == "ok" else None for t in trials if t["params"] == point]
        scores.append(_score(vals, higher))
    best = max(range(len(points)), key=lambda i: (scores[i], -i))
    ok = math.isfinite(scores[best])
    fp = resolve(RunSpec(task_name, method_name, profile, seeds[0], t_params), opts).fp
    identity = {"task": task.config(), "method": method_name, "profile": profile, "seeds": seeds, "budget": budget,
                "grid": grid, "points": points, "trial_keys": [t["key"] for t in trials]}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]
    commit, dirty = git_state()
    record: dict[str, Any] = {
        "kind": "tune", "key": key, "status": "ok" if ok else "failed",
        "task": task_name, "method": method_name, "profile": profile, "seeds": seeds,
        "task_params": task.p, "grid": grid, "budget": budget, "points": points,
        "selection": f"best mean {SELECTION} over seeds on the validation split "
                     f"({'higher' if higher else 'lower'} is better); the test split is never loaded",
        "metric_name": task.metric_name, "higher_is_better": higher,
        "trials": trials,
        "point_scores": [(s if higher else -s) if math.isfinite(s) else None for s in scores],
        "choice": points[best] if ok else None,
        "choice_val_metric": (scores[best] if higher else -scores[best]) if ok else None,
        "command": command,
        "provenance": {"git_commit": commit, "git_dirty": dirty, "code_fingerprint": fp.code,
                       "data_fingerprint": fp.data},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if not ok:
        record["reason"] = "every grid point has a failed or non-finite trial"
    return save_tune_record(record, opts.results_dir, profile, task_name, method_name, key)
