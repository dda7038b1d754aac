"""The tuning protocol: one declared budget, applied identically to every method on a task (the baseline too).

A :class:`TuneProtocol` fixes N trials, S >= 2 seeds per trial, the learning-rate range as factors of the
profile's lr, optional successive halving and the sampler seed. Each method gets the optimizer's lr
(log-uniform over the range) plus at most one knob of its own, from :data:`TUNING_KNOBS`. The N points
are the first N of a scrambled Sobol sequence (``scipy.stats.qmc.Sobol``, 2-D, seeded by the protocol):
coordinate 0 is the lr, coordinate 1 the knob (unused by lr-only methods), so every method on a task
gets the *same* lr sequence and the same knob coordinates. Each trial is S ordinary runs marked
``evaluate_test=False`` (the test split is never loaded); the choice is the completed trial with the
best mean *final* validation metric over its seeds (ties: the earlier trial). Everything is stored as a
``tune`` record in the grid tune's format (``launch/tune.py``) plus ``protocol``, ``budget`` and
``sampler``; :func:`tuned_spec` turns a record's choice into the run spec published as the tuned row.

Successive halving (``halving=True``) uses Optuna's ``SuccessiveHalvingPruner`` on the per-epoch mean
validation metric without touching the runner: at each rung epoch (``min_epochs * reduction_factor^k``
below the profile's epochs) each seed trains to that epoch through the runner's own stop-after-epochs
hook, which leaves its ordinary end-of-epoch checkpoint; the history is read back from it, the pruner
decides, and a promoted trial resumes from the checkpoint (the runner's resume is exact, so a promoted
trial's final record is the same as an uninterrupted run's). Trials run in order, so the pruner's
asynchronous rule sees the same sequence for every method.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..plugins.contracts import coerce
from ..plugins.errors import SuiteError
from ..plugins.registry import get_task, method_for, registry
from ..running.checkpoint import checkpoint_path, load_checkpoint
from ..running.options import RunOptions, SimulatedCrash
from ..running.runner import run_resolved
from ..running.spec import RunSpec, resolve
from ..store.provenance import git_state
from ..store.records import read_record
from .tune import SELECTION, save_tune_record, tune_path, unique_seeds

PROTOCOL_NAME = "lr+knob/sobol/v1"

# The one tuning knob per method: (parameter, low, high, "log" | "linear") or (parameter, (choice, ...)).
# Declared here, not in the method files, only because those files are frozen until their next re-key;
# at that re-key each entry moves into its method file (a class attribute ``tuning_knob``) and this
# table is read from there. Methods not listed (ce, the learned ReLoss losses) get the lr only: ce is the
# baseline at its defaults (label smoothing is ce-ls's own knob), ReLoss's loss network has no single knob.
TUNING_KNOBS: dict[str, tuple] = {
    "ce-ls": ("smoothing", 0.0, 0.3, "linear"),
    "focal": ("gamma", 0.5, 5.0, "linear"),
    "poly1": ("epsilon", -1.0, 3.0, "linear"),
    "hinge": ("margin", 0.1, 10.0, "log"),
    "smooth-ap": ("temperature", 0.001, 0.1, "log"),
    "fastap": ("bins", (5, 10, 20, 40)),
    "blackbox-ap": ("lam", 0.5, 32.0, "log"),
    "uniloss": ("gain", 1.0, 30.0, "log"),
    "uniloss-release": ("gain", 1.0, 30.0, "log"),
    "soft-top1": ("steepness", 2.0, 50.0, "log"),
    "mse-heatmap": ("sigma", 0.5, 2.0, "log"),
    "ohkm-mse": ("top_k", (0, 4, 6, 8)),
    "awing": ("omega", 5.0, 30.0, "log"),
    "soft-argmax": ("beta", 0.5, 10.0, "log"),
}


@dataclass(frozen=True)
class TuneProtocol:
    """One tuning budget for every method on a task: N trials x S seeds, the lr range, halving, sampler."""

    n_trials: int = 4  # the quick-grid budget (docs/tuning.md: N=4 x S=2 fits ~2.5 h on 2 cores)
    seeds: tuple[int, ...] = (0, 1)
    lr_factors: tuple[float, float] = (0.1, 3.0)  # lr in [profile lr * low, profile lr * high], log-uniform
    halving: bool = False
    min_epochs: int = 1  # successive halving: first rung (epochs)
    reduction_factor: int = 3  # successive halving: keep the top 1/reduction_factor at each rung
    sampler_seed: int = 0
    name: str = PROTOCOL_NAME

    def __post_init__(self) -> None:
        seeds = tuple(dict.fromkeys(int(s) for s in self.seeds))  # a repeated seed is one seed
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "lr_factors", tuple(float(f) for f in self.lr_factors))
        if self.n_trials < 1:
            raise SuiteError(f"bad number of trials {self.n_trials}: expected at least 1")
        if len(seeds) < 2:
            raise SuiteError(f"the tuning protocol averages each trial over at least 2 seeds; got {list(seeds)}")
        low, high = self.lr_factors if len(self.lr_factors) == 2 else (math.nan, math.nan)
        if not (0 < low <= high and math.isfinite(high)):
            raise SuiteError(f"bad lr range factors {list(self.lr_factors)}: expected 0 < LOW <= HIGH")
        if self.halving and (self.min_epochs < 1 or self.reduction_factor < 2):
            raise SuiteError(f"bad successive halving: min_epochs {self.min_epochs} >= 1 and reduction factor "
                             f"{self.reduction_factor} >= 2 expected")

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"], d["lr_factors"] = list(self.seeds), list(self.lr_factors)
        d["n_seeds"] = len(self.seeds)
        return d

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which successive halving compares trials (all below the profile's epochs)."""
        if not self.halving:
            return []
        out, k = [], 0
        while self.min_epochs * self.reduction_factor ** k < epochs:
            out.append(self.min_epochs * self.reduction_factor ** k)
            k += 1
        return out


