"""check_refactoring: passes on the built-in refactorings, reports the worst error on a wrong one."""

from __future__ import annotations

import pytest

from surrogate_bench import check_refactoring, get_task
from surrogate_bench.plugins.contracts import Task
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import registry


def test_a_refactoring_of_another_metric_fails_with_its_worst_error() -> None:
    """A task scored by top-2 accuracy that reuses the top-1 refactoring is caught."""
    Cifar10 = registry().get_class("task", "cifar10-acc")

    class Top2Wrong(Cifar10):
        name = ""

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
