"""Expand CLI selections (names, patterns, ``--all``, ``k=v`` parameters) into run specs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

from ..plugins.contracts import SEED_MAX
from ..plugins.errors import SuiteError
from ..plugins.registry import registry
from ..plugins.suggest import did_you_mean
from ..running.spec import RunSpec


def split_names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def select(kind: str, value: str | None, use_all: bool) -> list[str]:
    """Names of one kind: ``--all``, a comma list, or glob patterns (``cifar*``)."""
    reg = registry()
    if use_all and not value:
        return reg.names(kind)
    names: list[str] = []
    for item in split_names(value):
        matches = reg.names(kind, item) if any(c in item for c in "*?[") else [reg.get_class(kind, item).name]
        if not matches:
            hint = did_you_mean(item.strip("*?[]"), reg.names(kind))
            raise SuiteError(f"no {kind} matches {item!r}{hint} (known: {', '.join(reg.names(kind))})")
        names += [m for m in matches if m not in names]
    if not names:
        raise SuiteError(f"no {kind} selected: pass --{kind} NAME[,NAME...] or --all")
    return names


def parse_params(items: Iterable[str], kind: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """``k=v`` pairs -> per-plugin params, each applied to the selected plugins that declare ``k``."""
    reg = registry()
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in items:
        if "=" not in item:
            raise SuiteError(f"bad --{kind}-param {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        target = [n for n in names if k in reg.get_class(kind, n).params]
        if not target:
            declared = {p for n in names for p in reg.get_class(kind, n).params}
            raise SuiteError(f"unknown {kind} parameter {k!r}{did_you_mean(k, declared)}: no selected {kind} "
                             f"declares it (they declare: {', '.join(sorted(declared)) or 'none'})")
        for n in target:
            out[n][k] = v
    return out


def parse_seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in split_names(value)]
    except ValueError:
        raise SuiteError(f"bad --seeds {value!r}: expected integers like 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise SuiteError(f"bad --seeds {value!r}: expected non-negative integers like 0,1,2")
    if any(s > SEED_MAX for s in seeds):
        raise SuiteError(f"bad --seeds {value!r}: a seed must be at most 2^63 - 1 = {SEED_MAX}")
    return seeds


def build_specs(tasks: list[str], methods: list[str], profile: str, seeds: list[int],
                task_params: dict[str, dict[str, Any]], method_params: dict[str, dict[str, Any]]) -> list[RunSpec]:
    """Every task x method x seed; validates names, parameters and the profile up front.

    Only ``smoke`` is a required profile: a task that does not declare ``profile`` is left out of the grid
    with a note on stderr; when no selected task declares it, that is an error (with a suggestion)."""
    have = [t for t in tasks if profile in registry().get_class("task", t).profiles]
    if not have:
        get_task = registry().create
        get_task("task", tasks[0], **task_params.get(tasks[0], {})).profile(profile)  # raises, with suggestions
    for t in tasks:
        if t not in have:
            declared = ", ".join(registry().get_class("task", t).profiles)
            print(f"note: task {t} declares no profile {profile!r} (has: {declared}); left out", file=sys.stderr)
    tasks = have
    specs = []
    for t in tasks:
        for m in methods:
            for s in seeds:
                spec = RunSpec(t, m, profile, s, tuple(sorted(task_params.get(t, {}).items())),
                               tuple(sorted(method_params.get(m, {}).items())))
                task, _ = spec.build()  # raises SuiteError on bad params
                task.profile(profile)
                specs.append(spec)
    return specs


# -- named grids ----------------------------------------------------------------------------------
# The papers' headline tables (UniLoss ECCV 2020 Tables 1-2 and Sec. 4.2.3; ReLoss ICLR 2022, CIFAR with
# ResNet-56), each on the paper profile: (task, task params, methods). Tasks whose data are absent are
# listed as skipped, with the reason, instead of becoming data-skip records.
PAPER_ROWS: tuple[tuple[str, tuple[tuple[str, Any], ...], tuple[str, ...]], ...] = (
    ("mnist-ap", (), ("ce", "uniloss", "reloss")),
    ("cifar10-acc", (("depth", 20),), ("ce", "uniloss")),
    ("cifar10-acc", (("depth", 56),), ("ce", "reloss")),
    ("cifar100-acc", (("depth", 20),), ("ce", "uniloss")),
    ("cifar100-acc", (("depth", 56),), ("ce", "reloss")),
    ("mpii-pckh", (), ("mse-heatmap", "uniloss")),
)
GRIDS = {"papers": {"rows": PAPER_ROWS, "profile": "paper", "seeds": (0, 1, 2)}}


def data_missing(task: str, data_root: Path) -> str | None:
    """Why ``task``'s data are absent under ``data_root`` (None when present), from file presence alone."""
    from ..datasets.cifar import LAYOUTS, hint
    from ..datasets.mpii import HINT, annotation_file, find_dir

    root = Path(data_root)
    if task in ("cifar10-acc", "cifar100-acc"):
        layout = LAYOUTS[task.split("-")[0]]
        files = (*layout.train_files, layout.test_file)
        if all((root / layout.folder / f).is_file() for f in files) or (root / layout.archive).is_file():
            return None
        return f"{layout.name} not found under {root}: " + hint(layout, root)
    if task == "mpii-pckh":
        folder = find_dir(root)
        if folder and all(annotation_file(folder, f) for f in ("mpii_train.json", "mpii_gt_val.mat")):
            return None
        return f"MPII training data not found under {root} (mpii_train.json, mpii_gt_val.mat); " + HINT.format(root=root)
    return None  # other tasks: their own loader says so at run time


def named_grid(name: str, data_root: Path, seeds: list[int] | None = None,
               profile: str | None = None) -> tuple[list[RunSpec], list[str]]:
    """The specs of a named grid (``papers``) and one line per row left out because its data are absent."""
    if name not in GRIDS:
        raise SuiteError(f"unknown --grid {name!r} (known: {', '.join(GRIDS)})")
    grid = GRIDS[name]
    prof = profile or grid["profile"]
    seeds = list(seeds if seeds is not None else grid["seeds"])
    specs: list[RunSpec] = []
    skipped: list[str] = []
    for task, params, methods in grid["rows"]:
        label = task + "".join(f" {k}={v}" for k, v in params)
        reason = data_missing(task, data_root)
        if reason:
            skipped.append(f"{label} ({', '.join(methods)}): skipped, {reason}")
            continue
        for method in methods:
            for seed in seeds:
                spec = RunSpec(task, method, prof, seed, params, ())
                spec.build()[0].profile(prof)  # bad names / params / profile: SuiteError now, not mid-grid
                specs.append(spec)
    return specs, skipped
