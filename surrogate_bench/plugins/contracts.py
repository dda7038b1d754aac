"""The plugin contracts: a Task (data, model, decoder, exact metric) and a Method (a loss for a task).

Plugins subclass :class:`Task` or :class:`Method`, set ``name`` and declare their tunable
``params`` (name -> default) and each parameter's :class:`Domain` in ``param_domains``. The registry
finds them by path or entry point; nothing here does I/O at import time.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from .errors import SuiteError

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets) -> 0-d differentiable tensor``."""


@dataclass(frozen=True)
class Profile:
    """A training budget and protocol: how long, how big the batches, which optimiser."""

    epochs: int
    batch_size: int
    optimizer: str = "sgd"  # sgd | rmsprop | adam
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    milestones: tuple[int, ...] = ()  # epochs at which lr *= gamma
    gamma: float = 0.1
    train_size: int | None = None  # use a prefix of the (shuffled) train split
    val_size: int | None = None
    test_size: int | None = None
    eval_batch_size: int = 1000
    amp: bool = True  # bf16 autocast on CUDA

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def override(self, **changes: Any) -> "Profile":
        """This profile with some settings replaced (``--profile-param lr=0.01``): names checked, values
        coerced to the setting's type and kept in range; a run's key holds the effective settings."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in fields or key in PROFILE_FIXED:
                from .suggest import did_you_mean

                allowed = sorted(set(fields) - PROFILE_FIXED)
                raise SuiteError(f"unknown profile setting {key!r}{did_you_mean(key, allowed)} (settable: "
                                 f"{', '.join(allowed)})")
            current = getattr(self, key)
            if key == "milestones":
                items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split("/") if v]
                value = tuple(int(float(v)) for v in items)
            elif current is None or isinstance(current, int) and not isinstance(current, bool):
                value = coerce(value, 0, f"profile setting {key!r}")
            elif isinstance(current, float):
                value = float(coerce(value, current, f"profile setting {key!r}"))
            else:
                value = coerce(value, current, f"profile setting {key!r}")
            problem = PROFILE_DOMAINS.get(key, ANY).problem(value)
            if problem is not None:
                raise SuiteError(f"bad value {value!r} for profile setting {key!r}: {problem}")
            out[key] = value
        return dataclasses.replace(self, **out)


@dataclass
class Split:
    """One split held in its storage form (e.g. uint8 images) and its targets; first dim is N."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int | None) -> "Split":
        return self if n is None or n >= len(self) else Split(self.x[:n], self.y[:n])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


@dataclass
class TaskData:
    """Train / validation / test splits of a task, plus anything the task wants to carry along."""

    train: Split
    val: Split
    test: Split
    extra: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "TaskData":
        return TaskData(self.train.to(device), self.val.to(device), self.test.to(device), self.extra)

    def limit(self, profile: Profile) -> "TaskData":
        return TaskData(
            self.train.head(profile.train_size),
            self.val.head(profile.val_size),
            self.test.head(profile.test_size),
            self.extra,
        )


SEED_MAX = 2**63 - 1  # seeds are signed 64-bit integers in torch and numpy's SeedSequence


@dataclass(frozen=True)
class Domain:
    """The values one parameter accepts, checked when its plugin is constructed (before any data is read).

    A number must lie in [``low``, ``high``] (``low_open`` / ``high_open`` exclude an end) and, unless
    ``finite`` is False, be finite; ``choices`` lists the only values allowed; a string must match
    ``pattern`` (a full-match regex). For a tuple or list parameter every item is checked. ``Domain()``
    accepts any value of the default's type (numbers still finite).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    finite: bool = True
    pattern: str | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside the domain (None when inside)."""
        if isinstance(value, (tuple, list)):
            return next((f"item {v!r}: {p}" for v in value if (p := self.problem(v)) is not None), None)
        if self.choices is not None and value not in self.choices:
            return "expected one of " + ", ".join(repr(c) for c in self.choices)
        if isinstance(value, str) and self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"expected a string matching {self.pattern}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.finite and not math.isfinite(value):
                return "expected a finite number"
            below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if below or above:
                return f"expected a value in {self.describe()}"
        return None

    def describe(self) -> str:
        lo = "-inf" if self.low is None else (f"{self.low:g}" if isinstance(self.low, float) else str(self.low))
        hi = "inf" if self.high is None else (f"{self.high:g}" if isinstance(self.high, float) else str(self.high))
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"


