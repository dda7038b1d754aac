"""check_refactoring: passes on the built-in refactorings, reports the worst error on a wrong one."""

from __future__ import annotations

import pytest
import torch

from surrogate_bench import check_refactoring, get_task
from surrogate_bench.plugins.contracts import Task
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import registry


def test_a_refactoring_of_another_metric_fails_with_its_worst_error() -> None:
    """A task scored by top-2 accuracy that reuses the top-1 refactoring is caught."""
    Cifar10 = registry().get_class("task", "cifar10-acc")

    class Top2Wrong(Cifar10):
        name = ""
        inherits_refactoring = True  # claims the top-1 refactoring still fits (the check must catch it)

        def score(self, predictions, targets):
            top2 = predictions.topk(2, dim=-1).indices
            return float((top2 == targets[:, None]).any(-1).double().mean())

    report = check_refactoring(Top2Wrong())
    assert not report.ok and report.worst_error > 0.1 and report.worst_batch is not None
    assert "FAILED" in str(report) and f"batch {report.worst_batch}" in str(report)


def test_a_correct_refactoring_passes_and_says_so() -> None:
    report = check_refactoring(get_task("cifar10-acc"), n_batches=8)
    assert report.ok and report.worst_error < 1e-6 and "ok" in str(report)


def test_no_refactoring_or_no_random_batch_is_one_clear_error() -> None:
    class Plain(Task):
        name = ""
        output_kind = "boxes"

    with pytest.raises(SuiteError, match="declares no refactoring"):
        check_refactoring(Plain())

    class Boxes(Plain):
        def refactoring(self):
            return object()

    with pytest.raises(SuiteError, match="define random_batch"):
        check_refactoring(Boxes())


def _f1_task(inherits: bool):
    """A task deriving from mnist-ap that scores F1 at threshold 0 instead of AP."""
    from surrogate_bench.plugins.registry import registry

    parent = registry().get_class("task", "mnist-ap")

    class F1Task(parent):  # type: ignore[misc, valid-type]
        name = "mnist-f1-test"
        inherits_refactoring = inherits

        def score(self, predictions, targets):
            pred = predictions > 0
            tp = float((pred & (targets == 1)).sum())
            return 2 * tp / max(1.0, float(pred.sum() + (targets == 1).sum()))

    return F1Task()


def test_a_metric_changing_subclass_does_not_inherit_the_refactoring() -> None:
    from surrogate_bench import get_method

    task = _f1_task(inherits=False)
    assert task.refactoring() is None
    assert "declares none" in get_method("uniloss").supports(task)


def test_uniloss_checks_the_refactoring_before_training() -> None:
    from surrogate_bench import SuiteError, get_method
    from surrogate_bench.plugins.contracts import PrepareContext

    task = _f1_task(inherits=True)  # claims the parent's g still fits: it does not
    method = get_method("uniloss")
    assert method.supports(task) is None
    with pytest.raises(SuiteError, match="refactoring of mnist-f1-test: FAILED.*at batch"):
        method.prepare(task, PrepareContext(data=None, device=torch.device("cpu"), profile=None,  # type: ignore
                                            profile_name="smoke", seed=0, artifacts_dir=None))  # type: ignore
    ok = get_method("uniloss").prepare(get_task("mnist-ap"), None)  # type: ignore[arg-type]
    assert ok["refactoring_check"].startswith("refactoring of mnist-ap: ok")
