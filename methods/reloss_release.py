"""ReLoss as released (hunto/ReLoss) and described in the paper, beside the suite's ReLoss-style ``reloss``."""

from __future__ import annotations

from surrogate_bench.plugins.contracts import ANY, one_of
from surrogate_bench.plugins.siblings import sibling_plugin

ReLoss = sibling_plugin(__file__, "reloss").ReLoss


class ReLossRelease(ReLoss):
    """The release's loss: |MLP(p)| (1 -> 128 -> 128 -> 128 -> 1, ELU) of the target-class probability;
    heatmaps: per-joint sigmoid attention of the flattened squared-error map (H*W -> 8 -> 1).

    Loss training as released: labels = the model's argmax with a random tail of each batch replaced by
    uniformly random classes, validation on true labels, per-sample gradient penalty on every batch,
    diffsort steepness 5 on raw loss values, 256 batches per step, no gradient-scale matching. Differences
    from ``reloss`` and the release that remain are listed in docs/fidelity.md.
    """

    name = "reloss-release"
    params = {**ReLoss.params, "group": 256, "gp_norm": "sample", "gp_batches": 0, "steepness": 5.0,
              "cls_input": "prob", "match_scale": False, "standardize": False, "train_labels": "argmax",
              "val_labels": "true", "heatmap_net": "flat"}
    param_domains = {**ReLoss.param_domains, "train_labels": one_of("argmax", "shuffle"),
                     "val_labels": one_of("true", "shuffle", "argmax"), "heatmap_net": one_of("flat", "stats"),
                     "standardize": ANY}

    def identity(self, task, profile_name: str, run_seed: int = 0) -> dict:
        """The base identity plus this variant's name (its artifacts never collide with ``reloss``'s)."""
        return {**super().identity(task, profile_name, run_seed), "variant": self.name}
