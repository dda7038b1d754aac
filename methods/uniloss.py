"""UniLoss (ECCV 2020): minus the IDW interpolation of the task's refactored metric over sampled anchors."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import ANY, LossFn, Method, PrepareContext, Task, between, one_of
from surrogate_bench.losses.graphed import graphed_loss
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.uniloss import AnchorSpec, Refactoring, uniloss_value
from surrogate_bench.uniloss.check import check_refactoring
from surrogate_bench.uniloss.ap import AveragePrecisionRefactoring, ReleaseAveragePrecisionRefactoring


class UniLoss(Method):
    """Loss = -g~(2 sigmoid(c / temperature) - 1): anchors best + good + nearby + bad (16 each, as the paper).

    Release options (off by default; ``uniloss-release`` turns them all on; docs/fidelity.md):
    ``release_sigmoid``: a sigmoid on logits-task outputs before the comparisons (the released CIFAR / MNIST
    models end in one; AP compares sigmoid(log-odds)); ``release_sign``: the released backward's sign error
    in the quotient rule (dense refactorings); ``release_ap``: the released AP g (cyclic pairs 0,
    interpolated AP); ``pose_anchors=release``: the pose release's anchors (PCKh).
    """

    name = "uniloss"
    params = {"temperature": 1.0, "n_good": 16, "good_flips": 1, "n_nearby": 16, "nearby_flips": 1,
              "n_bad": 16, "top_k": 0, "gain": 1.0, "release_sigmoid": False, "release_sign": False,
              "release_ap": False, "pose_anchors": "suite"}
    param_domains = {"temperature": between(0, 1e6, low_open=True), "gain": between(0, 1e6, low_open=True),
                     **{k: between(0, 4096) for k in ("n_good", "good_flips", "n_nearby", "nearby_flips", "n_bad")},
                     "top_k": between(0, 100_000), "release_sigmoid": ANY, "release_sign": ANY, "release_ap": ANY,
                     "pose_anchors": one_of("suite", "release")}

    def check_task(self, task: Task) -> None:
        if self.p["top_k"] and not hasattr(task.refactoring(), "top_k"):
            raise SuiteError(f"uniloss: top_k applies to accuracy-style refactorings; task {task.name!r} has "
                             f"{type(task.refactoring()).__name__}, which has no top_k")

    def supports(self, task: Task) -> str | None:
        if task.refactoring() is None:
            return f"uniloss needs a refactoring of the metric; task {task.name} declares none"
        return None

    def prepare(self, task: Task, ctx: PrepareContext) -> dict[str, Any]:
        """Before any training: the task's refactoring must reproduce its exact metric (``check_refactoring``,
        milliseconds), so UniLoss never optimises a ``g`` of another metric (e.g. a parent task's)."""
        report = check_refactoring(task)
        if not report.ok:
            raise SuiteError(f"uniloss cannot train on {task.name}: {report}")
        return {"refactoring_check": str(report)}

    def refactoring(self, task: Task) -> Refactoring:
        ref = task.refactoring()
        if self.p["top_k"]:
            if not hasattr(ref, "top_k"):
                raise SuiteError(f"uniloss: top_k applies to accuracy-style refactorings, not {task.name}'s")
            ref = dataclasses.replace(ref, top_k=self.p["top_k"])
        if self.p["release_ap"] and isinstance(ref, AveragePrecisionRefactoring):
            ref = ReleaseAveragePrecisionRefactoring(decode=ref.decode)
        if self.p["release_sigmoid"] and task.output_kind == "logits" and isinstance(ref, AveragePrecisionRefactoring):
            decode = ref.decode
            ref = dataclasses.replace(ref, decode=lambda outputs: torch.sigmoid(decode(outputs)))
        if self.p["pose_anchors"] == "release" and hasattr(ref, "release_anchors"):
            ref = dataclasses.replace(ref, release_anchors=True)
        return ref

    def anchor_spec(self) -> AnchorSpec:
        return AnchorSpec(n_good=self.p["n_good"], good_flips=self.p["good_flips"], n_nearby=self.p["n_nearby"],
                          nearby_flips=self.p["nearby_flips"], n_bad=self.p["n_bad"])

    def make_loss(self, task: Task) -> LossFn:
        ref, spec, temperature = self.refactoring(task), self.anchor_spec(), float(self.p["temperature"])
        gain, release_sign = float(self.p["gain"]), bool(self.p["release_sign"])
        # AP gets its sigmoid on the decoded score (refactoring above); other logits tasks on every output
        squash = (self.p["release_sigmoid"] and task.output_kind == "logits"
                  and not isinstance(ref, AveragePrecisionRefactoring))

        def loss(outputs: Tensor, targets: Tensor) -> Tensor:
            # gain scales the gradient only: the loss value stays minus the metric estimate
            if squash:
                outputs = torch.sigmoid(outputs)
            return -uniloss_value(ref, outputs, targets, spec, temperature, gain, release_sign)

        # on CUDA the loss's ~100 small kernels cost more CPU launch time than the network step itself
        return graphed_loss(loss)
