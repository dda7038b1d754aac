"""The lines a command prints as it goes: one per finished run, trial or probe, and a run's summary.

The CLI parses and dispatches; what it says comes from here, so the wording lives with the other reports.
"""

from __future__ import annotations

from pathlib import Path

from ..launch.grid import one_line


def summary_line(rec: dict, results_dir: Path | None = None) -> str:
    """One line per finished run; a failure's whole reason on one line, and (given ``results_dir``) the record
    file that keeps its traceback."""
    from ..plugins.catalog import PLUMBING_PROFILES

    head = f"{rec['task']:16s} {rec['method']:12s} {rec['profile']:6s} seed {rec['seed']}: "
    if rec["status"] == "ok":
        how = "reused" if rec.get("reused") else f"{rec.get('wall_time_s', 0):.1f}s"
        note = "; plumbing only, not a comparison" if rec["profile"] in PLUMBING_PROFILES else ""
        if rec.get("test_metric") is None and rec.get("evaluate_test") is False:  # a tuning trial: validation only
            return head + (f"{rec.get('metric_name', 'metric')} final val {_num(rec.get('final_val_metric'), '.4f')} "
                           f"(best val {_num(rec.get('best_val_metric'), '.4f')}; {how})")
        return head + (f"{rec.get('metric_name', 'metric')} {_num(rec.get('test_metric'), '.4f')} "
                       f"(best val {_num(rec.get('best_val_metric'), '.4f')}; {how}{note})")
    line = head + one_line(f"{rec['status']}: {rec.get('reason', '')}")
    if rec["status"] == "failed" and rec.get("traceback") and results_dir is not None and rec.get("key"):
        line += f" (traceback in {_record_path(rec, results_dir)})"
    return line


def _record_path(rec: dict, results_dir: Path) -> Path:
    from ..running.spec import RunSpec

    spec = RunSpec(rec["task"], rec["method"], rec["profile"], int(rec.get("seed", 0)),
                   evaluate_test=rec.get("evaluate_test") is not False)
    return spec.record_path(results_dir, rec["key"])


def _num(value: object, fmt: str) -> str:
    """A number in ``fmt``; None (a missing value; 0.0 is a value) as ``nan``."""
    return format(float("nan") if value is None else value, fmt)


def run_summary(counts: dict[str, int], plan, elapsed: float, results_flag: str, download: bool) -> str:
    """The last line of a run: what happened and the command to look at it."""
    n_missing = sum(len(v[1]) for v in plan.no_data.values())
    parts = [f"{counts['ok']} trained", f"{counts['reused']} reused"]
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["skipped"] or n_missing:
        parts.append(f"{counts['skipped'] + n_missing} skipped (no data)")
    if plan.unsupported:
        parts.append(f"{len({(s.task, s.method) for s, _ in plan.unsupported})} unsupported pair(s) left out")
    minutes, seconds = divmod(int(round(elapsed)), 60)
    where = results_flag
    if counts["ok"] or counts["reused"]:
        nxt = f"next: python -m surrogate_bench leaderboard{where}"
    elif n_missing:
        nxt = ("next: put the data where the lines above say, then run the same command" if download else
               "next: put the data where the lines above say (or pass --download), then run the same command")
    else:
        nxt = "next: python -m surrogate_bench list (which methods each task supports)"
    return f"done in {minutes}m{seconds:02d}s: {', '.join(parts)}; {nxt}"


def probe_line(rec: dict) -> str:
    """One line per finished probe: its correlations, or its status and whole reason."""
    head = f"probe {rec['task']:16s} {rec['method']:12s} {rec['profile']:6s}: "
    if rec["status"] == "ok":
        return head + (f"spearman {_num(rec.get('spearman'), '+.3f')} [{_num(rec.get('spearman_ci_low'), '+.3f')}, "
                       f"{_num(rec.get('spearman_ci_high'), '+.3f')}] within states "
                       f"{_num(rec.get('spearman_within'), '+.3f')} kendall {_num(rec.get('kendall'), '+.3f')} "
                       f"over {rec.get('n_batches')} batches")

    return head + one_line(f"{rec['status']}: {rec.get('reason', '')}")


def trial_label(rec: dict, grid: dict) -> str:
    """``trial [k=v,...] `` for a tuning trial's line: the grid parameters it set."""
    params = rec.get("method_params") or {}
    return "trial [" + ",".join(f"{k}={params.get(k)}" for k in sorted(grid)) + "] "
