"""Tasks' tuned method defaults: applied under explicit params, visible in keys, records and labels."""

from __future__ import annotations

from pathlib import Path

from surrogate_bench.reporting.labels import method_label
from surrogate_bench.reporting.leaderboard import tuned_settings
from surrogate_bench.plugins.registry import get_task, method_for
from surrogate_bench.running.runner import RunSpec


def test_task_defaults_apply_and_explicit_params_win() -> None:
    cifar = get_task("cifar10-acc")
    assert method_for(cifar, "uniloss").p["gain"] == 10.0
    assert method_for(cifar, "uniloss").p["temperature"] == 2.0
    assert method_for(cifar, "uniloss", gain=1.0).p["gain"] == 1.0
    assert method_for(get_task("mnist-ap"), "uniloss").p["gain"] == 1.0  # no tuned settings there
    assert method_for(get_task("cifar100-acc"), "uniloss").p["top_k"] == 20  # the paper's CIFAR-100 binaries
    assert method_for(cifar, "ce").p["label_smoothing"] == 0.05  # the baseline is tuned with the same budget
    assert method_for(get_task("mnist-ap"), "ce").p["label_smoothing"] == 0.0


def test_run_key_sees_effective_values() -> None:
    tuned = RunSpec("cifar10-acc", "uniloss")
    explicit = RunSpec("cifar10-acc", "uniloss", method_params=(("gain", 10.0), ("temperature", 2.0)))
    paper = RunSpec("cifar10-acc", "uniloss", method_params=(("gain", 1.0), ("temperature", 1.0)))
    fp = tuned.fingerprints(Path("."))
    assert tuned.key(fp) == explicit.key(fp) != paper.key(fp)
    assert tuned.build()[1].p["gain"] == 10.0


def test_labels_are_relative_to_the_task_defaults() -> None:
    tuned = method_for(get_task("cifar10-acc"), "uniloss").p
    assert method_label("uniloss", tuned, "cifar10-acc") == "uniloss"
    assert method_label("uniloss", {**tuned, "gain": 1.0}, "cifar10-acc") == "uniloss[gain=1.0]"
    assert method_label("uniloss", tuned, "mnist-ap") == "uniloss[gain=10.0,temperature=2.0]"
    line = tuned_settings(["cifar10-acc", "mnist-ap"])
    assert "`cifar10-acc` runs `uniloss` with gain=10.0, temperature=2.0" in line and "mnist-ap" not in line


def test_a_subclass_that_changes_the_metric_does_not_inherit_tuned_defaults() -> None:
    """CIFAR's UniLoss settings were tuned for top-1 accuracy: a top-2 subclass starts from the method's own."""
    from surrogate_bench.plugins.registry import registry

    Cifar10 = registry().get_class("task", "cifar10-acc")

    class Top2(Cifar10):
        name = ""  # not registered

        def score(self, predictions, targets):  # another metric
            return 0.0

    class Deeper(Cifar10):  # same metric: keeps the tuned settings
        name = ""
        params = {**Cifar10.params, "depth": 56}

    class Explicit(Top2):  # opting back in is one line
        method_defaults = Cifar10.method_defaults

    assert Cifar10.method_defaults["uniloss"]["gain"] == 10.0
    assert Top2.method_defaults == {} and Deeper.method_defaults == Cifar10.method_defaults
    assert Explicit.method_defaults == Cifar10.method_defaults


def test_integer_parameters_are_labelled_as_integers() -> None:
    """``--method-param queue=512`` parses to 512.0; the label says queue=512 (float parameters keep 1.0)."""
    assert method_label("smooth-ap", {"queue": 512.0, "temperature": 0.01}, "mnist-ap") == "smooth-ap[queue=512]"
    assert method_label("smooth-ap", {"queue": 0, "temperature": 1.0}, "mnist-ap") == "smooth-ap[temperature=1.0]"