ANY = Domain()
POSITIVE = Domain(low=0, low_open=True)
NON_NEGATIVE = Domain(low=0)
UNIT = Domain(low=0, high=1)
SEED = Domain(low=0, high=SEED_MAX)
# What ``Profile.override`` accepts: the optimiser's settings and the budget, each in a sane range.
PROFILE_FIXED = frozenset({"optimizer", "amp"})
PROFILE_DOMAINS: dict[str, "Domain"] = {
    "epochs": Domain(low=1, high=100_000), "batch_size": Domain(low=1, high=1 << 20),
    "lr": Domain(low=0, low_open=True, high=100), "momentum": Domain(low=0, high=1, high_open=True),
    "weight_decay": Domain(low=0, high=1), "gamma": Domain(low=0, low_open=True, high=1),
    "milestones": Domain(low=1, high=100_000), "train_size": Domain(low=1), "val_size": Domain(low=0),
    "test_size": Domain(low=1), "eval_batch_size": Domain(low=1, high=1 << 20),
}


def between(low: float, high: float, **kw: Any) -> Domain:
    """Shorthand: a closed range [low, high] (``low_open`` / ``high_open`` to open an end)."""
    return Domain(low=low, high=high, **kw)


def one_of(*choices: Any) -> Domain:
    return Domain(choices=tuple(choices))


class Configurable:
    """Declared parameters with defaults and domains; unknown names, uncoercible values, values of another
    type and values outside their domain are SuiteErrors (one line), raised when the plugin is built."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    # name -> Domain for every parameter; one not listed accepts any finite value of its default's type
    param_domains: ClassVar[Mapping[str, Domain]] = {}
    source: ClassVar[str] = ""  # set by the registry: where the plugin came from

    def __init__(self, **params: Any) -> None:
        kind = "task" if isinstance(self, Task) else "method"
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            from .suggest import did_you_mean

            known = ", ".join(sorted(self.params)) or "none"
            raise SuiteError(f"unknown parameter {unknown[0]!r} for {kind} {self.name!r}"
                             f"{did_you_mean(unknown[0], self.params)} (known: {known})")
        values = dict(self.params)
        for key, value in params.items():
            values[key] = coerce(value, self.params[key], f"{kind} {self.name!r} parameter {key!r}")
        for key, value in values.items():
            what = f"{kind} {self.name!r} parameter {key!r}"
            if not _same_type(value, self.params[key]):
                raise SuiteError(f"bad value {value!r} for {what}: expected {type(self.params[key]).__name__}")
            problem = self.param_domains.get(key, ANY).problem(value)
            if problem is not None:
                raise SuiteError(f"bad value {value!r} for {what}: {problem}")
        self.p: dict[str, Any] = values
        self.validate()

    def validate(self) -> None:
        """Check parameter values; raise SuiteError with one clear line."""

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(sorted(self.p.items()))}


def _same_type(value: Any, default: Any) -> bool:
    """``value`` fits a parameter whose default is ``default`` (an int fits a float; a bool only a bool)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and all(_same_type(v, default[0]) for v in value) if default \
            else isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def coerce(value: Any, default: Any, what: str) -> Any:
    """Coerce a CLI string (or a Python value) to the type of the parameter's default."""
    if default is None or not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(value)
            return low in {"1", "true", "yes"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (tuple, list)):
            inner = default[0] if default else str
            return type(default)(coerce(v, inner, what) for v in value.split(":") if v)
    except ValueError:
        raise SuiteError(f"bad value {value!r} for {what}: expected {type(default).__name__}") from None
    return value


