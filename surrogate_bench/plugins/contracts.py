"""The plugin contracts: a Task (data, model, decoder, exact metric) and a Method (a loss for a task).

Plugins subclass :class:`Task` or :class:`Method`, set ``name`` and declare their tunable
``params`` (name -> default). The registry finds them by path or entry point; nothing here
does I/O at import time.
"""

from __future__ import annotations

import dataclasses
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


class Configurable:
    """Declared parameters with defaults; unknown names and uncoercible values are SuiteErrors."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
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
        self.p: dict[str, Any] = values
        self.validate()

    def validate(self) -> None:
        """Check parameter values; raise SuiteError with one clear line."""

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(sorted(self.p.items()))}


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "method_defaults" not in own and any(k in own for k in cls.METRIC_DEFINING):
            cls.method_defaults = {}

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

    def prepare(self, task: Task, ctx: PrepareContext) -> dict[str, Any] | None:
        """Build (or load from cache) whatever ``make_loss`` needs; returns an artifact reference."""
        return None

    def make_loss(self, task: Task) -> LossFn:
        raise NotImplementedError