def knob_of(method: str) -> dict[str, Any] | None:
    """The method's tuning knob as ``{param, scale, low, high}`` or ``{param, scale: choices, choices}``."""
    entry = TUNING_KNOBS.get(method)
    if entry is None:
        return None
    if len(entry) == 2:
        return {"param": entry[0], "scale": "choices", "choices": list(entry[1])}
    param, low, high, scale = entry
    if scale not in ("log", "linear") or not low <= high or (scale == "log" and low <= 0):
        raise SuiteError(f"bad tuning knob for {method!r}: {entry}")
    return {"param": param, "scale": scale, "low": low, "high": high}


def unit_points(n: int, seed: int) -> list[tuple[float, float]]:
    """The first ``n`` points of the scrambled 2-D Sobol sequence seeded by ``seed`` (in [0, 1)^2)."""
    from scipy.stats import qmc

    with warnings.catch_warnings():  # n not a power of 2: the balance warning; the prefix is still the sequence
        warnings.simplefilter("ignore")
        u = qmc.Sobol(d=2, scramble=True, rng=seed).random(n)
    return [(float(a), float(b)) for a, b in u]


def _sig(x: float) -> float:
    """4 significant digits: short, platform-stable values in run keys."""
    return float(f"{x:.4g}")


def trial_points(protocol: TuneProtocol, base_lr: float, method: str) -> list[dict[str, Any]]:
    """The N points a method is tried at: ``{"lr": ..., knob: ...}``, from the protocol's Sobol sequence."""
    knob = knob_of(method)
    declared = registry().get_class("method", method).params
    lo, hi = (base_lr * f for f in protocol.lr_factors)
    points = []
    for u_lr, u_knob in unit_points(protocol.n_trials, protocol.sampler_seed):
        point: dict[str, Any] = {"lr": _sig(lo * (hi / lo) ** u_lr)}
        if knob is not None:
            if knob["scale"] == "choices":
                value: Any = knob["choices"][min(int(u_knob * len(knob["choices"])), len(knob["choices"]) - 1)]
            elif knob["scale"] == "log":
                value = _sig(knob["low"] * (knob["high"] / knob["low"]) ** u_knob)
            else:
                value = _sig(knob["low"] + u_knob * (knob["high"] - knob["low"]))
            default = declared[knob["param"]]
            if isinstance(default, int) and not isinstance(default, bool):
                value = int(round(value))
            point[knob["param"]] = coerce(value, default, f"tuning knob {method}.{knob['param']}")
        points.append(point)
    return points


