"""check_refactoring: does a task's refactoring reproduce its exact metric? (the contract behind UniLoss)

On random batches from ``Task.random_batch`` it compares ``g`` of the sign configuration of the real
comparisons with ``Task.metric`` of the same raw outputs, and checks that the ground-truth
configuration scores at least as well (the best value the batch allows). Any task, a third party's
included, can be checked: the contract tests run it for every discovered refactorable task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..plugins.contracts import Task
from ..plugins.errors import SuiteError


@dataclass
class RefactoringCheck:
    """The outcome of :func:`check_refactoring`: the worst |g(signs) - metric| and where it happened."""

    task: str
    n_batches: int
    worst_error: float = 0.0
    worst_batch: int | None = None  # index of the batch with the worst error
    undefined: int = 0  # batches whose exact metric is NaN (e.g. AP without a positive): not compared
    truth_violations: list[int] = field(default_factory=list)  # batches where g(truth) < g(signs)
    tolerance: float = 1e-6

    @property
    def ok(self) -> bool:
        return self.worst_error <= self.tolerance and not self.truth_violations and self.undefined < self.n_batches

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        text = (f"refactoring of {self.task}: {verdict}; worst |g(signs) - metric| = {self.worst_error:.3g} "
                f"over {self.n_batches - self.undefined} batches (tolerance {self.tolerance:g})")
        if self.worst_batch is not None and self.worst_error > self.tolerance:
            text += f", at batch {self.worst_batch}"
        if self.truth_violations:
            text += f"; g(truth) < g(signs) in batches {self.truth_violations[:5]}"
        if self.undefined:
            text += f"; {self.undefined} batches with an undefined metric skipped"
        return text


def check_refactoring(task: Task, n_batches: int = 32, sizes: tuple[int, ...] = (2, 5, 16, 33),
                      seed: int = 0, tolerance: float = 1e-6) -> RefactoringCheck:
    """Compare ``g(sign configuration)`` with the exact metric on ``n_batches`` random batches.

    Batches come from ``task.random_batch(n, generator)`` (float64 raw outputs, so ties have
    probability zero), with ``n`` cycling through ``sizes``. Raises SuiteError when the task declares no
    refactoring. Returns a :class:`RefactoringCheck`; ``.ok`` is the verdict, ``str()`` one line.
    """
    ref = task.refactoring()
    if ref is None:
        raise SuiteError(f"task {task.name!r} declares no refactoring (Task.refactoring() returned None)")
    report = RefactoringCheck(task.name, n_batches, tolerance=tolerance)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in range(n_batches):
            outputs, targets = task.random_batch(sizes[b % len(sizes)], gen)
            exact = float(task.metric(outputs, targets))
            if math.isnan(exact):
                report.undefined += 1
                continue
            cmp = ref.comparisons(outputs, targets)
            values = ref.g(torch.stack([ref.signs(cmp), ref.truth(cmp).expand_as(cmp.valid)]), cmp).double()
            got, best = float(values[0]), float(values[1])
            error = abs(got - exact) if math.isfinite(got) else math.inf
            if error > report.worst_error or report.worst_batch is None:
                report.worst_error, report.worst_batch = max(error, report.worst_error), b
            better = best >= got - tolerance if task.higher_is_better else best <= got + tolerance
            if not better:
                report.truth_violations.append(b)
    return report
