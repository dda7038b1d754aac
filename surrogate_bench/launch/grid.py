"""Expand CLI selections (names, patterns, ``--all``, ``k=v`` parameters) into run specs."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
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
    """``k=v`` pairs -> per-plugin params. A bare ``k=v`` applies to every selected plugin that declares ``k``
    (an error when none does); ``name.k=v`` (``focal.gamma=1``) only to the selected plugin ``name``."""
    reg = registry()
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in items:
        if "=" not in item:
            raise SuiteError(f"bad --{kind}-param {item!r}: expected NAME=VALUE or {kind.upper()}.NAME=VALUE")
        k, v = item.split("=", 1)
        k = k.strip()
        owner, dot, bare = k.rpartition(".")
        if dot and owner:
            if owner not in names:
                known = reg.names(kind)
                why = "is not selected" if owner in known else f"is not a {kind}{did_you_mean(owner, known)}"
                raise SuiteError(f"bad --{kind}-param {item!r}: {kind} {owner!r} {why} (selected: {', '.join(names)})")
            declared = reg.get_class(kind, owner).params
            if bare not in declared:
                raise SuiteError(f"unknown {kind} parameter {bare!r} of {owner}{did_you_mean(bare, declared)} "
                                 f"({owner} declares: {', '.join(sorted(declared)) or 'none'})")
            out[owner][bare] = v
            continue
        target = [n for n in names if k in reg.get_class(kind, n).params]
        if not target:
            declared = {p for n in names for p in reg.get_class(kind, n).params}
            raise SuiteError(f"unknown {kind} parameter {k!r}{did_you_mean(k, declared)}: no selected {kind} "
                             f"declares it (they declare: {', '.join(sorted(declared)) or 'none'})")
        for n in target:
            out[n][k] = v
    return out


def parse_profile_params(items: Iterable[str]) -> dict[str, str]:
    """``--profile-param k=v`` pairs (any settable Profile field: lr, epochs, batch_size, ...); the values are
    checked against each selected task's profile when the specs are built (``Profile.override``)."""
    from ..plugins.contracts import PROFILE_FIXED, Profile
    import dataclasses

    settable = sorted({f.name for f in dataclasses.fields(Profile)} - set(PROFILE_FIXED))
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise SuiteError(f"bad --profile-param {item!r}: expected NAME=VALUE (settable: {', '.join(settable)})")
        k, v = (part.strip() for part in item.split("=", 1))
        if k not in settable:
            raise SuiteError(f"unknown profile setting {k!r}{did_you_mean(k, settable)} (settable: "
                             f"{', '.join(settable)})")
        out[k] = v
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
                task_params: dict[str, dict[str, Any]], method_params: dict[str, dict[str, Any]],
                profile_params: dict[str, Any] | None = None) -> list[RunSpec]:
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
                               tuple(sorted(method_params.get(m, {}).items())),
                               profile_params=tuple(sorted((profile_params or {}).items())))
                task, _ = spec.build()  # raises SuiteError on bad params
                spec.profile_of(task)  # the profile, and its --profile-param values
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


DOWNLOAD_HINT = re.compile(r"[,;]?\s*or pass --download")


def without_download_hint(reason: str) -> str:
    """``reason`` without its "or pass --download" advice (for when --download was passed and failed)."""
    return DOWNLOAD_HINT.sub("", reason)


