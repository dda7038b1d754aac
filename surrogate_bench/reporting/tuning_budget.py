"""The tuning budget as the leaderboard states it: from ``tune --protocol`` records, one header line.

``budget_line(records)`` -> ``tuned (validation only): 8 trials × 2 seeds per method; lr log-uniform in
[0.1, 3] × the profile's lr plus one method knob; scrambled Sobol (seed 0), the same points for every
method; successive halving off; 5 methods on mnist-ap quick``; ``tuned_label(record)`` -> the per-row
citation ``tuned: 8 trials × 2 seeds, chosen val 0.4760``. Records whose protocols differ are said to
differ (their methods were not tuned with one budget), never averaged into one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable


def protocol_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ok ``tune`` records made by the protocol (those carrying a ``protocol`` field)."""
    from ..launch.tune_protocol import is_protocol_record

    return [r for r in records if is_protocol_record(r)]


def load_protocol_records(results_dir: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """The protocol tune records under ``results_dir`` (of ``profile`` when given)."""
    from ..launch.tune_protocol import protocol_tune_records

    return protocol_tune_records(Path(results_dir), profile)


def _fmt(x: float) -> str:
    return f"{x:g}"


def describe_protocol(protocol: dict[str, Any]) -> str:
    """``8 trials × 2 seeds per method; lr log-uniform in [0.1, 3] × the profile's lr ...``."""
    low, high = protocol["lr_factors"]
    halving = (f"successive halving on (first rung {protocol['min_epochs']} epoch(s), keep 1/"
               f"{protocol['reduction_factor']})" if protocol.get("halving") else "successive halving off")
    return (f"{protocol['n_trials']} trials × {protocol['n_seeds']} seeds per method; lr log-uniform in "
            f"[{_fmt(low)}, {_fmt(high)}] × the profile's lr plus at most one method knob; scrambled Sobol "
            f"(seed {protocol['sampler_seed']}), the same points for every method; {halving}")


def budget_line(records: Iterable[dict[str, Any]]) -> str:
    """The leaderboard header line stating the tuning budget of ``records`` (protocol tune records)."""
    recs = protocol_records(records)
    if not recs:
        return "tuned: no protocol tune records (every method at its defaults)"
    by_protocol: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        p = {k: v for k, v in r["protocol"].items() if k != "name"}
        by_protocol.setdefault(repr(sorted(p.items())), []).append(r)
    scopes = sorted({f"{r['task']} {r['profile']}" for r in recs})
    if len(by_protocol) == 1:
        n_methods = len({(r["task"], r["method"]) for r in recs})
        return (f"tuned (validation only, test never loaded): {describe_protocol(recs[0]['protocol'])}; "
                f"{n_methods} (task, method) pair(s) on {', '.join(scopes)}")
    parts = [f"{describe_protocol(group[0]['protocol'])} ({', '.join(sorted(r['method'] for r in group))})"
             for group in by_protocol.values()]
    return "tuned with DIFFERENT budgets (not one protocol): " + " | ".join(parts)


def tuned_label(record: dict[str, Any]) -> str:
    """The per-row citation of one protocol tune record: ``tuned: N trials × S seeds, chosen val 0.xxxx``."""
    p = record["protocol"]
    val = record.get("choice_val_metric")
    return (f"tuned: {p['n_trials']} trials × {p['n_seeds']} seeds, chosen val "
            f"{'n/a' if val is None else format(val, '.4f')}")


def _trial_cell(point: dict[str, Any], status: str, score: Any, entries: list[dict[str, Any]]) -> str:
    """One trial: ``lr=0.0233, margin=0.164: 0.4123`` (the mean final val), ``… pruned@1: 0.1340`` or ``… failed``."""
    where = ", ".join(f"{k}={v}" for k, v in point.items())
    if status == "pruned":
        hist = [e.get("val_history") or [] for e in entries]
        at = entries[0].get("pruned_at_epoch") if entries else None
        vals = [h[-1] for h in hist if h]
        mean = f": {sum(vals) / len(vals):.4f}" if vals and len(vals) == len(hist) else ""
        return f"{where} pruned@{at}{mean}"
    if status != "ok" or score is None:
        reasons = sorted({str(e.get("reason") or e.get("status")) for e in entries if e.get("status") != "ok"})
        return f"{where} {status}" + (f" ({'; '.join(reasons)})" if reasons else "")
    return f"{where}: {score:.4f}"


def protocol_table(records: Iterable[dict[str, Any]]) -> str:
    """One row per protocol tune record: task, method, profile, search space, every trial's mean final
    validation metric (or where it was pruned or why it failed), the choice and its record."""
    from tabulate import tabulate

    rows = []
    for r in protocol_records(records):
        space = "; ".join(f"{k} {v['scale']} [{_fmt(v['low'])}, {_fmt(v['high'])}]" if "low" in v else
                          f"{k} ∈ {{{', '.join(map(str, v.get('choices', [])))}}}"
                          for k, v in (r.get("search_space") or {}).items())
        trials = []
        for i, point in enumerate(r.get("points") or []):
            entries = [t for t in r.get("trials") or [] if t.get("params") == point]
            status = (r.get("point_status") or [])[i] if i < len(r.get("point_status") or []) else "?"
            score = (r.get("point_scores") or [])[i] if i < len(r.get("point_scores") or []) else None
            trials.append(_trial_cell(point, status, score, entries))
        choice = ", ".join(f"{k}={v}" for k, v in sorted((r.get("choice") or {}).items()))
        p = r["protocol"]
        path = Path(str(r.get("path", ""))).as_posix()
        shown = path[path.index("tuning/"):] if "tuning/" in path else path
        rows.append([r["task"], r["method"], r["profile"], f"{p['n_trials']} × seeds {','.join(map(str, p['seeds']))}",
                     space, " · ".join(trials), choice, f"{r['choice_val_metric']:.4f}", f"`{shown}`"])
    if not rows:
        return ""
    return tabulate(sorted(rows), headers=["task", "method", "profile", "trials × seeds", "search space",
                                           "trials (mean final val over seeds)", "choice", "chosen val",
                                           "record"], tablefmt="github", disable_numparse=True)

