"""Leaderboard verdict cells from records with known numbers: the words, the intervals, bold only a corrected
better, the header (α, Holm, family, δ, protocol), skips and failures never forming a cell, protocol versions
never pooled, the sequential reconstruction from a decision record, the power table against statsmodels, the
paper section with both AP definitions, and the plots (written, stale ones removed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from surrogate_bench.reporting.families import families, prepare
from surrogate_bench.reporting.leaderboard import render, write
from surrogate_bench.reporting.paper import paper_section
from surrogate_bench.reporting.power import power_table
from surrogate_bench.stats.sequential import SequentialDesign, decide_at_look
from surrogate_bench.store.records import write_record

CE = [0.9980, 0.9984, 0.9979, 0.9983, 0.9981]
OFFSETS = {  # method -> per-seed difference from ce
    "good": [0.0300, 0.0310, 0.0290, 0.0305, 0.0295],   # clearly better
    "bad": [-0.0300, -0.0310, -0.0290, -0.0305, -0.0295],  # clearly worse
    "same": [0.0001, -0.0001, 0.0000, 0.0001, -0.0001],    # within ±δ = 0.001: equivalent
    "noisy": [0.0100, -0.0120, 0.0090, -0.0080, 0.0030],   # inconclusive
}


def flat(md: str) -> str:
    return " ".join(md.split())


def rec(root: Path, task: str, method: str, seed: int, value: float | None, *, profile: str = "quick",
        protocol: int | None = 2, status: str = "ok", sub: str = "", **kw) -> dict:
    r = {"kind": "run", "key": f"{profile}-{task}-{method}-{seed}-{protocol}{sub}", "status": status, "task": task,
         "method": method, "profile": profile, "seed": seed, "test_metric": value, "metric_name": "AP",
         "higher_is_better": True, "epochs": 3, "started": f"2026-01-01T00:00:{seed:02d}+0000",
         "environment": {"device_name": "cpu (test)", "threads": 1, "host": "h", "surrogate_bench": "0.2.0"},
         "provenance": {"git_commit": "abcdef0123456789", "git_dirty": False, "code_fingerprint": "c" * 64,
                        "data_fingerprint": "d" * 64}, **kw}
    if protocol is not None:
        r["protocol_version"] = protocol
    write_record(root / "runs" / profile / task / f"{method}-s{seed}-{r['key']}.json", r)
    return r


def grid(root: Path, task: str = "mnist-ap", methods=tuple(OFFSETS), seeds=range(5), **kw) -> None:
    for s in seeds:
        rec(root, task, "ce", s, CE[s], **kw)
        for m in methods:
            rec(root, task, m, s, CE[s] + OFFSETS[m][s], **kw)


def diffs(m: str, n: int = 5) -> np.ndarray:
    return np.array([(CE[s] + OFFSETS[m][s]) - CE[s] for s in range(n)])


def test_verdict_words_intervals_and_bold_only_corrected_better(tmp_path: Path) -> None:
    grid(tmp_path)
    md = flat(render(tmp_path))
    # the reference: paired t and TOST p-values, Holm over the family of 4 (statsmodels / scipy)
    names = list(OFFSETS)
    p_sup = [sps.ttest_1samp(diffs(m), 0).pvalue for m in names]
    p_eq = [ttost_paired(diffs(m), np.zeros(5), -0.001, 0.001)[0] for m in names]
    sup_adj, eq_adj = multipletests(p_sup, method="holm")[1], multipletests(p_eq, method="holm")[1]
    assert sup_adj[0] < 0.05 and sup_adj[1] < 0.05 and eq_adj[2] < 0.05 and sup_adj[3] > 0.05 and eq_adj[3] > 0.05
    d = diffs("good")
    lo, hi = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
    mean = CE_mean_good = np.mean([CE[s] + OFFSETS["good"][s] for s in range(5)])
    x = [CE[s] + OFFSETS["good"][s] for s in range(5)]
    half = sps.t.ppf(0.975, 4) * np.std(x, ddof=1) / math.sqrt(5)
    assert (f"| good | **{CE_mean_good:.4f} ± {half:.4f} (n=5)** | {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] (n=5) | "
            f"**better** (Holm p{'<0.001' if sup_adj[0] < 0.001 else f'={sup_adj[0]:.3f}'})") in md
    assert "| bad | " in md and "| worse (Holm p" in md and "**worse**" not in md
    assert f"| equivalent (TOST Holm p={eq_adj[2]:.3f})" in md or "| equivalent (TOST Holm p<0.001)" in md
    assert "| inconclusive (needs ~" in md
    assert md.count("| **better** (Holm") == 1  # only the corrected better is bold
    assert f"{mean:.4f}" in md
    # the header: α, Holm, the family with its baseline, δ per task, the protocol version, the folder read
    assert "α = 0.05" in md and "Holm" in md
    assert "`mnist-ap` (AP ↑): family of 4 compared with `ce` (`bad`, `good`, `noisy`, `same`); δ = 0.001 (task margin); fixed-n test at α = 0.05" in md
    assert "Records of `PROTOCOL_VERSION` 2" in md
    assert f"from the run records under `{tmp_path.as_posix()}/`" in md or "from the run records under `" in md


def test_margin_override_and_uncorrected_win_is_not_bold(tmp_path: Path) -> None:
    """A difference significant at 0.05 alone but not after Holm over a family of 4 is not better, not bold."""
    grid(tmp_path, methods=("noisy", "same", "bad"))
    barely = [0.0010, 0.0030, 0.0004, 0.0020, 0.0008]  # p = 0.038 alone, Holm x 3 > 0.05
    for s in range(5):
        rec(tmp_path, "mnist-ap", "barely", s, CE[s] + barely[s])
    p = sps.ttest_1samp(barely, 0).pvalue
    assert p < 0.05 and 3 * p > 0.05  # Holm: only `bad` has a smaller p, so barely's is multiplied by 3
    md = flat(render(tmp_path))
    assert "| barely | 0.9" in md and "**better**" not in md.split("See docs/verdicts.md.")[1]
    wide = flat(render(tmp_path, margin=0.01))
    assert "δ = 0.01 (--margin)" in wide


def test_skips_and_failures_never_form_or_split_a_cell(tmp_path: Path) -> None:
    grid(tmp_path, methods=("good",), seeds=range(3))
    # an old offline skip of ce with an 'unavailable' data fingerprint, and a failed seed of good
    rec(tmp_path, "mnist-ap", "ce", 0, None, status="skipped", skip="data", sub="-skip",
        reason="MNIST not found under /data:\nput the four files in /data/MNIST/raw",
        provenance={"code_fingerprint": "c" * 64, "data_fingerprint": "unavailable"})
    rec(tmp_path, "mnist-ap", "good", 3, None, status="failed", reason="non-finite loss at step 12", sub="-fail")
    rec(tmp_path, "mnist-ap", "nodata", 0, None, status="skipped", skip="data", reason="no files\nat all", sub="-s")
    md = flat(render(tmp_path))
    assert "ce@" not in md and "good@" not in md  # not split
    assert "| ce | " in md and "(n=3) | baseline" in md and "| good | **" in md and "(n=3)** |" in md
    assert "MNIST not found under /data: put the four files in /data/MNIST/raw" in md  # whole reason, one line
    assert "| failed | non-finite loss at step 12 |" in md
    assert "| nodata | skipped (data): no files at all |" in md  # missing data shows its reason
    assert "no data here" not in md


def test_protocol_versions_are_never_pooled(tmp_path: Path) -> None:
    grid(tmp_path, methods=("good",), seeds=range(3), protocol=2)
    for s in range(3):  # protocol 1 (no field) of the same cells, other values
        rec(tmp_path, "mnist-ap", "ce", s, 0.5 + s / 100, protocol=None)
        rec(tmp_path, "mnist-ap", "good", s, 0.6 + s / 100, protocol=None)
    fams = families(prepare(tmp_path))
    assert [(f.protocol, f.rows["ce"].n) for f in fams] == [(2, 3), (1, 3)]
    md = flat(render(tmp_path))
    assert "### Protocol version 2" in md and "### Protocol version 1" in md
    assert "Records of `PROTOCOL_VERSION` 2" in md and "Records of `PROTOCOL_VERSION` 1" in md
    assert "0.5100 ± " in md and "(n=3) | baseline" in md and "(n=6)" not in md


def test_dirty_tree_and_loss_nets_are_marked(tmp_path: Path) -> None:
    grid(tmp_path, methods=(), seeds=range(3))
    for s in range(3):
        rec(tmp_path, "mnist-ap", "reloss", s, CE[s], artifact={"loss_seed": s, "sha256": f"{s}" * 64, "path": "p"},
            provenance={"git_commit": "1234567890abcdef", "git_dirty": s == 1, "code_fingerprint": "e" * 64,
                        "data_fingerprint": "d" * 64})
        rec(tmp_path, "mnist-ap", "reloss-release", s, CE[s], artifact={"loss_seed": 0, "sha256": "f" * 64})
    md = flat(render(tmp_path))
    assert "each seed learned its own loss net (3 nets)" in md
    assert "all 3 seeds shared one loss net (sha256 ffffffffffff)" in md
    assert "(n=3) † |" in md and "† from a working tree with uncommitted changes" in md
    assert "`reloss` on `mnist-ap`: seed 1 at commit `1234567890`" in md


def test_sequential_reconstruction_from_a_decision_record(tmp_path: Path) -> None:
    grid(tmp_path, seeds=range(5))
    for s in (5, 6):  # two more seeds than the first look
        rec(tmp_path, "mnist-ap", "ce", s, 0.998)
        for m, off in (("good", 0.03), ("bad", -0.03), ("same", 0.0001 * (-1) ** s), ("noisy", 0.01 * (-1) ** s)):
            rec(tmp_path, "mnist-ap", m, s, 0.998 + off)
    design = {"n_min": 5, "n_max": 8, "step": 1, "alpha": 0.05}
    decision = {"kind": "decision", "profile": "quick", "task": "mnist-ap", "baseline": "ce", "delta": 0.001,
                "design": design, "methods": ["bad", "ce", "good", "noisy", "same"],
                "looks": [{"n": 5, "verdicts": {}}], "stopped": None}
    path = tmp_path / "decisions" / "quick" / "mnist-ap.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(decision))
    fam = families(prepare(tmp_path))[0]
    assert fam.design is not None and fam.looks == (5, 6, 7)
    # the same looks by hand: the first n common seeds, previous carried
    frame = prepare(tmp_path).runs
    by = {m: frame[frame["method"] == m].sort_values("seed")["test_metric"].to_numpy() for m in OFFSETS}
    base = frame[frame["method"] == "ce"].sort_values("seed")["test_metric"].to_numpy()
    d = SequentialDesign(n_min=5, n_max=8, step=1)
    prev = None
    for n in (5, 6, 7):
        prev, _ = decide_at_look(d, n, {m: list((by[m] - base)[:n]) for m in OFFSETS}, 0.001, True, prev)
    for m in OFFSETS:
        got = fam.rows[m].verdict
        assert (got.word, got.n, got.decided_at) == (prev[m].word, prev[m].n, prev[m].decided_at)
    assert fam.rows["good"].verdict.word == "better" and fam.rows["good"].verdict.decided_at == 5
    md = flat(render(tmp_path))
    assert "sequential (looks 5, 6, 7 of 5, 6, 7, 8; α = 0.05 spent O'Brien–Fleming-style" in md
    assert "**better** (Holm p" in md and "at n=5)" in md
    assert "decisions/quick/mnist-ap.json" in md


def test_power_table_against_statsmodels(tmp_path: Path) -> None:
    grid(tmp_path, methods=("noisy", "same"))
    table = power_table(tmp_path)
    level = 0.05 / 2  # family of 2, Bonferroni
    for m in ("noisy", "same"):
        d = diffs(m)
        sd = float(np.std(d, ddof=1))
        row = next(line for line in table.splitlines() if f"| {m} " in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "5" and float(cells[3]) == pytest.approx(sd, rel=1e-3)
        # statsmodels' power of the paired t-test at the MDD (in SD units) is 80%
        assert TTestPower().power(float(cells[4]) / sd, 5, level) == pytest.approx(0.8, abs=0.01)
        n = int(cells[5])  # the smallest n with 80% power to detect delta
        at_n, below = (TTestPower().power(0.001 / sd, k, level) for k in (n, n - 1))
        if not math.isnan(at_n):  # statsmodels is NaN at huge effects (scipy's nct.cdf; stats/power.py)
            assert at_n >= 0.8 - 1e-9 and (n == 2 or below < 0.8)
        assert int(cells[6]) >= 2
    assert "MDD" in table and "α/m" in table
    assert "#### Power (`quick`, protocol version 2)" in render(tmp_path)


def test_paper_section_with_both_ap_definitions(tmp_path: Path) -> None:
    exact = {"ce": [0.9986, 0.9988, 0.9987, 0.9989, 0.9985], "uniloss-release": [0.9984, 0.9987, 0.9986, 0.9988, 0.9985]}
    voc = {"ce": [0.9989, 0.9990, 0.9988, 0.9991, 0.9989], "uniloss-release": [0.9987, 0.9989, 0.9988, 0.9990, 0.9987]}
    for m in exact:
        for s in range(5):
            rec(tmp_path, "mnist-ap", m, s, exact[m][s], profile="paper", test_metrics_extra={"voc_ap": voc[m][s]},
                train_time_s=200.0 + s, wall_time_s=220.0)
    text = flat(paper_section(tmp_path))
    assert "quoted: `ce`" in text and "0.9989 AP (quoted)" in text and "0.9988 AP (quoted)" in text
    assert "VOC AP (interpolated, UniLoss release) mean ± 95% t" in text and "AP (exact) mean ± 95% t" in text
    v = np.array(voc["uniloss-release"])
    half = sps.t.ppf(0.975, 4) * v.std(ddof=1) / math.sqrt(5)
    assert f"{v.mean():.4f} ± {half:.4f} (n=5)" in text
    e = np.array(exact["uniloss-release"])
    assert f"{e.mean():.4f} ± " in text and "5 (0, 1, 2, 3, 4)" in text
    assert "verdict vs ce (δ = 0.001)" in text
    assert any(f"| {w}" in text for w in ("equivalent (", "inconclusive (", "worse (", "**better** ("))
    assert "| 202.0 | 220.0 |" in text  # mean train / wall seconds per run
    assert "The whole table: 10 runs, 2020 s of training (2200 s wall)" in text
    # the quoted rows sit in the VOC AP column: the third value column after row and seeds
    quoted = next(line for line in paper_section(tmp_path).splitlines() if "quoted: `ce`" in line)
    assert [c.strip() for c in quoted.strip("|").split("|")][2:4] == ["—", "0.9989 AP (quoted)"]
    assert "## Paper protocol: measured beside the papers" in render(tmp_path)
    assert "δ = 0.01" in paper_section(tmp_path, margin=0.01)


def test_paper_section_generic_for_cifar(tmp_path: Path) -> None:
    for s in range(2):
        rec(tmp_path, "cifar10-acc", "ce", s, 0.91 + s / 1000, profile="paper", metric_name="accuracy",
            train_time_s=700.0)
    text = flat(paper_section(tmp_path))
    assert "### Paper protocol: `cifar10-acc`" in text and "91.49 % (quoted)" in text and "| 700.0 | — |" in text


def test_plots_written_and_stale_removed(tmp_path: Path) -> None:
    history = [{"epoch": 1, "val_metric": 0.9}, {"epoch": 2, "val_metric": 0.95}]
    methods = [f"m{i:02d}" for i in range(23)]  # more than tab20's colours
    for s in range(3):
        rec(tmp_path, "mnist-ap", "ce", s, 0.99 + s / 1000, history=history, epochs=2)
        for i, m in enumerate(methods):
            rec(tmp_path, "mnist-ap", m, s, 0.99 + s / 1000 + i / 1e4 + (s % 2) / 1e5, history=history, epochs=2)
    plots = tmp_path / "out" / "plots"
    plots.mkdir(parents=True)
    stale = plots / "quick-gone-task-val.png"
    stale.write_bytes(b"old")
    mine = plots / "my-notes.png"  # not a file this renderer owns
    mine.write_bytes(b"keep")
    out = write(tmp_path, tmp_path / "out" / "LB.md")
    md = out.read_text()
    for name in ("quick-mnist-ap-verdicts.png", "quick-mnist-ap-val.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plots/{name}" in md
    assert not stale.exists() and mine.exists()
    # records gone: the renderer's figures go too, the user's file stays
    empty = tmp_path / "none"
    empty.mkdir()
    write(empty, tmp_path / "out" / "LB.md")
    assert not list(plots.glob("quick-*.png")) and mine.exists()
    from surrogate_bench.reporting.plots import styles

    st = styles(["ce", *methods])
    assert len(set(st.values())) == 24  # every method its own (colour, marker)


def test_profile_override_is_its_own_row(tmp_path: Path) -> None:
    grid(tmp_path, methods=("good",), seeds=range(3))
    for s in range(3):
        rec(tmp_path, "mnist-ap", "good", s, CE[s] + 0.001, profile_params={"lr": 0.01}, sub="-lr")
    fam = families(prepare(tmp_path))[0]
    assert sorted(fam.members) == ["good", "good{lr=0.01}"] and fam.rows["good"].n == 3
    assert "| good{lr=0.01} |" in flat(render(tmp_path))