class Task(Configurable):
    """A benchmark task: real data, a model factory, a decoder and the exact metric.

    Storage tensors (``Split.x``) stay compact (uint8) and live on the training device;
    :meth:`inputs` turns a whole batch into network input (augmentation included) at once.
    """

    metric_name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    metric_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    # The equivalence margin (delta) of verdicts: a method within +-delta of the baseline (two one-sided
    # tests) is "equivalent". Defaults by metric: AP 0.001, accuracy 0.005, PCKh 0.01 (docs/verdicts.md).
    equivalence_margin: ClassVar[float] = 0.01
    output_kind: ClassVar[str] = "logits"  # "logits" (targets = class indices) | "heatmaps"
    num_classes: ClassVar[int] = 0
    profiles: ClassVar[Mapping[str, Profile]] = {}
    data_hint: ClassVar[str] = ""  # what to download and where to put it
    channels_last: ClassVar[bool] = False  # convnets: use channels_last memory format on CUDA
    # Tuned defaults a method gets on this task (method name -> params), e.g. UniLoss's gradient gain.
    # Explicit --method-param values win; records and run keys hold the effective values.
    method_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # Where each tuned default comes from: the ``tune`` command and its record (validation-selected only).
    method_defaults_source: ClassVar[Mapping[str, str]] = {}
    # What defines the metric: a subclass that overrides any of these without declaring its own
    # ``method_defaults`` does not inherit its parent's (they were tuned for the parent's metric).
    METRIC_DEFINING: ClassVar[tuple[str, ...]] = ("metric_name", "score", "metric", "decode", "refactoring")

    # A subclass that changes how the metric is computed (score, metric, decode, metric_name) but not
    # ``refactoring`` loses its parent's refactoring (UniLoss would optimise the parent's ``g``), unless it
    # sets ``inherits_refactoring = True`` to say the parent's still reproduces its metric.
    inherits_refactoring: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "method_defaults" not in own and any(k in own for k in cls.METRIC_DEFINING):
            cls.method_defaults = {}
        metric_changed = any(k in own for k in cls.METRIC_DEFINING if k != "refactoring")
        if metric_changed and "refactoring" not in own and not own.get("inherits_refactoring", False):
            cls.refactoring = Task.refactoring  # type: ignore[method-assign]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            from .suggest import did_you_mean

            raise SuiteError(f"task {self.name!r} has no profile {name!r}{did_you_mean(name, self.profiles)} "
                             f"(has: {', '.join(self.profiles)})")
        return self.profiles[name]

    def load(self, data_root: Path, *, download: bool = False) -> TaskData:
        """Read the real data under ``data_root``; raise DataUnavailable / DataCorrupt."""
        raise NotImplementedError

    def data_files(self, data_root: Path) -> list[Path] | None:
        """The files :meth:`load` reads under ``data_root``: their digest is part of every run's key.
        ``[]`` when the data is generated (no files); None (the default) when the task does not say.
        Raise DataUnavailable when the files are not there (the runner then lets ``load`` fetch them)."""
        return None

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def inputs(self, x: Tensor, *, train: bool, generator: torch.Generator | None = None) -> Tensor:
        """Storage batch -> float network input; batch-level augmentation when ``train``."""
        return x.float()

    def train_batch(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A training batch -> (network input, targets): geometric augmentation moves both (MPII warps);
        by default only :meth:`inputs` augments and targets pass through."""
        return self.inputs(x, train=True, generator=generator), y

    def decode(self, outputs: Tensor) -> Tensor:
        """Network outputs -> predictions the metric is computed on (scores, logits, coordinates)."""
        return outputs

    def score(self, predictions: Tensor, targets: Tensor) -> float:
        """The exact metric of decoded predictions."""
        raise NotImplementedError

    def metric(self, outputs: Tensor, targets: Tensor) -> float:
        """The exact, non-differentiable metric of raw outputs."""
        return self.score(self.decode(outputs), targets)

    def batch_metric(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The exact metric per batch for a stack of batches (B x n x ...) -> B values (for probes)."""
        return torch.tensor([self.metric(o, t) for o, t in zip(outputs, targets)])

    def extra_metrics(self, predictions: Tensor, targets: Tensor) -> dict[str, float]:
        """Secondary definitions of the metric recorded beside the verdict's one (e.g. a release's
        interpolated AP); never used for a verdict. Default: none."""
        return {}

    def refactoring(self) -> Any:
        """The UniLoss refactoring (comparisons, ground-truth binaries, g), or None if not refactorable."""
        return None

    def random_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Random raw ``(outputs, targets)`` of ``n`` samples in float64, for contract checks
        (:func:`surrogate_bench.check_refactoring`). Logits tasks get N(0, 1) logits and uniform class
        indices; a task with another output kind (or other targets) overrides this."""
        if self.output_kind != "logits" or self.num_classes < 2:
            raise SuiteError(f"task {self.name!r}: define random_batch(n, generator) -> (outputs, targets) "
                             f"(the default covers output_kind 'logits' with num_classes >= 2)")
        outputs = torch.randn(n, self.num_classes, generator=generator, dtype=torch.float64)
        return outputs, torch.randint(0, self.num_classes, (n,), generator=generator)


@dataclass
class PrepareContext:
    """What a learned method may use to build its artifact before training."""

    data: TaskData
    device: torch.device
    profile: Profile
    profile_name: str
    seed: int
    artifacts_dir: Path
    log: Callable[[str], None] = print


class Method(Configurable):
    """A loss method: turns a task into ``loss_fn(outputs, targets)``."""

    learned: ClassVar[bool] = False  # True when prepare() trains an artifact before make_loss()

    def supports(self, task: Task) -> str | None:
        """None when the pair is supported, else the reason it is skipped."""
        return None

    def check_task(self, task: Task) -> None:
        """Check parameters whose meaning depends on the task (a SuiteError line); called when the method is
        built for a task, before any data is read. Pairs that ``supports`` rejects are skipped, not checked."""

    def prepare(self, task: Task, ctx: PrepareContext) -> dict[str, Any] | None:
        """Build (or load from cache) whatever ``make_loss`` needs; returns an artifact reference."""
        return None

    def make_loss(self, task: Task) -> LossFn:
        raise NotImplementedError
