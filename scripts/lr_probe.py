"""Diagnostic: does a loss train on a task at the profile's learning rate, or only at a smaller one?

Trains the task's model for ``--steps`` SGD steps (the profile's momentum, weight decay and batch size, random
batches, augmented inputs) at each learning rate and prints the running training accuracy and the spread of the
logits. Used for the fidelity notes on `hinge` and `soft-top1` on cifar10-acc (they collapse at lr 0.1).

    python scripts/lr_probe.py --task cifar10-acc --method hinge,ce --lrs 0.1,0.01 --data-root ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from surrogate_bench.plugins.registry import get_task, method_for
from surrogate_bench.running.data_cache import load_task_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="cifar10-acc")
    ap.add_argument("--method", default="hinge,ce")
    ap.add_argument("--lrs", default="0.1,0.01")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--data-root", default="../shared/data")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task(args.task)
    prof = task.profile(args.profile)
    data = load_task_data(task, Path(args.data_root), False).limit(prof)
    print(f"{'method':10s} {'lr':>6s} {'step':>5s} {'loss':>7s} {'train acc (last 50)':>20s} {'logit std':>10s}")
    for name in args.method.split(","):
        for lr in (float(v) for v in args.lrs.split(",")):
            torch.manual_seed(0)
            model = task.build_model()
            loss_fn = method_for(task, name).make_loss(task)
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=prof.momentum, weight_decay=prof.weight_decay,
                                  nesterov=prof.nesterov)
            gen = torch.Generator().manual_seed(0)
            hits: list[float] = []
            for step in range(1, args.steps + 1):
                idx = torch.randint(0, len(data.train), (prof.batch_size,), generator=gen)
                x, y = data.train.x[idx], data.train.y[idx]
                model.train()
                out = model(task.inputs(x, train=True))
                loss = loss_fn(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                hits.append(float((out.argmax(1) == y).float().mean()))
                if step % 50 == 0:
                    print(f"{name:10s} {lr:6g} {step:5d} {float(loss.detach()):7.3f} {sum(hits[-50:]) / 50:20.3f} "
                          f"{float(out.float().std(1).mean()):10.3f}", flush=True)


if __name__ == "__main__":
    main()
