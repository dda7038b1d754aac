"""UniLoss release options, each checked against a property of the released code (not a copy of it)."""

from __future__ import annotations

import graphlib

import pytest
import torch

from surrogate_bench import get_method, get_task
from surrogate_bench.uniloss import AnchorSpec, PCKhRefactoring, relax
from surrogate_bench.uniloss.ap import AveragePrecisionRefactoring, ReleaseAveragePrecisionRefactoring
from surrogate_bench.uniloss.interpolation import dense_idw
from surrogate_bench.uniloss.pckh import release_good_flips

RELEASE_AP = ReleaseAveragePrecisionRefactoring()


pytestmark = pytest.mark.usefixtures("one_thread")


# -- the release's backward --------------------------------------------------------------------
@pytest.mark.parametrize("trial", range(8))
def test_release_gradient_is_true_gradient_with_second_quotient_term_flipped(trial: int) -> None:
    """g~ = N / D (N = sum v/d, D = sum 1/d): true dg~ = N'/D - g~ D'/D; the release's is N'/D + g~ D'/D."""
    gen = torch.Generator().manual_seed(trial)
    l, t, scale = 40, 9, 0.4
    c0 = torch.randn(l, generator=gen, dtype=torch.float64) * 2
    valid = torch.rand(l, generator=gen) < 0.8
    anchors = torch.rand(t, l, generator=gen) < 0.5
    values = torch.rand(t, generator=gen, dtype=torch.float64)

    c = c0.clone().requires_grad_(True)
    dense_idw(c, valid, anchors, values, scale, release_sign=True).backward()

    x = c0.clone().requires_grad_(True)
    u = torch.tanh(x * scale) * valid
    a = torch.where(anchors, 1.0, -1.0).double() * valid
    d = ((a - u) ** 2).sum(-1).sqrt()
    n_sum, d_sum = (values / d).sum(), (1 / d).sum()
    (dn,) = torch.autograd.grad(n_sum, x, retain_graph=True)
    (dd,) = torch.autograd.grad(d_sum, x)
    g = float(n_sum.detach() / d_sum.detach())
    assert torch.allclose(c.grad, dn / d_sum + g * dd / d_sum, atol=1e-10)
    assert not torch.allclose(c.grad, dn / d_sum - g * dd / d_sum, atol=1e-6)  # the true gradient differs


def test_release_sign_changes_gradient_not_value() -> None:
    gen = torch.Generator().manual_seed(0)
    c0 = torch.randn(30, generator=gen, dtype=torch.float64)
    valid, anchors = torch.ones(30, dtype=torch.bool), torch.rand(7, 30, generator=gen) < 0.5
    values = torch.rand(7, generator=gen, dtype=torch.float64)
    vals = [dense_idw(c0, valid, anchors, values, 0.5, release_sign=s) for s in (False, True)]
    assert float(vals[0]) == pytest.approx(float(vals[1]), abs=1e-12)


