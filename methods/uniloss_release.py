"""UniLoss as released (princeton-vl/uniloss), not as the paper describes it: every release option on."""

from __future__ import annotations

from surrogate_bench.plugins.siblings import sibling_plugin

UniLoss = sibling_plugin(__file__, "uniloss").UniLoss


class UniLossRelease(UniLoss):
    """``uniloss`` with the released code's behaviour (docs/fidelity.md): sigmoid on logits-task outputs, the
    release's backward (quotient-rule sign error, dense refactorings; the pose release uses autograd), the
    release's AP g (cyclic = 0, interpolated AP) and the pose release's anchors (16 good with
    max(3.6 n - 28, 2 n) wrong pairs, 16 random, 8 + 8 whole rows / columns, current and truth)."""

    name = "uniloss-release"
    params = {**UniLoss.params, "release_sigmoid": True, "release_sign": True, "release_ap": True,
              "pose_anchors": "release"}
