"""Command line: ``python -m surrogate_bench list | run | tune | probe | bench | leaderboard | export``.

User errors print one line and exit with code 2; failed runs exit with 1 after the grid finished.
Global options (``--plugin``, ``--no-progress``) work before or after the subcommand.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Sequence

from .plugins.errors import SuiteError
from .paths import DATA_ENV, DEFAULT_DATA_ROOT, DEFAULT_RESULTS_DIR, RESULTS_ENV

RESULTS_HELP = (f"where records go (else ${RESULTS_ENV}, else {DEFAULT_RESULTS_DIR}); the published set "
                "is regenerated only by naming it: --results-dir results")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too; keep it short)
        raise SuiteError(f"{self.prog}: {message}")


def _global_options(p: argparse.ArgumentParser, after: bool) -> None:
    """Options accepted before and after the subcommand; after it they land in ``*_after`` and are merged."""
    def kw(default, dest):
        return {"default": argparse.SUPPRESS, "dest": dest + "_after"} if after else {"default": default, "dest": dest}

    g = p.add_argument_group("global options")
    g.add_argument("--plugin", action="append", metavar="FILE.py",
                   help="load a task/method plugin file (repeatable)", **kw([], "plugin"))
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (automatic when stderr is not a terminal)", **kw(False, "no_progress"))


def _merge_global_options(args: argparse.Namespace) -> argparse.Namespace:
    args.plugin = list(args.plugin or []) + list(getattr(args, "plugin_after", []) or [])
    args.no_progress = bool(args.no_progress or getattr(args, "no_progress_after", False))
    return args


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="surrogate_bench", description="Compare surrogate losses for non-differentiable metrics.")
    _global_options(p, after=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser = _with_global_options(sub.add_parser)  # type: ignore[method-assign]

    sub.add_parser("list", help="list tasks and methods with their parameters, profiles and supported tasks")

    r = sub.add_parser("run", help="run a grid of task x method x seed")
    r.add_argument("--all", action="store_true", help="every task x every method")
    r.add_argument("--grid", default=None, metavar="NAME",
                   help="a named grid instead of --all/--task/--method: papers (the papers' headline tables, "
                        "paper profile, seeds 0,1,2; rows without data are listed as skipped)")
    r.add_argument("--task", help="comma list or glob patterns of task names")
    r.add_argument("--method", help="comma list or glob patterns of method names")
    r.add_argument("--profile", default=None, help="smoke | quick | paper (default quick; --grid: the grid's)")
    r.add_argument("--seeds", default=None, help="comma list of seeds (default 0; --grid: the grid's)")
    r.add_argument("--task-param", action="append", default=[], metavar="K=V")
    r.add_argument("--method-param", action="append", default=[], metavar="K=V")
    _common(r)
    r.add_argument("--force", action="store_true", help="rerun finished keys")
    r.add_argument("--download", action="store_true", help="download missing datasets (torchvision)")
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run N runs at once (local worker processes; submitit: jobs in flight)")
    r.add_argument("--launcher", default="local", choices=["local", "submitit", "submitit-local"],
                   help="local (this machine), submitit (one Slurm job per run), submitit-local (submitit, here)")
    r.add_argument("--slurm-partition", default=None, help="Slurm partition (--launcher submitit)")
    r.add_argument("--slurm-time", type=int, default=180, metavar="MIN", help="job time limit in minutes")
    r.add_argument("--gpus-per-job", type=int, default=None, metavar="G",
                   help="GPUs per submitit job (default: 1 when CUDA is wanted, else 0)")
    r.add_argument("--submitit-dir", type=Path, default=None, help="submitit logs (default RESULTS_DIR/submitit)")
    r.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SEC",
                   help="also checkpoint inside an epoch every SEC seconds (default 60; epochs always end with one)")
    r.add_argument("--no-probe", action="store_true", help="with --all: skip the Spearman probes")
    r.add_argument("--step-capture", default=None, choices=["auto", "graph", "compile", "eager"],
                   help="training step: auto (CUDA graph of the whole step on CUDA, eager on CPU), graph, "
                        "compile (torch.compile) or eager; not part of a run's key")
    r.add_argument("--max-minutes", type=float, default=None, metavar="MIN",
                   help="checkpoint and stop cleanly (exit code 3) after MIN minutes; the same command resumes")

    tu = sub.add_parser("tune", help="choose a method's parameters on a task by the validation metric (never test)")
    tu.add_argument("--task", required=True, help="one task name")
    tu.add_argument("--method", required=True, help="one method name")
    tu.add_argument("--grid", action="append", default=[], metavar="K=V1,V2",
                    help="values to try for one method parameter (repeatable; the grid is their product)")
    tu.add_argument("--budget", type=int, required=True, metavar="N",
                    help="grid points tried; give every method the same N (a larger grid is subsampled, seed 0)")
    tu.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    tu.add_argument("--seeds", default="0", help="comma list of seeds per grid point (default 0)")
    tu.add_argument("--task-param", action="append", default=[], metavar="K=V")
    _common(tu)
    tu.add_argument("--force", action="store_true", help="rerun finished trials")
    tu.add_argument("--download", action="store_true", help="download missing datasets (torchvision)")

    pr = sub.add_parser("probe", help="Spearman probe of batch loss vs batch metric on a shared pool")
    pr.add_argument("--task", required=True, help="comma list or glob patterns of task names")
    pr.add_argument("--method", required=True, help="comma list or glob patterns of method names")
    pr.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    _common(pr)
    pr.add_argument("--force", action="store_true", help="recompute finished probes")
    pr.add_argument("--download", action="store_true", help="download missing datasets (torchvision)")
    pr.add_argument("--descent", action="store_true",
                    help="also run the descent probe (matched-norm gradient steps from the pool's states)")

    bn = sub.add_parser("bench", help="time each method's training step and loss+backward per task")
    bn.add_argument("--task", default="*", help="comma list or glob patterns of task names (default all)")
    bn.add_argument("--method", default="ce,uniloss", help="comma list or glob patterns (default ce,uniloss)")
    bn.add_argument("--profile", default="paper", help="profile whose batch size and optimiser are used")
    bn.add_argument("--steps", type=int, default=50, help="timed steps per method (after 10 warm-up)")
    bn.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    bn.add_argument("--data-root", default=None)
    bn.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    bn.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (default: torch's)")
    bn.add_argument("--step-capture", default=None, choices=["auto", "graph", "compile", "eager"],
                    help="training step implementation (default auto: CUDA graph on CUDA, eager on CPU)")
    bn.add_argument("--jobs", default=None, metavar="N[,N...]",
                    help="instead of the per-method table: aggregate samples/s of N concurrent training "
                         "processes on the device, for each N (e.g. 1,2,4,8)")

    lb = sub.add_parser("leaderboard", help="write the markdown leaderboard from the records")
    lb.add_argument("--results-dir", type=Path, default=None, help=RESULTS_HELP)
    lb.add_argument("--out", type=Path, default=None, help="default: RESULTS_DIR/LEADERBOARD.md")
    lb.add_argument("--include-smoke", action="store_true",
                    help="also show the smoke profile (plumbing only; left out of published leaderboards)")

    ex = sub.add_parser("export", help="write every record as one table row (CSV or Parquet) for your own analysis")
    ex.add_argument("--results-dir", type=Path, default=None, help=RESULTS_HELP)
    ex.add_argument("--format", choices=["csv", "parquet"], default=None, help="default: from --out's suffix")
    ex.add_argument("--out", type=Path, required=True, help="file to write (e.g. runs.parquet); '-' = CSV on stdout")
    ex.add_argument("--kind", choices=["run", "probe", "tune"], default="run", help="run records (default), probes or tunes")
    ex.add_argument("--profile", default=None, help="comma list of profiles to keep (default: all)")
    return p


def _with_global_options(add_parser):
    """Wrap ``add_parser`` so that every subcommand also accepts the global options."""
    def add(name: str, **kwargs):
        sp = add_parser(name, **kwargs)
        _global_options(sp, after=True)
        return sp
    return add


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data-root", default=None,
                    help=f"dataset root (else ${DATA_ENV}, else {DEFAULT_DATA_ROOT})")
    sp.add_argument("--results-dir", type=Path, default=None, help=RESULTS_HELP)
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def cmd_list(args: argparse.Namespace) -> int:
    from .plugins.catalog import lines
    from .plugins.registry import registry

    for line in lines(registry()):
        print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .results import export, for_export, load
    from .launch.grid import split_names

    if not args.results_dir.is_dir():
        raise SuiteError(f"results directory {args.results_dir} does not exist")
    profiles = split_names(args.profile)
    if str(args.out) == "-":
        frame = load(args.results_dir, args.kind)
        frame = frame[frame["profile"].isin(profiles)] if profiles else frame
        sys.stdout.write(for_export(frame).to_csv(index=False))
        return 0
    out = export(args.results_dir, args.out, args.format, args.kind, profiles)
    print(f"wrote {out}")
    return 0


def run_options(args: argparse.Namespace, progress: bool):
    """RunOptions from the common flags; a missing data root or unwritable results dir is one line."""
    from .running.environment import resolve_device
    from .paths import data_root
    from .running.options import RunOptions
    from .store.records import check_writable

    root = data_root(args.data_root)
    if args.data_root and not root.is_dir():
        raise SuiteError(f"--data-root {root} does not exist or is not a directory")
    from .launch.executors import log_stderr

    # submitit workers resolve --device on their node; a local run needs it here
    device = resolve_device(args.device if getattr(args, "launcher", "local") == "local" else "cpu")
    check_writable(args.results_dir)
    every = getattr(args, "checkpoint_every", 60.0)
    if not every >= 0:  # also NaN
        raise SuiteError(f"bad --checkpoint-every {every}: expected seconds >= 0")
    return RunOptions(results_dir=args.results_dir, data_root=root, device=device, force=args.force,
                      download=args.download, progress=progress, log=log_stderr, checkpoint_every_s=every)


def cmd_run(args: argparse.Namespace) -> int:
    from .launch.grid import build_specs, parse_params, parse_seeds, select
    from .launch.executors import LaunchConfig, execute
    from .running.options import DeadlineReached

    if args.grid:
        if args.all or args.task or args.method or args.task_param or args.method_param:
            raise SuiteError("run: --grid is a selection of its own; drop --all/--task/--method/--*-param")
        from .paths import data_root
        from .launch.grid import named_grid

        tasks, methods = [], []
        specs, skipped = named_grid(args.grid, data_root(args.data_root),
                                    parse_seeds(args.seeds) if args.seeds is not None else None, args.profile)
    else:
        skipped = []
        if not args.all and not (args.task and args.method):
            raise SuiteError("run: pass --all, or both --task and --method (or --grid NAME)")
        tasks = select("task", args.task, args.all)
        methods = select("method", args.method, args.all)
        specs = build_specs(tasks, methods, args.profile or "quick", parse_seeds(args.seeds or "0"),
                            parse_params(args.task_param, "task", tasks),
                            parse_params(args.method_param, "method", methods))
    launch = LaunchConfig(launcher=args.launcher, jobs=args.jobs, device=args.device, plugins=tuple(args.plugin),
                          slurm_partition=args.slurm_partition, slurm_time_min=args.slurm_time,
                          gpus_per_job=args.gpus_per_job, submitit_dir=args.submitit_dir)
    launch.validate()
    from .running.progress import GridBar, wanted

    opts = run_options(args, progress=wanted(args.no_progress))
    opts = _run_limits(args, opts)
    for line in skipped:  # --grid rows whose data are absent
        print(line, file=sys.stderr, flush=True)
    failed = 0
    bar = GridBar(len(specs), opts.progress)
    try:
        with contextlib.closing(execute(specs, opts, launch)) as records:  # closing: workers stop with us
            for rec in records:
                failed += rec["status"] == "failed"
                bar.run_done(summary_line(rec))
    except DeadlineReached as exc:
        bar.close()
        print(f"stopped at --max-minutes {args.max_minutes:g}: {exc}; run the same command again to resume",
              file=sys.stderr, flush=True)
        return 3
    bar.close()
    if args.all and not args.no_probe:
        failed += run_probes([t for t in tasks if any(s.task == t for s in specs)], methods,
                             args.profile or "quick", opts)
    return 1 if failed else 0


def _run_limits(args: argparse.Namespace, opts):
    """--step-capture and --max-minutes into the run options (a bad value is one line)."""
    import time
    from dataclasses import replace

    from .running.step_capture import resolve_mode

    resolve_mode(args.step_capture, opts.device)  # validates (also $SURROGATE_BENCH_STEP_CAPTURE)
    deadline = None
    if args.max_minutes is not None:
        if not args.max_minutes > 0:  # also NaN
            raise SuiteError(f"bad --max-minutes {args.max_minutes}: expected minutes > 0")
        deadline = time.time() + 60.0 * args.max_minutes
    return replace(opts, step_capture=args.step_capture, deadline=deadline)


def run_probes(tasks: list[str], methods: list[str], profile: str, opts, descent: bool = False) -> int:
    """Probe every task x method on the task's shared pool (with ``descent``, the descent probe too);
    returns the number of failed probes."""
    from .probes.probe import run_probe

    failed = 0
    for task in tasks:
        for method in methods:
            rec = run_probe(task, method, profile, opts)
            failed += rec["status"] == "failed"
            print(probe_line(rec), flush=True)
    if descent:
        from .probes.descent import descent_line, run_descent

        for task in tasks:
            for method in methods:
                rec = run_descent(task, method, profile, opts)
                failed += rec["status"] == "failed"
                print(descent_line(rec), flush=True)
    return failed


def probe_line(rec: dict) -> str:
    head = f"probe {rec['task']:16s} {rec['method']:12s} {rec['profile']:6s}: "
    if rec["status"] == "ok":
        return head + (f"spearman {_num(rec.get('spearman'), '+.3f')} [{_num(rec.get('spearman_ci_low'), '+.3f')}, "
                       f"{_num(rec.get('spearman_ci_high'), '+.3f')}] within states "
                       f"{_num(rec.get('spearman_within'), '+.3f')} kendall {_num(rec.get('kendall'), '+.3f')} "
                       f"over {rec.get('n_batches')} batches")
    return head + f"{rec['status']}: {rec.get('reason', '')}".splitlines()[0]


def cmd_tune(args: argparse.Namespace) -> int:
    from .launch.grid import parse_params, parse_seeds, select
    from .running.progress import wanted
    from .launch.tune import parse_grid, tune

    task, method = select("task", args.task, False), select("method", args.method, False)
    if len(task) != 1 or len(method) != 1:
        raise SuiteError("tune: pass exactly one --task and one --method")
    grid = parse_grid(args.grid, method[0])
    task_params = parse_params(args.task_param, "task", task)[task[0]]
    seeds = parse_seeds(args.seeds)
    opts = run_options(args, progress=wanted(args.no_progress))
    command = " ".join(["python -m surrogate_bench tune", "--task", task[0], "--method", method[0],
                        *(f"--grid {k}={','.join(map(str, v))}" for k, v in grid.items()),
                        f"--budget {args.budget}", f"--profile {args.profile}", f"--seeds {args.seeds}",
                        *(f"--task-param {p}" for p in args.task_param)])
    rec = tune(task[0], method[0], grid, args.profile, seeds, args.budget, opts, task_params, command,
               on_trial=lambda r: print(_trial_label(r, grid) + summary_line(r), flush=True))
    if rec["status"] != "ok":
        print(f"tune {task[0]} {method[0]}: failed: {rec['reason']} ({rec['path']})")
        return 1
    choice = ", ".join(f"{k}={v}" for k, v in rec["choice"].items())
    print(f"tune {task[0]} {method[0]} {args.profile}: {choice} (mean final val {rec['metric_name']} "
          f"{rec['choice_val_metric']:.4f} over seeds {args.seeds}; {len(rec['trials'])} trials) -> {rec['path']}")
    return 0


def _trial_label(rec: dict, grid: dict) -> str:
    params = rec.get("method_params") or {}
    return "trial [" + ",".join(f"{k}={params.get(k)}" for k in sorted(grid)) + "] "


def cmd_probe(args: argparse.Namespace) -> int:
    from .launch.grid import select

    tasks, methods = select("task", args.task, False), select("method", args.method, False)
    for t in tasks:
        from .plugins.registry import get_task

        get_task(t).profile(args.profile)
    return 1 if run_probes(tasks, methods, args.profile, run_options(args, progress=False), args.descent) else 0


def summary_line(rec: dict) -> str:
    from .plugins.catalog import PLUMBING_PROFILES

    head = f"{rec['task']:16s} {rec['method']:12s} {rec['profile']:6s} seed {rec['seed']}: "
    if rec["status"] == "ok":
        how = "reused" if rec.get("reused") else f"{rec.get('wall_time_s', 0):.1f}s"
        note = "; plumbing only, not a comparison" if rec["profile"] in PLUMBING_PROFILES else ""
        if rec.get("test_metric") is None and rec.get("evaluate_test") is False:  # a tuning trial: validation only
            return head + (f"{rec.get('metric_name', 'metric')} final val {_num(rec.get('final_val_metric'), '.4f')} "
                           f"(best val {_num(rec.get('best_val_metric'), '.4f')}; {how})")
        return head + (f"{rec.get('metric_name', 'metric')} {_num(rec.get('test_metric'), '.4f')} "
                       f"(best val {_num(rec.get('best_val_metric'), '.4f')}; {how}{note})")
    return head + f"{rec['status']}: {rec.get('reason', '')}".splitlines()[0]


def _num(value: object, fmt: str) -> str:
    """A number in ``fmt``; None (a missing value; 0.0 is a value) as ``nan``."""
    return format(float("nan") if value is None else value, fmt)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .reporting.leaderboard import write

    if not args.results_dir.is_dir():
        raise SuiteError(f"results directory {args.results_dir} does not exist")
    out = write(args.results_dir, args.out or args.results_dir / "LEADERBOARD.md", include_plumbing=args.include_smoke)
    print(f"wrote {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.steps import bench_task, table, write_json
    from .running.environment import environment, resolve_device
    from .launch.grid import select
    from .paths import data_root
    from .plugins.registry import get_task, method_for

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    root = data_root(args.data_root)
    method_names = select("method", args.method, False)
    from .running.step_capture import resolve_mode

    resolve_mode(args.step_capture, device)
    if args.jobs is not None:
        return _bench_jobs(args, device, root, method_names)
    rows = []
    for name in select("task", args.task, False):
        task = get_task(name)
        if args.profile not in task.profiles and name != args.task:  # a pattern matched it: skip, say so
            print(f"bench: {name} has no profile {args.profile!r}; skipped", file=sys.stderr)
            continue
        methods = [method_for(task, m) for m in method_names]
        rows += bench_task(task, methods, device, root, args.profile, max(1, args.steps),
                           step_capture=args.step_capture)
    print(table(rows))
    if args.json:
        write_json(rows, args.json, {"environment": environment(device), "steps": args.steps,
                                     "threads": torch.get_num_threads()})
        print(f"wrote {args.json}")
    return 0


def _bench_jobs(args: argparse.Namespace, device, root: Path, method_names: list[str]) -> int:
    """bench --jobs N,...: aggregate samples/s of N concurrent training processes per task x method."""
    import torch

    from .bench.steps import write_json
    from .bench.jobs import bench_jobs, table
    from .running.environment import environment
    from .launch.grid import parse_seeds, select

    try:
        jobs = parse_seeds(args.jobs)
    except SuiteError:
        raise SuiteError(f"bad --jobs {args.jobs!r}: expected positive integers like 1,2,4,8") from None
    rows = []
    for name in select("task", args.task, False):
        for method in method_names:
            rows += bench_jobs(name, method, jobs, str(device), root, args.profile, max(1, args.steps),
                               step_capture=args.step_capture, plugins=tuple(args.plugin))
    print(table(rows))
    if args.json:
        write_json(rows, args.json, {"environment": environment(device), "steps": args.steps,
                                     "threads": torch.get_num_threads(), "jobs": jobs})
        print(f"wrote {args.json}")
    return 0


COMMANDS = {"bench": cmd_bench, "list": cmd_list, "run": cmd_run, "tune": cmd_tune, "probe": cmd_probe,
            "leaderboard": cmd_leaderboard, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every way it can end is one line on stderr at most (never a traceback)."""
    from .launch.signals import stop_on_signals

    try:
        with stop_on_signals():
            args = _merge_global_options(build_parser().parse_args(argv))
            if args.plugin:
                from .launch.executors import load_plugins

                load_plugins(args.plugin)
            if hasattr(args, "results_dir"):
                from .paths import results_dir

                args.results_dir = results_dir(args.results_dir)
            return COMMANDS[args.command](args)
    except SuiteError as exc:
        return _fail(f"error: {exc}", 2)
    except BrokenPipeError:  # `... | head` closed our stdout: stop quietly, as a C tool would
        _silence_stdout()
        return 141
    except OSError as exc:  # a file or folder of this command that cannot be made, read or written
        from .store.records import os_error_line

        return _fail(f"error: {os_error_line(exc)}", 2)
    except KeyboardInterrupt as exc:
        from .launch.signals import Terminated

        return _fail("terminated" if isinstance(exc, Terminated) else "interrupted",
                     128 + exc.signum if isinstance(exc, Terminated) else 130)
    except Exception as exc:  # a plugin's or the suite's own bug: one line; the traceback on request
        if os.environ.get("SURROGATE_BENCH_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return _fail(f"error: unexpected {type(exc).__name__}: {first} (set SURROGATE_BENCH_DEBUG=1 for the "
                     f"traceback)", 2)


def _fail(line: str, code: int) -> int:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
