"""The refactoring contract: a batch's metric as g(binaries), binaries = [comparisons > 0].

Any task (a third party's included) can declare one by returning a :class:`Refactoring` from
``Task.refactoring()``. Comparisons are *oriented*: a positive comparison is a correct one, so the
ground-truth configuration is "every valid binary true". Comparisons keep a fixed, documented
shape ``S`` (e.g. ``n x n`` pairs for AP) with a boolean ``valid`` mask instead of a shape that
depends on label counts, so that no step needs a host-device sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .interpolation import AnchorSpec


@dataclass
class Comparisons:
    """One batch's comparisons ``c`` (shape S, differentiable), their ``valid`` mask and what g needs."""

    c: Tensor
    valid: Tensor  # bool, shape S: padding entries are False and ignored everywhere
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> torch.Size:
        return self.c.shape


class Refactoring:
    """``comparisons(outputs, targets)`` -> c; ``truth(cmp)``; ``g(binaries (T x S), cmp)`` -> T metric values.

    Contract: ``g(cmp.c > 0)`` equals the exact metric of the batch (ties aside), and
    ``g(truth(cmp))`` is the best value the batch allows.
    """

    # False: anchors are a dense (T x l) bool matrix (fused fast path); True: ``anchors`` is overridden
    # with a structured form for refactorings with too many binaries for that matrix (PCKh).
    structured = False

    def comparisons(self, outputs: Tensor, targets: Tensor) -> Comparisons:
        raise NotImplementedError

    def truth(self, cmp: Comparisons) -> Tensor:
        """The ground-truth binary configuration: all valid binaries true (comparisons are oriented).
        Read-only: callers must not modify it in place."""
        return cmp.valid

    def signs(self, cmp: Comparisons) -> Tensor:
        """The current binary configuration of real scores: ``c > 0`` on valid entries."""
        return (cmp.c.detach() > 0) & cmp.valid

    def g(self, binaries: Tensor, cmp: Comparisons) -> Tensor:
        """Metric of each of T configurations at once: bool (T, *S) -> float (T,); invalid entries ignored."""
        raise NotImplementedError

    def anchors(self, cmp: Comparisons, u: Tensor, spec: "AnchorSpec") -> tuple[Tensor, Tensor]:
        """(a_t . u for T anchors (differentiable), g(a_t) (T,)); dense ±1 anchors by default.

        Refactorings with too many binaries for a dense T x l matrix (PCKh) override this with a
        structured form that gives the same quantities.
        """
        from .interpolation import dense_anchor_dots

        return dense_anchor_dots(self, cmp, u, spec)
