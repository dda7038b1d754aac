"""Contract tests generated from the registries: every task x method runs a smoke step on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from surrogate_bench import check_refactoring, get_method, get_task, list_methods, list_tasks
from surrogate_bench.plugins.contracts import Profile
from surrogate_bench.plugins.errors import DataUnavailable
from surrogate_bench.running.data_cache import load_task_data
from surrogate_bench.running.runner import RunSpec, run_one
from surrogate_bench.store.records import read_record

PAIRS = [(t, m) for t in list_tasks() for m in list_methods()]


@pytest.mark.parametrize("task_name", list_tasks())
def test_task_contract(task_name: str) -> None:
    """Required: a metric name, a ``smoke`` profile (quick and paper are optional), a model with weights."""
    task = get_task(task_name)
    assert task.metric_name and "smoke" in task.profiles, f"{task_name}: a task must declare a 'smoke' profile"
    for name, profile in task.profiles.items():
        assert isinstance(profile, Profile) and profile.epochs >= 1 and profile.batch_size >= 1, name
    assert task.output_kind and task.metric_range[0] < task.metric_range[1]
    model = task.build_model()
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("task_name", [t for t in list_tasks() if get_task(t).refactoring() is not None])
def test_refactoring_reproduces_the_metric(task_name: str) -> None:
    """g of the sign configuration equals the exact metric on random batches (any task, third-party included)."""
    report = check_refactoring(get_task(task_name))
    assert report.ok, str(report)


@pytest.mark.parametrize("task_name", list_tasks())
def test_tuned_method_defaults_are_known_parameters(task_name: str) -> None:
    """A task's tuned settings name installed methods and parameters those methods declare."""
    for method_name, params in get_task(task_name).method_defaults.items():
        if method_name in list_methods():
            get_method(method_name, **params)


@pytest.mark.parametrize("task_name,method_name", PAIRS)
def test_smoke_step(task_name: str, method_name: str, data_root_or_empty) -> None:
    """One training step: a finite 0-d loss with gradients, and a metric in range on the batch."""
    task, method = get_task(task_name), get_method(method_name)
    if method.supports(task):
        pytest.skip(method.supports(task))
    try:
        data = load_task_data(task, data_root_or_empty, download=False).limit(task.profile("smoke"))
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    if method.learned:
        pytest.skip("learned method: its prepare step is covered by the smoke run below and its own tests")
    torch.manual_seed(0)
    model = task.build_model()
    loss_fn = method.make_loss(task)
    n = min(task.profile("smoke").batch_size, len(data.train))
    x = task.inputs(data.train.x[:n], train=True, generator=torch.Generator().manual_seed(0))
    out = model(x)
    loss = loss_fn(out, data.train.y[:n])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    value = task.metric(out.detach(), data.train.y[:n])
    lo, hi = task.metric_range
    assert math.isnan(value) or lo <= value <= hi


@pytest.mark.parametrize("task_name,method_name", PAIRS)
def test_smoke_run_record(task_name: str, method_name: str, contract_options) -> None:
    """A whole smoke run writes one valid record: ok with an in-range metric, or skipped with a reason."""
    spec = RunSpec(task_name, method_name, "smoke", 0)
    rec = run_one(spec, contract_options)
    assert rec["status"] in {"ok", "skipped"}, rec.get("reason")
    key = spec.key_at(contract_options.data_root)
    assert rec["key"] == key and read_record(spec.record_path(contract_options.results_dir, key))["key"] == key
    if rec["status"] == "ok":
        lo, hi = get_task(task_name).metric_range
        assert lo <= rec["test_metric"] <= hi
        assert rec["history"] and rec["train_samples_per_s"] > 0
    else:
        assert rec["reason"]
