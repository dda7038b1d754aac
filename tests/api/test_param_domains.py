"""Parameters are checked against their declared domains before any data is read."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

from surrogate_bench.plugins.contracts import SEED_MAX, Domain
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import get_task, method_for, registry
from surrogate_bench.running import runner

pytestmark = pytest.mark.usefixtures("one_thread")


def one_line_exit_2(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in out + err

def _builtin(kind: str) -> list[str]:
    from surrogate_bench.paths import builtin_plugin_root

    dirs = tuple(str(builtin_plugin_root() / d) + "/" for d in ("tasks", "methods"))  # not test / ad-hoc plugins
    return [n for n in registry().names(kind) if registry().get_class(kind, n).source.startswith(dirs)]

@pytest.mark.parametrize("kind", ["task", "method"])
def test_every_builtin_parameter_declares_a_domain_and_refuses_non_finite(kind) -> None:
    for name in _builtin(kind):
        cls = registry().get_class(kind, name)
        assert set(cls.param_domains) == set(cls.params), name
        assert all(isinstance(d, Domain) for d in cls.param_domains.values())
        cls()  # the defaults lie inside their domains
        for key, default in cls.params.items():
            if isinstance(default, float):
                for bad in ("inf", "-inf", "nan"):
                    with pytest.raises(SuiteError, match=f"parameter '{key}'"):
                        cls(**{key: bad})

BAD_PARAMS = {
    "temperature inf": (["--task", "mnist-ap", "--method", "uniloss", "--method-param", "temperature=inf"],
                        "finite"),
    "gain inf": (["--task", "mnist-ap", "--method", "uniloss", "--method-param", "gain=inf"], "finite"),
    "label smoothing nan": (["--task", "mnist-ap", "--method", "ce", "--method-param", "label_smoothing=nan"],
                            "finite"),
    "label smoothing 2": (["--task", "mnist-ap", "--method", "ce", "--method-param", "label_smoothing=2"],
                          "[0, 1]"),
    "negative split": (["--task", "mnist-ap", "--method", "ce", "--task-param", "val_size=-1"], "val_size"),
    "too large split": (["--task", "cifar10-acc", "--method", "ce", "--task-param", "val_size=50000"], "val_size"),
    "heatmap 0": (["--task", "synth-pose-pckh", "--method", "mse-heatmap", "--task-param", "heatmap_size=0"],
                  "heatmap_size"),
    "width 0": (["--task", "mpii-pckh", "--method", "mse-heatmap", "--task-param", "width=0"], "width"),
    "joint 16": (["--task", "mpii-pckh", "--method", "mse-heatmap", "--task-param", "joints=9:16"], "item 16"),
    "huge seed": (["--task", "mnist-ap", "--method", "ce", "--seeds", str(2**64)], "2^63"),
    "top_k without refactoring": (["--task", "mnist-ap", "--method", "uniloss", "--method-param", "top_k=3"],
                                  "top_k"),
    "weights without digest": (["--task", "mnist-ap", "--method", "reloss", "--method-param", "weights=w.pt"],
                               "weights_sha256"),
    "bad digest": (["--task", "mnist-ap", "--method", "reloss", "--method-param", "weights=w.pt",
                    "--method-param", "weights_sha256=xyz"], "weights_sha256"),
}

@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_parameter_outside_its_domain_is_exit_2_before_data(case, capsys, tmp_path, monkeypatch) -> None:
    def no_data(*args, **kwargs):
        raise AssertionError("data was read")

    monkeypatch.setattr(runner, "load_task_data", no_data)
    extra, expected = BAD_PARAMS[case]
    results = tmp_path / "results"
    one_line_exit_2(*run_cli(capsys, "run", "--profile", "smoke", "--device", "cpu", "--no-progress",
                             "--results-dir", str(results), "--data-root", str(tmp_path), *extra), expected)
    assert not results.exists() or not list(results.rglob("*.json"))

def test_seed_limits() -> None:
    from surrogate_bench.launch.grid import parse_seeds

    assert parse_seeds(f"0,{SEED_MAX}") == [0, SEED_MAX]
    for bad in (str(SEED_MAX + 1), "-1"):
        with pytest.raises(SuiteError):
            parse_seeds(bad)
    with pytest.raises(SuiteError, match="seed"):
        get_task("synth-pose-pckh", seed=SEED_MAX + 1)

def test_top_k_is_fine_where_the_refactoring_has_it() -> None:
    assert method_for(get_task("cifar10-acc"), "uniloss", top_k="3").p["top_k"] == 3
    method_for(get_task("synth-pose-pckh"), "ce")  # unsupported pairs are skipped later, not refused here


def test_hinge_margin_is_positive_in_its_domain_and_nowhere_else() -> None:
    """One place decides: hinge's domain says margin > 0 (0 leaves no hinge), and no validate() re-checks it."""
    from surrogate_bench import get_method

    with pytest.raises(SuiteError, match="bad value 0.0 for method 'hinge' parameter 'margin'"):
        get_method("hinge", margin=0.0)
    assert get_method("hinge", margin=1e-3).p["margin"] == 1e-3
    hinge = registry().get_class("method", "hinge")
    assert "validate" not in vars(hinge) and hinge.param_domains["margin"].problem(0.0)
