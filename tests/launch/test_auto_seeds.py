"""``--seeds auto``: rounds of seeds up to the design's looks, a decision record per family, and a stop on
its own once every comparison is decided (or at the cap)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch


from surrogate_bench.launch.auto_seeds import families, row_label, run_until_decided
from surrogate_bench.launch.executors import LaunchConfig, load_plugins
from surrogate_bench.running.options import RunOptions
from surrogate_bench.running.spec import RunSpec

pytestmark = pytest.mark.usefixtures("one_thread")
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture(autouse=True)
def _tiny_tasks() -> None:
    load_plugins([PLUGINS / "tiny_ap_task.py", PLUGINS / "tiny_fast_task.py"])


def _opts(tmp_path: Path) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", data_root=tmp_path, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)


def test_identical_rows_are_decided_equivalent_at_the_first_look_and_the_run_stops(tmp_path: Path) -> None:
    """``ce`` with its default made explicit trains exactly like ``ce``: every paired difference is 0, so the
    first look (3 seeds) decides 'equivalent' and no further seed is run."""
    rows = [RunSpec("tiny-fast", "ce", "smoke"), RunSpec("tiny-fast", "ce", "smoke", method_params=(("label_smoothing", 0.0),))]
    lines: list[str] = []
    records = list(run_until_decided(lambda seeds: [replace(r, seed=s) for r in rows for s in seeds], _opts(tmp_path),
                                     LaunchConfig(), min_seeds=3, max_seeds=8, log=lines.append))
    assert sorted({r["seed"] for r in records}) == [0, 1, 2] and len(records) == 6
    decision = json.loads((tmp_path / "results" / "decisions" / "smoke" / "tiny-fast.json").read_text())
    assert decision["stopped"] == "decided" and decision["baseline"] == "ce"
    assert [look["n"] for look in decision["looks"]] == [3]
    assert decision["looks"][0]["verdicts"] == {"ce[label_smoothing=0.0]": "equivalent"}
    assert any("every comparison decided at 3 seeds" in line for line in lines)


def test_an_undecidable_family_stops_at_the_cap_and_a_rerun_reuses_every_run(tmp_path: Path) -> None:
    """A different loss on 128 test samples cannot be decided within 4 seeds at delta 1e-6: the procedure
    looks at 3 and 4 seeds and stops at the cap; the same command again trains nothing."""
    rows = [RunSpec("tiny-fast", "ce-ls", "smoke")]  # the baseline ce is added to the family
    make = lambda seeds: [replace(r, seed=s) for r in rows for s in seeds]  # noqa: E731
    records = list(run_until_decided(make, _opts(tmp_path), LaunchConfig(), min_seeds=3, max_seeds=4,
                                     margin=1e-6, log=lambda m: None))
    assert {(r["method"], r["seed"]) for r in records} == {(m, s) for m in ("ce", "ce-ls") for s in range(4)}
    decision = json.loads((tmp_path / "results" / "decisions" / "smoke" / "tiny-fast.json").read_text())
    assert [look["n"] for look in decision["looks"]] == [3, 4] and decision["delta"] == 1e-6
    assert decision["stopped"] in ("max-seeds", "decided")
    again = list(run_until_decided(make, _opts(tmp_path), LaunchConfig(), min_seeds=3, max_seeds=4, margin=1e-6,
                                   log=lambda m: None))
    assert again and all(r.get("reused") for r in again)


def test_families_add_the_baseline_and_label_rows_by_their_explicit_settings() -> None:
    specs = [RunSpec("tiny-fast", "focal", "smoke", method_params=(("gamma", 1.0),)),
             RunSpec("tiny-fast", "hinge", "smoke", profile_params=(("lr", 0.01),))]
    lines: list[str] = []
    (fam,) = families(specs, lines.append)
    assert fam.baseline == "ce" and set(fam.rows) == {"ce", "focal[gamma=1.0]", "hinge{lr=0.01}"}
    assert row_label(specs[1]) == "hinge{lr=0.01}" and "adding the baseline 'ce'" in lines[0]