# -- the release's AP g --------------------------------------------------------------------------
def _voc_ap(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Interpolated (all-point) AP of a ranking: mean over positives of the best precision at or below them."""
    order = scores.argsort(descending=True)
    hits = labels[order].double()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    envelope = precision.flip(0).cummax(0).values.flip(0)
    return float((envelope * hits).sum() / hits.sum()) if hits.sum() > 0 else 1.0


def _g(ref, binaries: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> float:
    cmp = ref.comparisons(scores, labels)
    return float(ref.g(binaries[None], cmp)[0])


@pytest.mark.parametrize("trial", range(40))
def test_release_ap_equals_interpolated_ap_on_consistent_configurations(trial: int) -> None:
    gen = torch.Generator().manual_seed(trial)
    n = 12
    scores = torch.randn(n, generator=gen, dtype=torch.float64)
    labels = (torch.rand(n, generator=gen) < 0.35).long()
    binaries = scores[:, None] > scores[None, :]
    assert _g(RELEASE_AP, binaries, scores, labels) == pytest.approx(_voc_ap(scores, labels), abs=1e-6)


def test_release_ap_scores_a_cyclic_configuration_zero() -> None:
    """p0 > n2 > p1 > n3 > p0: no ranking has these pairs; the suite's g still gives it an AP, the release 0."""
    labels = torch.tensor([1, 1, 0, 0])
    binaries = torch.zeros(4, 4, dtype=torch.bool)
    binaries[0, 2] = True  # p0 above n2
    binaries[1, 3] = True  # p1 above n3 (n2 above p1, n3 above p0: False entries)
    scores = torch.zeros(4, dtype=torch.float64)
    assert _g(RELEASE_AP, binaries, scores, labels) == 0.0
    assert _g(AveragePrecisionRefactoring(), binaries, scores, labels) > 0.0


@pytest.mark.parametrize("trial", range(30))
def test_release_ap_is_zero_exactly_when_the_pairs_have_a_cycle(trial: int) -> None:
    """Oracle: the standard library's topological sort of the (positive, negative) pair orientations."""
    gen = torch.Generator().manual_seed(100 + trial)
    n = 7
    labels = (torch.rand(n, generator=gen) < 0.5).long()
    binaries = torch.rand(n, n, generator=gen) < (0.5 if trial % 2 else 0.9)
    graph: dict[int, set[int]] = {i: set() for i in range(n)}
    for i in range(n):
        for j in range(n):
            if labels[i] == 1 and labels[j] == 0:
                (graph[j].add(i) if binaries[i, j] else graph[i].add(j))  # node -> nodes ranked above it
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    got = _g(RELEASE_AP, binaries, torch.zeros(n, dtype=torch.float64), labels)
    assert (got > 0) == acyclic


# -- the pose release's anchors -----------------------------------------------------------------
def test_release_good_flips_formula() -> None:
    n = torch.tensor([0, 1, 10, 20, 30, 64])
    assert release_good_flips(n).tolist() == [max(int(3.6 * k - 28), 2 * k) for k in n.tolist()]


def _pose_batch(gen: torch.Generator, n: int = 3, h: int = 9, w: int = 11):
    out = torch.randn(n, 1, h, w, generator=gen, dtype=torch.float64)
    t = torch.zeros(n, 1, 4, dtype=torch.float64)
    t[..., 0] = torch.rand(n, 1, generator=gen) * (w - 1)
    t[..., 1] = torch.rand(n, 1, generator=gen) * (h - 1)
    t[..., 2] = 1.0
    t[..., 3] = 1.5 + torch.rand(n, 1, generator=gen) * 4.0
    return out, t


@pytest.mark.parametrize("trial", range(6))
def test_pose_release_anchors_match_their_dense_configurations(trial: int) -> None:
    """Closed-form dots and values equal those of the anchors built densely; per map, each anchor is of a
    release kind: truth, truth with at most F wrong pairs, random, a whole row set right, a whole column
    set wrong, or the current configuration."""
    gen = torch.Generator().manual_seed(trial)
    out, t = _pose_batch(gen)
    ref = PCKhRefactoring(max_inside=20, release_anchors=True)
    cmp = ref.comparisons(out, t)
    u = relax(cmp, 0.7)
    torch.manual_seed(trial)
    record: list[torch.Tensor] = []
    spec = AnchorSpec(n_good=4, n_nearby=6, n_bad=3)
    dots, values = ref.anchors(cmp, u, spec, record=record)
    configs = record[0]  # (T, K, M, m)
    assert configs.shape[0] == 1 + 4 + 3 + 6 + 1
    signs = torch.where(configs, 1.0, -1.0).double() * cmp.valid
    assert torch.allclose(dots, (signs * u).flatten(1).sum(-1), atol=1e-9)
    assert torch.allclose(values, ref.g(configs, cmp).double(), atol=1e-9)
    current = ref.signs(cmp)
    f = release_good_flips(cmp.context["inside"].sum(-1))
    for k in range(cmp.shape[0]):
        kinds = {"truth": 0, "good": 0, "row": 0, "col": 0, "current": 0, "other": 0}
        for cfg in configs[:, k]:
            wrong = (cmp.valid[k] & ~cfg).sum()
            diff = (cfg ^ current[k]) & cmp.valid[k]
            if wrong == 0:
                kinds["truth"] += 1
            elif not diff.any():
                kinds["current"] += 1
            elif diff.any(1).sum() == 1 and (cfg | ~cmp.valid[k])[diff.any(1)].all():
                kinds["row"] += 1
            elif diff.any(0).sum() == 1 and not (cfg & cmp.valid[k])[:, diff.any(0)].any():
                kinds["col"] += 1
            elif wrong <= f[k]:
                kinds["good"] += 1
            else:
                kinds["other"] += 1  # random
        assert kinds["truth"] >= 1 and kinds["current"] >= 1
        assert kinds["good"] + kinds["truth"] >= 5 - 1  # a good anchor may coincide with another kind rarely
        assert kinds["other"] <= 3


# -- the methods -------------------------------------------------------------------------------
def test_uniloss_release_turns_every_release_option_on() -> None:
    method = get_method("uniloss-release")
    assert method.p["release_sigmoid"] and method.p["release_sign"] and method.p["release_ap"]
    assert method.p["pose_anchors"] == "release"
    ref = method.refactoring(get_task("mnist-ap"))
    assert isinstance(ref, ReleaseAveragePrecisionRefactoring)
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    assert torch.allclose(ref.decode(logits), torch.sigmoid(torch.tensor([2.0, -2.0])))  # sigmoid(log-odds)
    assert get_method("uniloss-release").refactoring(get_task("synth-pose-pckh")).release_anchors
    assert not get_method("uniloss").refactoring(get_task("synth-pose-pckh")).release_anchors
    assert type(get_method("uniloss").refactoring(get_task("mnist-ap"))) is AveragePrecisionRefactoring


def test_uniloss_release_loss_runs_on_every_refactoring_task() -> None:
    gen = torch.Generator().manual_seed(0)
    for task_name, outputs, targets in [
        ("cifar10-acc", torch.randn(16, 10, generator=gen), torch.randint(0, 10, (16,), generator=gen)),
        ("mnist-ap", torch.randn(16, 2, generator=gen), (torch.rand(16, generator=gen) < 0.4).long()),
    ]:
        x = outputs.clone().requires_grad_(True)
        loss = get_method("uniloss-release").make_loss(get_task(task_name))(x, targets)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_uniloss_rejects_unknown_pose_anchors() -> None:
    from surrogate_bench.plugins.errors import SuiteError

    with pytest.raises(SuiteError, match="pose_anchors"):
        get_method("uniloss", pose_anchors="paper")
