"""Paired comparisons behind docs/fidelity.md's measured cells (issue 28), from the records under
``results/fidelity/runs/quick/mnist-ap`` (written by ``scripts/fidelity_runs.sh``).

Each comparison is one release option (or bundle) against the suite setting it replaces, on the same seeds
(same seed = same data order and initialisation). Differences, 95% t intervals and verdict words come from
the leaderboard's own function (``surrogate_bench.stats.verdicts.decide_family``: two-sided paired t-test,
Holm-adjusted within each family, TOST equivalence within the task's margin delta). The leaderboard itself
compares every row with the task's baseline (CE) only, so it cannot show option-vs-suite pairs.

Also: VOC (interpolated) AP minus scikit-learn's exact AP on every record (``test_metrics_extra.voc_ap``).

    python scripts/fidelity_compare.py [--results-dir results/fidelity] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from surrogate_bench.reporting.families import margin_of
from surrogate_bench.stats.seeds import t_interval
from surrogate_bench.stats.verdicts import decide_family

TASK = "mnist-ap"

# (family, name, (method, overrides of the base), (method, overrides of the variant))
COMPARISONS = [
    ("uniloss", "release_sign=true", ("uniloss", {}), ("uniloss", {"release_sign": True})),
    ("uniloss", "release_ap=true", ("uniloss", {}), ("uniloss", {"release_ap": True})),
    ("uniloss", "release_sigmoid=true", ("uniloss", {}), ("uniloss", {"release_sigmoid": True})),
    ("uniloss", "release_sign=true, given release_sigmoid=true", ("uniloss", {"release_sigmoid": True}),
     ("uniloss", {"release_sigmoid": True, "release_sign": True})),
    ("reloss", "reloss cls_input=prob", ("reloss", {}), ("reloss", {"cls_input": "prob"})),
    ("reloss", "reloss-release (bundle)", ("reloss", {}), ("reloss-release", {})),
    ("reloss", "reloss gp_norm=sample, gp_batches=0 (the release's penalty)", ("reloss", {}),
     ("reloss", {"gp_norm": "sample", "gp_batches": 0})),
    ("reloss", "reloss steepness=5 (the release's sort)", ("reloss", {}), ("reloss", {"steepness": 5.0})),
    ("reloss", "reloss group=256 (the release's batches per step)", ("reloss", {}), ("reloss", {"group": 256})),
    ("reloss", "reloss match_scale=false (no scale matching)", ("reloss", {}), ("reloss", {"match_scale": False})),
    ("reloss-release", "reloss-release train_labels=shuffle (vs argmax)", ("reloss-release", {}),
     ("reloss-release", {"train_labels": "shuffle"})),
    ("reloss-release", "reloss-release val_labels=shuffle (vs true)", ("reloss-release", {}),
     ("reloss-release", {"val_labels": "shuffle"})),
]


def load(results_dir: Path) -> list[dict]:
    out = []
    for path in sorted((results_dir / "runs" / "quick" / TASK).glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") == "ok" and rec.get("kind") == "run":
            rec["_file"] = str(path)
            out.append(rec)
    return out


def defaults(method: str) -> dict:
    from surrogate_bench.plugins.registry import registry

    return dict(registry().get_class("method", method).params)


def select(records: list[dict], method: str, overrides: dict) -> dict[int, dict]:
    want = {**defaults(method), **overrides}
    picked: dict[int, dict] = {}
    for rec in records:
        if rec["method"] != method:
            continue
        params = {k: v for k, v in rec["method_params"].items() if k in want}
        if all(params.get(k) == v for k, v in want.items() if k not in {"loss_seed"}) and \
                rec["method_params"].get("loss_seed", -1) in (-1, rec["seed"]):
            picked[int(rec["seed"])] = rec
    return picked


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results-dir", default="results/fidelity", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    records = load(args.results_dir)
    delta = margin_of(TASK)
    summary: dict = {"task": TASK, "delta": delta, "comparisons": [], "voc_minus_exact": {}}

    print(f"## Paired comparisons, {TASK} quick (delta {delta}), from {args.results_dir}\n")
    print("| comparison | base mean (n) | variant mean (n) | variant - base [95% CI] | p (Holm) | verdict | seeds |")
    print("|---|---|---|---|---|---|---|")
    families: dict[str, dict[str, list[float]]] = {}
    meta: dict[str, tuple] = {}
    for fam, name, (bm, bo), (vm, vo) in COMPARISONS:
        base, var = select(records, bm, bo), select(records, vm, vo)
        seeds = sorted(set(base) & set(var))
        if len(seeds) < 2:
            print(f"| {name} | – | – | not enough paired seeds ({seeds}) | | | |")
            continue
        diffs = [var[s]["test_metric"] - base[s]["test_metric"] for s in seeds]
        families.setdefault(fam, {})[name] = diffs
        meta[name] = (base, var, seeds)
    for fam, diffs in families.items():
        verdicts = decide_family(diffs, delta)
        for name, v in verdicts.items():
            base, var, seeds = meta[name]
            bmean = statistics.mean(base[s]["test_metric"] for s in seeds)
            vmean = statistics.mean(var[s]["test_metric"] for s in seeds)
            print(f"| {name} | {bmean:.4f} ({len(seeds)}) | {vmean:.4f} ({len(seeds)}) | "
                  f"{v.diff:+.4f} [{v.ci_low:+.4f}, {v.ci_high:+.4f}] | {v.p_superiority_adjusted:.3g} | "
                  f"{v.word} | {','.join(map(str, seeds))} |")
            summary["comparisons"].append({
                "family": fam, "comparison": name, "seeds": seeds, "base_mean": bmean, "variant_mean": vmean,
                "diff": v.diff, "ci": [v.ci_low, v.ci_high], "p_holm": v.p_superiority_adjusted,
                "p_equivalence_holm": v.p_equivalence_adjusted, "verdict": v.word,
                "base_values": [base[s]["test_metric"] for s in seeds],
                "variant_values": [var[s]["test_metric"] for s in seeds],
                "base_records": [Path(base[s]["_file"]).name for s in seeds],
                "variant_records": [Path(var[s]["_file"]).name for s in seeds]})

    print("\n## VOC (interpolated) AP - exact AP, per record\n")
    print("| method | params differing from default | n | mean VOC - exact | min | max |")
    print("|---|---|---|---|---|---|")
    groups: dict[tuple, list[float]] = {}
    for rec in records:
        voc = (rec.get("test_metrics_extra") or {}).get("voc_ap")
        if voc is None:
            continue
        d = defaults(rec["method"])
        diff = ",".join(f"{k}={v}" for k, v in sorted(rec["method_params"].items())
                        if k in d and d[k] != v and k != "loss_seed")
        groups.setdefault((rec["method"], diff), []).append(voc - rec["test_metric"])
    everything = []
    for (method, diff), vals in sorted(groups.items()):
        everything += vals
        print(f"| {method} | {diff or '–'} | {len(vals)} | {statistics.mean(vals):+.6f} | {min(vals):+.6f} | "
              f"{max(vals):+.6f} |")
        summary["voc_minus_exact"][f"{method}[{diff}]"] = {"n": len(vals), "mean": statistics.mean(vals),
                                                           "min": min(vals), "max": max(vals)}
    if everything:
        ci = t_interval(everything)
        print(f"| all | | {len(everything)} | {ci.mean:+.6f} (95% t: ±{ci.half_width:.6f}) | "
              f"{min(everything):+.6f} | {max(everything):+.6f} |")
        summary["voc_minus_exact"]["all"] = {"n": len(everything), "mean": statistics.mean(everything),
                                             "ci95": [ci.mean - ci.half_width, ci.mean + ci.half_width]}
    trained = [(r.get("test_metrics_extra") or {}).get("voc_ap") - r["test_metric"] for r in records
               if (r.get("test_metrics_extra") or {}).get("voc_ap") is not None and r["test_metric"] >= 0.98]
    if trained:
        ci = t_interval(trained)
        print(f"| runs with exact AP >= 0.98 | | {len(trained)} | {ci.mean:+.6f} (95% t: ±{ci.half_width:.6f}) | "
              f"{min(trained):+.6f} | {max(trained):+.6f} |")
        summary["voc_minus_exact"]["exact_ap_ge_0.98"] = {"n": len(trained), "mean": ci.mean,
                                                          "ci95": [ci.mean - ci.half_width, ci.mean + ci.half_width],
                                                          "min": min(trained), "max": max(trained)}
    cpu = sum(r.get("wall_time_s", 0.0) for r in records)
    print(f"\n{len(records)} records, total wall time {cpu:.0f} s (one thread each)")
    summary["n_records"], summary["total_wall_time_s"] = len(records), cpu
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
