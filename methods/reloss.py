"""ReLoss (Huang et al., ICLR 2022): a loss network trained once per task to rank batches like the metric.

The artifact is keyed by the task's config, these parameters, the profile name and its budget; the seed
is *not* part of the key: one learned loss per task and settings is reused by every seed's run.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from surrogate_bench.plugins.contracts import (ANY, SEED_MAX, LossFn, Method, PrepareContext, Task,
                                                Domain, between, one_of)
from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.reloss.artifact import load_or_build, load_released
from surrogate_bench.reloss.collect import budget_for, collect
from surrogate_bench.reloss.lossnets import build_lossnet, loss_values
from surrogate_bench.reloss.spearman import SoftRanker
from surrogate_bench.reloss.train import TrainSettings, train_lossnet

ALGORITHM_VERSION = 3  # bump when collection or training changes what an artifact holds


class ReLoss(Method):
    """Learned rank-correlation surrogate: softmax-probability MLP (logits) or per-joint attention (heatmaps)."""

    name = "reloss"
    learned = True
    params = {
        "batch_size": 128,  # predictions per metric batch
        "group": 64,  # batches soft-ranked together per loss-training step
        "epochs": 0,  # loss-training epochs; 0 = by profile (paper: 10)
        "lr": 0.01,
        "weight_decay": 1e-3,
        "gp_weight": 10.0,
        "gp_norm": "batch",  # batch | sample
        "gp_batches": 8,  # batches per group the gradient penalty is computed on (0 = all)
        "sorting_network": "bitonic",
        "steepness": 10.0,
        "distribution": "logistic_phi",
        "art_lambda": 0.25,
        "hidden": 128,
        "cls_input": "logprob",  # logits tasks: logprob (monotone MLP of -log p) | prob (the authors' net; weights=)
        "match_scale": True,  # rescale the learned loss to the baseline's mean gradient norm (ranks unchanged)
        "sigma": 1.0,  # Gaussian targets of heatmap tasks
        "threads": 1,  # torch CPU threads while training the loss (its ops are tiny: 1 thread measured 5x faster)
        "loss_seed": -1,  # seeds collection and loss training; -1: the run's seed (each seed learns its own net)
        "weights": "",  # a local released state dict instead of training (needs weights_sha256)
        "weights_sha256": "",
    }

    param_domains = {
        "batch_size": between(2, 65536), "group": between(2, 4096), "epochs": between(0, 10_000),
        "lr": between(0, 10, low_open=True), "weight_decay": between(0, 1), "gp_weight": between(0, 1e6),
        "gp_norm": one_of("batch", "sample"), "gp_batches": between(0, 4096),
        "sorting_network": one_of("bitonic", "odd_even"), "steepness": between(0, 1e6, low_open=True),
        "distribution": one_of("logistic", "logistic_phi", "gaussian", "reciprocal", "cauchy", "optimal"),
        "art_lambda": between(0, 1), "hidden": between(1, 65536), "cls_input": one_of("logprob", "prob"),
        "match_scale": ANY, "sigma": between(0, 1000, low_open=True), "threads": between(0, 1024),
        "loss_seed": between(-1, SEED_MAX), "weights": ANY, "weights_sha256": Domain(pattern="([0-9a-fA-F]{64})?"),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._state: dict[str, Tensor] | None = None

    def validate(self) -> None:
        """The one check a domain cannot say: released weights need their pinned sha256."""
        if self.p["weights"] and not self.p["weights_sha256"]:
            raise SuiteError(f"reloss weights={self.p['weights']}: also pass weights_sha256=<the file's pinned "
                             "sha256> (released weights are only used when their digest is pinned)")
        if self.p["weights_sha256"] and not self.p["weights"]:
            raise SuiteError("reloss weights_sha256 is set but weights (the file) is not")

    def cls_input(self) -> str:
        """The classification net variant: released weights only fit the authors' probability network."""
        return "prob" if self.p["weights"] else self.p["cls_input"]

    def lossnet(self, task: Task) -> torch.nn.Module:
        """A fresh loss network for the task (variants' extra params, read with defaults, keep this
        method's artifact identity unchanged)."""
        size = getattr(task, "heatmap_size", None) if task.output_kind == "heatmaps" else None
        return build_lossnet(task.output_kind, self.p["hidden"], self.cls_input(),
                             self.p.get("heatmap_net", "stats"), size)

    def supports(self, task: Task) -> str | None:
        if task.output_kind not in {"logits", "heatmaps"}:
            return f"reloss has no loss network for {task.name} outputs ({task.output_kind})"
        if task.output_kind == "heatmaps" and not hasattr(task, "target_heatmaps"):
            return f"reloss needs {task.name}.target_heatmaps for heatmap targets"
        return None

    def loss_seed(self, run_seed: int) -> int:
        """The seed of the loss net's data collection and training: the run's own unless ``loss_seed`` pins
        one, so by default each seed learns its own net and a cell's interval includes that variance."""
        return run_seed if int(self.p["loss_seed"]) < 0 else int(self.p["loss_seed"])

    def identity(self, task: Task, profile_name: str, run_seed: int = 0) -> dict[str, Any]:
        """What determines the artifact: task config, method params, profile name, budget and loss seed."""
        params = {k: v for k, v in self.p.items() if k not in {"weights", "weights_sha256", "threads", "loss_seed"}}
        return {"algorithm": ALGORITHM_VERSION, "task": task.config(), "method": params,
                "profile": profile_name, "budget": budget_for(profile_name, self.p["epochs"]).as_dict(),
                "loss_seed": self.loss_seed(run_seed)}

    def prepare(self, task: Task, ctx: PrepareContext) -> dict[str, Any]:
        if self.p["weights"]:
            self._state = load_released(self.p["weights"], self.p["weights_sha256"])
            return {"weights": self.p["weights"], "sha256": self.p["weights_sha256"], "released": True}
        identity = self.identity(task, ctx.profile_name, ctx.seed)
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            state, meta = load_or_build(ctx.artifacts_dir, task.name, identity,
                                        lambda: self._build(task, ctx), ctx.log)
        self._state = state
        keep = ("path", "sha256", "reused", "val_spearman", "baseline", "baseline_spearman",
                "loss_train_time_s", "collect_time_s", "n_train_batches", "n_val_batches", "best_epoch",
                "grad_scale")
        return {**{k: meta[k] for k in keep if k in meta}, "loss_seed": identity["loss_seed"]}

    def _build(self, task: Task, ctx: PrepareContext) -> tuple[dict[str, Tensor], dict[str, Any]]:
        budget = budget_for(ctx.profile_name, self.p["epochs"])
        seed = self.loss_seed(ctx.seed)
        t0 = time.perf_counter()
        train, val = collect(task, ctx.data, ctx.profile, budget, self.p["batch_size"], seed, ctx.log,
                             self.p.get("train_labels", "shuffle"), self.p.get("val_labels", "shuffle"))
        collect_time = time.perf_counter() - t0
        ctx.log(f"reloss: {len(train)} training / {len(val)} held-out batches collected in {collect_time:.1f}s")
        torch.manual_seed(seed)
        net = self.lossnet(task)
        settings = TrainSettings(epochs=budget.epochs, group=self.p["group"], lr=self.p["lr"],
                                 weight_decay=self.p["weight_decay"], gp_weight=self.p["gp_weight"],
                                 gp_norm=self.p["gp_norm"], gp_batches=self.p["gp_batches"],
                                 match_scale=self.p["match_scale"], sigma=self.p["sigma"])
        ranker = SoftRanker(self.p["sorting_network"], self.p["steepness"], self.p["distribution"],
                            self.p["art_lambda"], standardize=bool(self.p.get("standardize", True)))
        gen = torch.Generator(device=train.outputs.device)
        gen.manual_seed(seed)
        threads = torch.get_num_threads()
        if self.p["threads"] > 0 and train.outputs.device.type == "cpu":
            torch.set_num_threads(int(self.p["threads"]))
        try:
            info = train_lossnet(net, task, train, val, settings, ranker, gen, ctx.log)
        finally:
            torch.set_num_threads(threads)
        return net.state_dict(), {**info, "collect_time_s": round(collect_time, 3)}

    def make_loss(self, task: Task) -> LossFn:
        if self._state is None:
            if not self.p["weights"]:
                raise SuiteError("reloss: make_loss() needs prepare() first (or the weights parameter)")
            self._state = load_released(self.p["weights"], self.p["weights_sha256"])
        net = self.lossnet(task)
        try:
            net.load_state_dict({"scale": net.scale, **self._state})  # released weights have no scale: 1
        except RuntimeError as exc:
            raise SuiteError(f"reloss weights do not fit the {task.output_kind} loss network: "
                             f"{str(exc).splitlines()[0]}") from None
        net.eval().requires_grad_(False)
        sigma = float(self.p["sigma"])
        moved: dict[str, torch.nn.Module] = {}

        def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
            key = str(outputs.device)
            if key not in moved:
                moved.clear()
                moved[key] = net.to(outputs.device)
            return loss_values(moved[key], task, outputs, targets, sigma)

        loss_fn.lossnet = net  # type: ignore[attr-defined]  # frozen; exposed for inspection
        return loss_fn