def one_line(text: str) -> str:
    """A reason on one line, whole: its lines joined (never cut at the first newline)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _mnist_missing(root: Path) -> str | None:
    from ..datasets.mnist import FILES, HINT

    folders = (root / "MNIST" / "raw", root / "mnist", root)
    have = {f: [n for n in FILES.values() if (f / f"{n}.gz").is_file() or (f / n).is_file()] for f in folders}
    best = max(folders, key=lambda f: len(have[f]))
    if len(have[best]) == len(FILES):
        return None
    if not have[best]:
        return f"MNIST not found under {root}: " + HINT.format(root=root)
    missing = [f"{n}.gz" for n in FILES.values() if n not in have[best]]
    return (f"MNIST incomplete in {best}: {', '.join(missing)} not found; " + HINT.format(root=root))


def _mpii_missing(root: Path) -> str | None:
    from ..datasets.mpii import HINT, annotation_file

    names = ("mpii_train.json", "mpii_val.json", "mpii_gt_val.mat")
    folders = [f for f in (root / "mpii", root / "mpii-mini", root) if f.is_dir()]
    have = {f: [n for n in names if annotation_file(f, n)] for f in folders}
    best = max(folders, key=lambda f: len(have[f]), default=None)
    if best is not None and len(have[best]) == len(names):
        return None  # images: the loader names the missing ones
    if best is None or not have[best]:
        return f"MPII not found under {root}; " + HINT.format(root=root)
    missing = [n for n in names if n not in have[best]]
    return f"MPII annotations incomplete in {best}: {', '.join(missing)} not found; " + HINT.format(root=root)


def data_missing(task: str, data_root: Path, built: Any = None) -> str | None:
    """Why ``task``'s data are absent under ``data_root`` (None when present), from file presence alone: the
    files that are missing (never those that are there), and where to put them. ``built`` (the task object)
    lets a plugin task answer through its declared ``data_files``."""
    from ..datasets.cifar import LAYOUTS, hint

    root = Path(data_root)
    if task in ("cifar10-acc", "cifar100-acc"):
        layout = LAYOUTS[task.split("-")[0]]
        files = (*layout.train_files, layout.test_file)
        if all((root / layout.folder / f).is_file() for f in files) or (root / layout.archive).is_file():
            return None
        present = [f for f in files if (root / layout.folder / f).is_file()]
        if present:
            missing = [f for f in files if f not in present]
            return (f"{layout.name} incomplete in {root / layout.folder}: {', '.join(missing)} not found; "
                    + hint(layout, root))
        return f"{layout.name} not found under {root}: " + hint(layout, root)
    if task == "mpii-pckh":
        return _mpii_missing(root)
    if task == "mnist-ap":
        return _mnist_missing(root)
    if built is not None:  # any other task: what its data_files say
        from ..store.provenance import declared_data_files

        try:
            files = declared_data_files(built, root)
        except Exception as exc:  # DataUnavailable (with the task's own hint) or a bug in data_files
            return one_line(str(exc)) or f"{task}: data not found under {root}"
        missing = [f for f in files or [] if not Path(f).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return f"{task}: data file {missing[0]} not found{more}" + (
                f"; {built.data_hint.replace('<data-root>', str(root))}" if built.data_hint else "")
    return None


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
        # (only the datasets too large to fetch on the fly; mnist-ap's missing data show in run's plan)
        reason = data_missing(task, data_root) if task in ("cifar10-acc", "cifar100-acc", "mpii-pckh") else None
        if reason:
            skipped.append(f"{label} ({', '.join(methods)}): skipped, {reason}")
            continue
        for method in methods:
            for seed in seeds:
                spec = RunSpec(task, method, prof, seed, params, ())
                spec.build()[0].profile(prof)  # bad names / params / profile: SuiteError now, not mid-grid
                specs.append(spec)
    return specs, skipped


# -- the plan of a run command ---------------------------------------------------------------------------
@dataclass
class Plan:
    """What a ``run`` command will do with its specs, decided before anything trains."""

    train: list[RunSpec] = field(default_factory=list)
    reuse: list[RunSpec] = field(default_factory=list)
    no_data: dict[str, tuple[str, list[RunSpec]]] = field(default_factory=dict)  # task label -> (reason, specs)
    unsupported: list[tuple[RunSpec, str]] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)

    def to_run(self, specs: list[RunSpec]) -> list[RunSpec]:
        """The specs to execute (train and reuse), in the grid's order."""
        keep = set(self.train) | set(self.reuse)
        return [s for s in specs if s in keep]

    def lines(self, verbose: bool = False) -> list[str]:
        """The plan as a few lines: counts, unsupported pairs (listed with ``verbose``)."""
        n_skip = sum(len(v[1]) for v in self.no_data.values())
        head = (f"plan: {len(self.train)} run(s) to train, {len(self.reuse)} to reuse, {n_skip} skipped (no data)")
        if self.unsupported:
            pairs = sorted({(s.task, s.method) for s, _ in self.unsupported})
            head += f"; {len(pairs)} unsupported task x method pair(s) left out"
            head += "" if verbose else " (--verbose lists them)"
        out = [head]
        if verbose:
            seen: set[tuple[str, str]] = set()
            for spec, why in self.unsupported:
                if (spec.task, spec.method) not in seen:
                    seen.add((spec.task, spec.method))
                    out.append(f"  unsupported: {spec.task} x {spec.method}: {one_line(why)}")
        return out

    def missing_lines(self) -> list[str]:
        """One line per task whose data are missing: how many runs, and the whole reason."""
        out = []
        for label, (reason, specs) in self.no_data.items():
            methods = ", ".join(dict.fromkeys(s.method for s in specs))
            out.append(f"{label} ({methods}; {len(specs)} run(s)): skipped: {reason}")
        return out