def split_point(point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method params, profile params) of a point: ``lr`` is the profile's, the knob the method's."""
    return {k: v for k, v in point.items() if k != "lr"}, {"lr": point["lr"]}


def tuned_spec(base: RunSpec, tune_record: dict[str, Any]) -> RunSpec:
    """``base`` with a tune record's choice applied: the knob as a method parameter and the lr as a profile
    parameter (both enter the run key, so the tuned run is a separate row from the run at the defaults)."""
    rec = tune_record
    if rec.get("kind") != "tune" or rec.get("status") != "ok" or rec.get("choice") is None:
        raise SuiteError(f"not an ok tune record with a choice: {rec.get('path') or rec.get('key')}")
    for field in ("task", "method", "profile"):
        if rec.get(field) != getattr(base, field):
            raise SuiteError(f"the tune record is for {field} {rec.get(field)!r}, the run for {getattr(base, field)!r}")
    if "choice_method_params" in rec:
        method_params, profile_params = rec["choice_method_params"], rec.get("choice_profile_params") or {}
    else:  # a grid tune record: the choice is method parameters only
        method_params, profile_params = rec["choice"], {}
    mp = {**dict(base.method_params), **method_params}
    pp = {**dict(base.profile_params), **profile_params}
    return replace(base, method_params=tuple(sorted(mp.items())), profile_params=tuple(sorted(pp.items())))


def is_protocol_record(rec: dict[str, Any]) -> bool:
    """An ok ``tune`` record made by the protocol (it carries the ``protocol`` it was run with)."""
    return rec.get("kind") == "tune" and rec.get("status") == "ok" and bool(rec.get("protocol"))


def protocol_tune_records(results_dir: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """The ok tune records made by the protocol (those with a ``protocol`` field and a choice) under
    ``results_dir``, of ``profile`` when given, each with its ``path``."""
    from ..store.records import iter_records

    out = []
    for rec in iter_records(Path(results_dir), "tune"):
        if is_protocol_record(rec) and rec.get("choice") is not None and (
                profile is None or rec.get("profile") == profile):
            out.append({**rec, "path": str(tune_path(results_dir, rec["profile"], rec["task"], rec["method"],
                                                    rec["key"]))})
    return out


def newest_tune_records(records: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(profile, task, task params, method) -> the newest protocol tune record of that pair (by ``finished``,
    then key): the one ``run --tuned`` applies and the leaderboard cites."""
    out: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        ident = (rec["profile"], rec["task"], json.dumps(rec.get("task_params") or {}, sort_keys=True), rec["method"])
        if ident not in out or (str(rec.get("finished")), rec["key"]) > (str(out[ident].get("finished")),
                                                                        out[ident]["key"]):
            out[ident] = rec
    return out


def tuned_specs(specs: Iterable[RunSpec], results_dir: Path) -> list[RunSpec]:
    """Each spec with its pair's newest protocol tune choice applied (:func:`tuned_spec`). A pair without a
    tune record is a SuiteError naming every such pair and the command that makes their records."""
    specs = list(specs)
    newest = newest_tune_records(protocol_tune_records(results_dir))
    out, missing = [], []
    for spec in specs:
        task = get_task(spec.task, **dict(spec.task_params))
        try:
            supported = method_for(task, spec.method).supports(task) is None
        except Exception:  # a bad method: its run records why
            supported = False
        if not supported:  # an unsupported pair stays as it is: the plan lists it, nothing trains
            out.append(spec)
            continue
        full = task.p
        rec = newest.get((spec.profile, spec.task, json.dumps(full, sort_keys=True), spec.method))
        if rec is None:
            missing.append(f"{spec.task}/{spec.method}")
            continue
        out.append(tuned_spec(spec, rec))
    if missing:
        pairs = sorted(set(missing))
        raise SuiteError(f"run --tuned: no protocol tune record under {results_dir} for {', '.join(pairs)} "
                         f"({specs[0].profile}); make them with: surrogate-bench tune --protocol --task T --method M")
    return out