def _task_label(spec: RunSpec) -> str:
    return spec.task + "".join(f" {k}={v}" for k, v in spec.task_params)


def make_plan(specs: list[RunSpec], data_root: Path, results_dir: Path, *, force: bool = False,
              download: bool = False, log=None) -> Plan:
    """Sort ``specs`` into runs to train, finished runs to reuse, runs without data (one reason per task,
    after at most one download attempt per dataset when ``download``) and unsupported pairs.

    A plugin's ``supports`` that raises is left to the runner (it records the failure)."""
    from ..running.spec import Fingerprints
    from ..store.provenance import code_fingerprint, data_fingerprint
    from ..store.records import read_record

    plan = Plan()
    tasks: dict[str, Any] = {}  # task label -> built task
    data: dict[str, tuple[str | None, str]] = {}  # task label -> (reason or None, data fingerprint)
    tried: dict[str, str | None] = {}  # dataset (task name) -> download failure (None: downloaded)
    root = Path(data_root)
    for spec in specs:
        label = _task_label(spec)
        task, method = spec.build()
        tasks.setdefault(label, task)
        try:
            why = method.supports(task)
        except Exception:  # the runner records the plugin's fault as a failed run
            why = None
        if why:
            plan.unsupported.append((spec, str(why)))
            continue
        if label not in data:
            data[label] = _data_state(spec.task, tasks[label], root, download, tried, plan, log)
        reason, data_fp = data[label]
        if reason is not None:
            plan.no_data.setdefault(label, (reason, []))[1].append(spec)
            continue
        from ..running.progress import register_batch_size

        register_batch_size(f"{spec.task}/{spec.method}/s{spec.seed}", spec.profile_of(task).batch_size)
        if force:
            plan.train.append(spec)
            continue
        fp = Fingerprints(code_fingerprint(task, method), data_fp)
        key = spec.key(fp, (task, method))
        rec = read_record(spec.record_path(results_dir, key), key, None, spec.expected_fields())
        (plan.reuse if rec and rec["status"] == "ok" else plan.train).append(spec)
    return plan


def _data_state(name: str, task: Any, root: Path, download: bool, tried: dict[str, str | None], plan: Plan,
                log) -> tuple[str | None, str]:
    """(why the data are missing or None, the data fingerprint) of one task; downloads once per dataset."""
    from ..store.provenance import data_fingerprint

    def fingerprint() -> tuple[str | None, str]:
        reason = data_missing(name, root, task)
        if reason is None:
            try:
                return None, data_fingerprint(task, root)
            except Exception as exc:  # DataUnavailable (e.g. only an archive), an unreadable file
                reason = one_line(str(exc)) or f"{name}: data not readable under {root}"
        return reason, "unavailable"

    reason, fp = fingerprint()
    if reason is None or not download:
        return reason, fp
    if name not in tried:
        if log:
            log(f"{name}: data missing under {root}; downloading (once for this command)")
        try:
            task.load(root, download=True)
            tried[name] = None
            plan.downloaded.append(name)
        except Exception as exc:
            tried[name] = without_download_hint(one_line(f"{exc}")) or f"{type(exc).__name__}"
    if tried[name] is not None:
        return f"download failed or not possible: {tried[name]}", "unavailable"
    reason, fp = fingerprint()
    return (without_download_hint(reason) if reason else None), fp