def _history_until(r, opts: RunOptions, until: int | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Train the resolved seed run ``r`` to epoch ``until`` (None: to the end). Returns (its record when it
    finished or failed, else None; its history so far). A finished record or a checkpoint already past
    ``until`` is read, not trained."""
    total = r.spec.profile_of(r.task).epochs
    if until is None or until >= total:
        rec = run_resolved(r, opts)
        return rec, list(rec.get("history") or [])
    if not opts.force:
        done = read_record(r.path, expected_key=r.key, expect=r.spec.expected_fields())
        if done and done["status"] == "ok":
            return {**done, "reused": True}, list(done.get("history") or [])[:until]
    ckpt = checkpoint_path(opts.results_dir, r.key)
    state = load_checkpoint(ckpt, r.key)
    if state is None or int(state.get("epoch", 0)) < until:
        try:
            rec = run_resolved(r, replace(opts, stop_after_epochs=until))
        except SimulatedCrash:
            state = load_checkpoint(ckpt, r.key)
        else:  # reused, failed (or skipped): a record, no checkpoint
            return rec, list(rec.get("history") or [])[:until]
    if state is None:
        raise SuiteError(f"tune: no checkpoint of {r.spec.label()} after epoch {until} at {ckpt}")
    return None, list(state["history"])[:until]


def _mean(values: Iterable[Any]) -> float:
    vals = list(values)
    if not vals or any(v is None or not math.isfinite(v) for v in vals):
        return math.nan
    return sum(vals) / len(vals)


def _study(higher: bool, protocol: TuneProtocol):
    try:
        import optuna
    except ImportError:
        raise SuiteError("successive halving needs Optuna: pip install 'surrogate-bench[tune]' (or optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=protocol.min_epochs,
                                                    reduction_factor=protocol.reduction_factor,
                                                    min_early_stopping_rate=0)
    return optuna, optuna.create_study(direction="maximize" if higher else "minimize", pruner=pruner,
                                       sampler=optuna.samplers.RandomSampler(seed=protocol.sampler_seed))


def tune_protocol(task_name: str, method_name: str, protocol: TuneProtocol, profile: str, opts: RunOptions,
                  task_params: dict[str, Any] | None = None, command: str = "",
                  on_trial: Callable[[dict[str, Any]], None] = lambda rec: None) -> dict[str, Any]:
    """Run ``protocol`` for one method on one task (validation only), choose, write and return the record."""
    task = get_task(task_name, **(task_params or {}))
    base_profile = task.profile(profile)
    method_for(task, method_name)  # unknown or unsupported method: SuiteError before any training
    if protocol.halving and opts.force:
        raise SuiteError("tune: --force with successive halving is not supported (delete the trials instead)")
    seeds = unique_seeds(protocol.seeds, opts.log)
    t_params = tuple(sorted((task_params or {}).items()))
    points = trial_points(protocol, base_profile.lr, method_name)

    def spec_of(point: dict[str, Any], seed: int) -> RunSpec:
        mp, pp = split_point(point)
        return RunSpec(task_name, method_name, profile, seed, t_params, tuple(sorted(mp.items())),
                       evaluate_test=False, profile_params=tuple(sorted(pp.items())))

    for point in points:  # every point's parameters (method domains, the lr's) checked before any trial trains
        spec = spec_of(point, seeds[0])
        spec.profile_of(spec.build()[0])
    higher = task.higher_is_better
    epochs = base_profile.epochs
    rungs = protocol.rungs(epochs)
    optuna, study = _study(higher, protocol) if rungs else (None, None)

    trials: list[dict[str, Any]] = []
    scores: list[float] = []
    point_status: list[str] = []
    for i, point in enumerate(points):
        resolved = [resolve(spec_of(point, seed), opts) for seed in seeds]
        otrial = study.ask() if study is not None else None
        pruned_at, reported = None, set()
        for rung in rungs:
            histories = [_history_until(r, opts, rung)[1] for r in resolved]
            for epoch in range(1, rung + 1):
                value = _mean(h[epoch - 1]["val_metric"] if len(h) >= epoch else None for h in histories)
                if epoch not in reported:
                    otrial.report(value, epoch)
                    reported.add(epoch)
            if otrial.should_prune():
                pruned_at = rung
                break
        entries = []
        for seed, r in zip(seeds, resolved):
            if pruned_at is not None:
                _, hist = _history_until(r, opts, pruned_at)
                entries.append({"params": point, "seed": seed, "key": r.key, "status": "skipped",
                                "reason": f"pruned by successive halving after epoch {pruned_at}",
                                "pruned_at_epoch": pruned_at, "reused": False, "final_val_metric": None,
                                "best_val_metric": None, "val_history": [h["val_metric"] for h in hist],
                                "record": None})
                continue
            rec, _ = _history_until(r, opts, None)
            on_trial(rec)
            entries.append({"params": point, "seed": seed, "key": rec["key"], "status": rec["status"],
                            "reason": rec.get("reason"), "reused": bool(rec.get("reused")),
                            "final_val_metric": rec.get("final_val_metric"),
                            "best_val_metric": rec.get("best_val_metric"),
                            "record": r.spec.record_path(Path("."), rec["key"]).as_posix()})
        trials += entries
        if pruned_at is not None:
            opts.log(f"trial {i + 1}/{len(points)} {point}: pruned after epoch {pruned_at}")
            study.tell(otrial, state=optuna.trial.TrialState.PRUNED)
            scores.append(-math.inf)
            point_status.append("pruned")
            continue
        ok = all(e["status"] == "ok" for e in entries)
        mean = _mean(e["final_val_metric"] for e in entries) if ok else math.nan
        scores.append((mean if higher else -mean) if math.isfinite(mean) else -math.inf)
        point_status.append("ok" if math.isfinite(mean) else "failed")
        if study is not None:
            if math.isfinite(mean):
                study.tell(otrial, mean)
            else:
                study.tell(otrial, state=optuna.trial.TrialState.FAIL)

    best = max(range(len(points)), key=lambda i: (scores[i], -i))
    ok = math.isfinite(scores[best])
    knob = knob_of(method_name)
    grid = {name: sorted({p[name] for p in points}, key=lambda v: (str(type(v)), v)) for name in points[0]}
    sampler = {"name": "scipy.stats.qmc.Sobol", "scramble": True, "seed": protocol.sampler_seed, "dimensions": 2,
               "coordinates": ["lr (log)", "knob"], "pruner": (
                   f"optuna.pruners.SuccessiveHalvingPruner(min_resource={protocol.min_epochs}, "
                   f"reduction_factor={protocol.reduction_factor}) at epochs {rungs}" if rungs else None)}
    lr_range = [_sig(base_profile.lr * f) for f in protocol.lr_factors]
    fp = resolve(RunSpec(task_name, method_name, profile, seeds[0], t_params), opts).fp
    identity = {"task": task.config(), "method": method_name, "profile": profile, "protocol": protocol.as_dict(),
                "points": points, "trial_keys": [t["key"] for t in trials], "pruned": point_status}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]
    commit, dirty = git_state()
    choice = points[best] if ok else None
    record: dict[str, Any] = {
        "kind": "tune", "key": key, "status": "ok" if ok else "failed",
        "task": task_name, "method": method_name, "profile": profile, "seeds": seeds,
        "task_params": task.p, "grid": grid, "budget": protocol.n_trials, "points": points,
        "protocol": protocol.as_dict(), "sampler": sampler,
        "search_space": {"lr": {"scale": "log", "low": lr_range[0], "high": lr_range[1], "profile_lr": base_profile.lr,
                                "factors": list(protocol.lr_factors)},
                         **({knob["param"]: {k: v for k, v in knob.items() if k != "param"}} if knob else {})},
        "selection": f"best mean {SELECTION} over {len(seeds)} seeds on the validation split "
                     f"({'higher' if higher else 'lower'} is better; pruned trials excluded); "
                     "the test split is never loaded",
        "metric_name": task.metric_name, "higher_is_better": higher,
        "trials": trials,
        "point_scores": [(s if higher else -s) if math.isfinite(s) else None for s in scores],
        "point_status": point_status,
        "choice": choice,
        "choice_method_params": split_point(choice)[0] if choice else None,
        "choice_profile_params": split_point(choice)[1] if choice else None,
        "choice_val_metric": (scores[best] if higher else -scores[best]) if ok else None,
        "command": command,
        "provenance": {"git_commit": commit, "git_dirty": dirty, "code_fingerprint": fp.code,
                       "data_fingerprint": fp.data},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if not ok:
        record["reason"] = "every trial was pruned, failed or had a non-finite validation metric"
    return save_tune_record(record, opts.results_dir, profile, task_name, method_name, key)
