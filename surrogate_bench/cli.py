"""Command line: ``python -m surrogate_bench list | run | tune | probe | bench | leaderboard | export | clean``.

User errors print one line and exit with code 2; failed runs exit with 1 after the grid finished; a stop at
``--max-minutes`` exits with 3; a ``run`` that ran nothing (every selected run unsupported or without data)
exits with 4. Global options (``--plugin``, ``--progress``, ``--no-progress``) work before or after the
subcommand; a mistyped subcommand or flag gets the nearest ones suggested.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

from . import __version__
from .plugins.errors import SuiteError
from .plugins.suggest import close_matches, did_you_mean
from .paths import DATA_ENV, DEFAULT_DATA_ROOT, DEFAULT_RESULTS_DIR, RESULTS_ENV

RESULTS_HELP = (f"where records go (else ${RESULTS_ENV}, else {DEFAULT_RESULTS_DIR}); the published set "
                "is regenerated only by naming it: --results-dir results")


EXIT_CODES = ("exit codes: 0 every selected run finished ok or was reused; 1 some run failed (its record says why); "
              "2 bad input (one line on stderr); 3 stopped at --max-minutes (the same command resumes); "
              "4 nothing ran: every selected run was unsupported or had no data")
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too; keep it short)
        found = _INVALID_CHOICE.search(message)
        if found and "argument command" in message:
            message = f"unknown command {found.group(1)!r}{did_you_mean(found.group(1), COMMANDS)} " \
                      f"(commands: {', '.join(sorted(COMMANDS))})"
        elif found:
            action = next((a for a in self._actions if a.choices and found.group(1) not in a.choices
                           and a.dest and f"argument {'/'.join(a.option_strings)}" in message), None)
            if action is not None:
                message += did_you_mean(found.group(1), [str(c) for c in action.choices])
        raise SuiteError(f"{self.prog}: {message}")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, with the nearest known flags suggested for unrecognized ones (``--tsk`` -> ``--task``)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = getattr(self, "subcommands", {}).get(getattr(parsed, "command", None))
            known = [o for parser in (self, sub) if parser is not None for a in parser._actions
                     for o in a.option_strings if o.startswith("--")]
            hints = []
            for extra in extras:
                if extra.startswith("--"):
                    close = close_matches(extra.split("=", 1)[0], known, n=2)
                    hints += [(extra.split("=", 1)[0], " or ".join(close))] if close else []
            if len(hints) == 1:
                hint = f" (did you mean {hints[0][1]}?)"
            else:
                hint = " (did you mean " + "; ".join(f"{good} for {bad}" for bad, good in hints) + "?)" if hints else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed


def _global_options(p: argparse.ArgumentParser, after: bool) -> None:
    """Options accepted before and after the subcommand; after it they land in ``*_after`` and are merged."""
    def kw(default, dest):
        return {"default": argparse.SUPPRESS, "dest": dest + "_after"} if after else {"default": default, "dest": dest}

    g = p.add_argument_group("global options")
    g.add_argument("--plugin", action="append", metavar="FILE.py",
                   help="load a task/method plugin file (repeatable)", **kw([], "plugin"))
    g.add_argument("--progress", choices=("auto", "bar", "log", "off"), metavar="{auto,bar,log,off}",
                   help="training progress on stderr: bar (a terminal bar), log (a line per epoch and at most every "
                        "30 s inside long epochs: for nohup/Slurm logs), off; auto (default): bar on a terminal, "
                        "else log", **kw(None, "progress"))
    g.add_argument("--no-progress", action="store_true", help="same as --progress off", **kw(False, "no_progress"))


def _merge_global_options(args: argparse.Namespace) -> argparse.Namespace:
    args.plugin = list(args.plugin or []) + list(getattr(args, "plugin_after", []) or [])
    args.no_progress = bool(args.no_progress or getattr(args, "no_progress_after", False))
    args.progress = getattr(args, "progress_after", None) or args.progress or "auto"
    if args.no_progress:
        args.progress = "off"
    return args


def _joined(values: list[str] | str | None) -> str | None:
    """Repeated ``--task`` / ``--method`` accumulate: ``--method ce --method focal`` is ``ce,focal``."""
    if values is None or isinstance(values, str):
        return values
    return ",".join(values) or None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="surrogate_bench", description="Compare surrogate losses for non-differentiable metrics.",
                epilog=EXIT_CODES)
    p.add_argument("--version", action="version", version=f"surrogate_bench {__version__}")
    _global_options(p, after=False)
    sub = p.add_subparsers(dest="command", required=False, parser_class=_Parser, metavar="COMMAND")
    p.subcommands = {}  # type: ignore[attr-defined]
    sub.add_parser = _with_global_options(sub.add_parser, p.subcommands)  # type: ignore[method-assign]

    sub.add_parser("list", help="list tasks and methods with their parameters, profiles and supported tasks")

    r = sub.add_parser("run", help="run a grid of task x method x seed", epilog=EXIT_CODES)
    r.add_argument("--all", action="store_true", help="every task x every method")
    r.add_argument("--grid", default=None, metavar="NAME",
                   help="a named grid instead of --all/--task/--method: papers (the papers' headline tables, "
                        "paper profile, seeds 0,1,2; rows without data are listed as skipped)")
    r.add_argument("--task", action="append", help="comma list or glob patterns of task names (repeatable)")
    r.add_argument("--method", action="append", help="comma list or glob patterns of method names (repeatable)")
    r.add_argument("--profile", default=None, help="smoke | quick | paper (default quick; --grid: the grid's)")
    r.add_argument("--seeds", default=None,
                   help="comma list of seeds (default 0; --grid: the grid's), or auto: add seeds until every "
                        "comparison with the baseline is decided (--min-seeds, --max-seeds, --margin)")
    r.add_argument("--min-seeds", type=int, default=5, metavar="N", help="--seeds auto: seeds of the first look (5)")
    r.add_argument("--max-seeds", type=int, default=10, metavar="N", help="--seeds auto: at most N seeds (10)")
    r.add_argument("--seed-step", type=int, default=None, metavar="N",
                   help="--seeds auto: seeds added per look (default: --jobs)")
    r.add_argument("--margin", type=float, default=None, metavar="DELTA",
                   help="--seeds auto: equivalence margin, overriding each task's equivalence_margin")
    r.add_argument("--task-param", action="append", default=[], metavar="K=V",
                   help="a task parameter (repeatable); TASK.K=V for one task only")
    r.add_argument("--method-param", action="append", default=[], metavar="K=V",
                   help="a method parameter (repeatable): K=V for every selected method that has K, "
                        "METHOD.K=V (focal.gamma=1) for one method")
    r.add_argument("--profile-param", action="append", default=[], metavar="K=V",
                   help="replace a profile setting (repeatable): lr, epochs, batch_size, momentum, weight_decay, "
                        "milestones (e.g. 30/40), gamma, train_size, ...; part of each run's key")
    r.add_argument("--tuned", action="store_true",
                   help="run each task x method at the choice of its newest `tune --protocol` record (the lr and "
                        "the method's knob; a separate, labelled leaderboard row); a pair without one is an error")
    _common(r)
    _threads(r)
    r.add_argument("--dry-run", action="store_true", help="print the plan (what would train, be reused, skipped); "
                                                         "train nothing, download nothing")
    r.add_argument("--verbose", action="store_true", help="also list the unsupported task x method pairs")
    r.add_argument("--force", action="store_true", help="rerun finished keys")
    r.add_argument("--download", action="store_true", help="download missing datasets (torchvision)")
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run N runs at once (local worker processes; submitit: jobs in flight)")
    r.add_argument("--batch-runs", type=int, default=1, metavar="K",
                   help="train up to K compatible runs (same task, task params, profile) at once as one batched "
                        "model, each with its own record (default 1; needs --jobs 1; docs/batched.md)")
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
    tu.add_argument("--method", required=True, action="append",
                    help="one method name (--protocol: a comma list or glob patterns, repeatable)")
    tu.add_argument("--grid", action="append", default=[], metavar="K=V1,V2",
                    help="values to try for one method parameter (repeatable; the grid is their product)")
    tu.add_argument("--budget", type=int, default=None, metavar="N",
                    help="--grid: grid points tried; give every method the same N (a larger grid is subsampled, "
                         "seed 0)")
    tu.add_argument("--protocol", action="store_true",
                    help="instead of --grid: the declared tuning protocol for every --method (docs/tuning.md): "
                         "--trials Sobol points of lr (log range around the profile's) and the method's one knob, "
                         "each averaged over --seeds (at least 2) on validation")
    tu.add_argument("--trials", type=int, default=4, metavar="N", help="--protocol: trials per method (default 4)")
    tu.add_argument("--lr-range", default="0.1,3", metavar="LOW,HIGH",
                    help="--protocol: lr range as factors of the profile's lr (default 0.1,3: [lr/10, 3 lr])")
    tu.add_argument("--halving", action="store_true",
                    help="--protocol: successive halving (Optuna's SuccessiveHalvingPruner) on the per-epoch mean "
                         "validation metric")
    tu.add_argument("--min-epochs", type=int, default=1, metavar="E", help="--halving: first rung in epochs (1)")
    tu.add_argument("--reduction-factor", type=int, default=3, metavar="R", help="--halving: keep 1/R per rung (3)")
    tu.add_argument("--sampler-seed", type=int, default=0, metavar="S",
                    help="--protocol: seed of the scrambled Sobol sequence (the same for every method; default 0)")
    tu.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    tu.add_argument("--seeds", default=None,
                    help="comma list of seeds per grid point / trial (default 0; --protocol: 0,1)")
    tu.add_argument("--task-param", action="append", default=[], metavar="K=V")
    _common(tu)
    _threads(tu)
    tu.add_argument("--force", action="store_true", help="rerun finished trials")
    tu.add_argument("--download", action="store_true", help="download missing datasets (torchvision)")

    pr = sub.add_parser("probe", help="Spearman probe of batch loss vs batch metric on a shared pool")
    pr.add_argument("--task", required=True, action="append", help="comma list or glob patterns of task names")
    pr.add_argument("--method", required=True, action="append", help="comma list or glob patterns of method names")
    pr.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    _common(pr)
    _threads(pr)
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
    _threads(bn)
    bn.add_argument("--step-capture", default=None, choices=["auto", "graph", "compile", "eager"],
                    help="training step implementation (default auto: CUDA graph on CUDA, eager on CPU)")
    bn.add_argument("--batch-runs", default=None, metavar="K[,K...]",
                    help="instead: aggregate samples/s of K runs batched as one model vs the same K runs as "
                         "--processes separate processes of --threads threads (default 2 x 1), for each K")
    bn.add_argument("--processes", type=int, default=2, help="with --batch-runs: processes to spread runs over")
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
    ex.add_argument("--include-skips", action="store_true",
                    help="also the skip records (unsupported pairs, missing data), as results.load(include_skips=True)")

    cl = sub.add_parser("clean", help="remove stale run records: skips, failures, and records whose code or data "
                                      "fingerprint is not what the current code would produce")
    cl.add_argument("--results-dir", type=Path, default=None, help=RESULTS_HELP)
    cl.add_argument("--data-root", default=None,
                    help=f"dataset root the data fingerprints are checked against (else ${DATA_ENV}, else "
                         f"{DEFAULT_DATA_ROOT}); records whose data are not found there are kept")
    cl.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    cl.add_argument("--older-than", default=None, metavar="AGE",
                    help="only consider records older than AGE (e.g. 7d, 12h, 30m; a bare number is days)")
    cl.add_argument("--keep-failed", action="store_true", help="keep failed records (their tracebacks)")
    return p


def _with_global_options(add_parser, table: dict[str, argparse.ArgumentParser]):
    """Wrap ``add_parser`` so that every subcommand also accepts the global options (and is in ``table``)."""
    def add(name: str, **kwargs):
        sp = add_parser(name, **kwargs)
        _global_options(sp, after=True)
        table[name] = sp
        return sp
    return add


def _threads(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads for this command (torch.set_num_threads); with --jobs J each worker gets "
                         "max(1, N // J); recorded in every record's environment (default: torch's)")


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
        frame = load(args.results_dir, args.kind, include_skips=args.include_skips)
        frame = frame[frame["profile"].isin(profiles)] if profiles else frame
        sys.stdout.write(for_export(frame).to_csv(index=False))
        return 0
    out = export(args.results_dir, args.out, args.format, args.kind, profiles, include_skips=args.include_skips)
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
    from .reporting import console

    from dataclasses import replace

    from .launch.grid import build_specs, make_plan, parse_params, parse_profile_params, parse_seeds, select
    from .launch.executors import LaunchConfig, execute, log_stderr
    from .running.options import DeadlineReached
    from .running.progress import GridBar, resolve_mode

    args.task, args.method = _joined(args.task), _joined(args.method)
    auto = (args.seeds or "").strip().lower() == "auto"
    if args.margin is not None and not auto:
        raise SuiteError("run: --margin applies to --seeds auto (the leaderboard takes each task's margin)")
    if args.margin is not None and not args.margin > 0:
        raise SuiteError(f"bad --margin {args.margin}: expected a positive difference of the metric")
    if auto:
        if not 1 <= args.min_seeds <= args.max_seeds:
            raise SuiteError(f"bad --min-seeds {args.min_seeds} / --max-seeds {args.max_seeds}: expected "
                             f"1 <= min <= max")
        if args.seed_step is not None and args.seed_step < 1:
            raise SuiteError(f"bad --seed-step {args.seed_step}: expected a positive integer")
    if args.tuned and (args.grid or args.method_param or args.profile_param):
        raise SuiteError("run: --tuned sets the lr and the tuned knob from the tune records; drop "
                         "--grid/--method-param/--profile-param")
    if args.grid:
        if args.all or args.task or args.method or args.task_param or args.method_param or args.profile_param:
            raise SuiteError("run: --grid is a selection of its own; drop --all/--task/--method/--*-param")
        if auto:
            raise SuiteError("run: --seeds auto does not apply to --grid (the papers' seeds are fixed)")
        from .paths import data_root
        from .launch.grid import named_grid

        tasks, methods = [], []
        specs, skipped = named_grid(args.grid, data_root(args.data_root),
                                    parse_seeds(args.seeds) if args.seeds is not None else None, args.profile)
        specs_for_seeds = None
    else:
        skipped = []
        if not args.all and not (args.task and args.method):
            raise SuiteError("run: pass --all, or both --task and --method (or --grid NAME)")
        tasks = select("task", args.task, args.all)
        methods = select("method", args.method, args.all)
        profile = args.profile or "quick"
        task_params = parse_params(args.task_param, "task", tasks)
        method_params = parse_params(args.method_param, "method", methods)
        profile_params = parse_profile_params(args.profile_param)

        def specs_for_seeds(seeds: list[int]) -> list:
            specs = build_specs(tasks, methods, profile, list(seeds), task_params, method_params, profile_params)
            if not args.tuned:
                return specs
            from .launch.tune_protocol import tuned_specs

            return tuned_specs(specs, args.results_dir)

        specs = specs_for_seeds(list(range(args.min_seeds)) if auto else parse_seeds(args.seeds or "0"))
    launch = LaunchConfig(launcher=args.launcher, jobs=args.jobs, device=args.device, plugins=tuple(args.plugin),
                          slurm_partition=args.slurm_partition, slurm_time_min=args.slurm_time,
                          gpus_per_job=args.gpus_per_job, submitit_dir=args.submitit_dir, batch_runs=args.batch_runs)
    launch.validate()
    _check_launcher(launch)
    opts = run_options(args, progress=resolve_mode(args.progress))
    opts = _run_limits(args, opts)
    t0 = time.time()

    plan = make_plan(specs, opts.data_root, opts.results_dir, force=opts.force,
                     download=opts.download and not args.dry_run, log=log_stderr)
    opts = replace(opts, download=False)  # one download attempt per dataset, made by the plan
    nothing = not (plan.train or plan.reuse or plan.no_data)
    if args.dry_run or nothing or len(specs) > 1 or plan.reuse or plan.unsupported or plan.no_data:
        for line in plan.lines(verbose=args.verbose or nothing):  # (a single run to train needs no plan)
            print(line, file=sys.stderr, flush=True)
    for line in skipped:  # --grid rows whose data are absent
        print(line, file=sys.stderr, flush=True)
    for line in plan.missing_lines():  # one line per task without data (its skip records are written quietly)
        print(line, flush=True)
    if args.dry_run:
        for spec in plan.to_run(specs):
            print(f"would {'reuse' if spec in set(plan.reuse) else 'train'} {spec.label()} ({spec.profile})",
                  flush=True)
        if auto:
            print(f"--seeds auto: seeds 0-{args.min_seeds - 1} first, more (up to {args.max_seeds}) until decided",
                  file=sys.stderr, flush=True)
        return 0 if plan.train or plan.reuse else 4
    _record_missing(plan, opts)
    runnable = plan.to_run(specs)
    counts = {"ok": 0, "reused": 0, "failed": 0, "skipped": 0}
    bar = GridBar(len(runnable), opts.progress)
    try:
        if auto and runnable:
            records = _auto_seeds(args, plan, specs_for_seeds, opts, launch)
        else:
            records = execute(runnable, opts, launch)
        with contextlib.closing(records) if hasattr(records, "close") else contextlib.nullcontext():  # workers stop with us
            for rec in records:
                _count(counts, rec)
                bar.run_done(console.summary_line(rec, opts.results_dir))
    except DeadlineReached as exc:
        bar.close()
        print(f"stopped at --max-minutes {args.max_minutes:g}: {exc}; run the same command again to resume",
              file=sys.stderr, flush=True)
        return 3
    bar.close()
    failed = counts["failed"]
    if args.all and not args.no_probe and runnable:
        failed += run_probes([t for t in tasks if any(s.task == t for s in runnable)], methods,
                             args.profile or "quick", opts)
    where = "" if _default_results(args) else f" --results-dir {shlex.quote(str(args.results_dir))}"
    print(console.run_summary(counts, plan, time.time() - t0, where, args.download), file=sys.stderr, flush=True)
    if failed:
        return 1
    return 0 if counts["ok"] or counts["reused"] else 4


def _check_launcher(launch) -> None:
    """A launcher that cannot start is a whole-command error before the plan is printed."""
    import shutil

    if launch.launcher == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SuiteError(f"--launcher {launch.launcher} needs the submitit package: pip install submitit") from None
    if launch.launcher == "submitit" and shutil.which("sbatch") is None:
        raise SuiteError("--launcher submitit needs Slurm, but sbatch is not on PATH; "
                         "use --launcher submitit-local to run the jobs on this machine")


def _count(counts: dict[str, int], rec: dict) -> None:
    if rec["status"] == "ok":
        counts["reused" if rec.get("reused") else "ok"] += 1
    else:
        counts["failed" if rec["status"] == "failed" else "skipped"] += 1


def _default_results(args: argparse.Namespace) -> bool:
    from .paths import results_dir

    try:
        return Path(results_dir(None)).resolve() == Path(args.results_dir).resolve()
    except OSError:
        return False


def _record_missing(plan, opts) -> None:
    """The skip records of runs without data (written in this process, no worker), with the plan's reason:
    whole, naming what is missing, never "pass --download" when it was passed."""
    from dataclasses import replace

    from .running.runner import run_resolved
    from .running.spec import resolve
    from .store.records import write_record

    quiet = replace(opts, log=lambda message: None)
    for reason, specs in plan.no_data.values():
        for spec in specs:
            r = resolve(spec, quiet)
            rec = run_resolved(r, quiet)
            if rec.get("status") == "skipped" and rec.get("reason") != reason:
                rec["reason"] = reason
                write_record(r.path, rec)


def _auto_seeds(args: argparse.Namespace, plan, specs_for_seeds, opts, launch):
    """--seeds auto: the auto-seeds driver, over the runnable task x method pairs of the plan."""
    try:
        from .launch.auto_seeds import run_until_decided
    except ImportError as exc:
        raise SuiteError(f"--seeds auto needs surrogate_bench.launch.auto_seeds, which this installation lacks "
                         f"({exc})") from None
    from .launch.executors import log_stderr

    left_out = {(s.task, s.task_params, s.method) for s, _ in plan.unsupported}
    left_out |= {(s.task, s.task_params, s.method) for _, specs in plan.no_data.values() for s in specs}

    def runnable(seeds: list[int]) -> list:
        return [s for s in specs_for_seeds(seeds) if (s.task, s.task_params, s.method) not in left_out]

    return iter(run_until_decided(runnable, opts, launch, min_seeds=args.min_seeds, max_seeds=args.max_seeds,
                                  step=args.seed_step or max(1, args.jobs), margin=args.margin, log=log_stderr,
                                  **({"arm": "tuned"} if args.tuned else {})))


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
    from .reporting import console

    from .probes.probe import run_probe

    failed = 0
    for task in tasks:
        for method in methods:
            rec = run_probe(task, method, profile, opts)
            failed += rec["status"] == "failed"
            print(console.probe_line(rec), flush=True)
    if descent:
        from .probes.descent import descent_line, run_descent

        for task in tasks:
            for method in methods:
                rec = run_descent(task, method, profile, opts)
                failed += rec["status"] == "failed"
                print(descent_line(rec), flush=True)
    return failed


def cmd_tune(args: argparse.Namespace) -> int:
    from .reporting import console

    from .launch.grid import parse_params, parse_seeds, select
    from .running.progress import resolve_mode
    from .launch.tune import parse_grid, tune

    if args.protocol:
        return cmd_tune_protocol(args)
    args.method = _joined(args.method)
    task, method = select("task", args.task, False), select("method", args.method, False)
    if len(task) != 1 or len(method) != 1:
        raise SuiteError("tune: pass exactly one --task and one --method (or --protocol for several methods)")
    grid = parse_grid(args.grid, method[0])
    if args.budget is None:
        raise SuiteError("tune --grid: pass --budget N (the same N for every method)")
    args.seeds = args.seeds or "0"
    task_params = parse_params(args.task_param, "task", task)[task[0]]
    seeds = parse_seeds(args.seeds)
    opts = run_options(args, progress=resolve_mode(args.progress))
    command = " ".join(["python -m surrogate_bench tune", "--task", task[0], "--method", method[0],
                        *(f"--grid {k}={','.join(map(str, v))}" for k, v in grid.items()),
                        f"--budget {args.budget}", f"--profile {args.profile}", f"--seeds {args.seeds}",
                        *(f"--task-param {p}" for p in args.task_param)])
    rec = tune(task[0], method[0], grid, args.profile, seeds, args.budget, opts, task_params, command,
               on_trial=lambda r: print(console.trial_label(r, grid) + console.summary_line(r, opts.results_dir),
                                        flush=True))
    if rec["status"] != "ok":
        print(f"tune {task[0]} {method[0]}: failed: {rec['reason']} ({rec['path']})")
        return 1
    choice = ", ".join(f"{k}={v}" for k, v in rec["choice"].items())
    print(f"tune {task[0]} {method[0]} {args.profile}: {choice} (mean final val {rec['metric_name']} "
          f"{rec['choice_val_metric']:.4f} over seeds {args.seeds}; {len(rec['trials'])} trials) -> {rec['path']}")
    return 0


def cmd_tune_protocol(args: argparse.Namespace) -> int:
    """``tune --protocol``: the declared protocol for each --method on --task; one tune record per method."""
    from .reporting import console

    from .launch.grid import parse_params, parse_seeds, select
    from .launch.tune import unique_seeds
    from .launch.tune_protocol import TuneProtocol, tune_protocol
    from .reporting.tuning_budget import budget_line
    from .running.progress import resolve_mode

    if args.grid or args.budget is not None:
        raise SuiteError("tune: --protocol sets its own budget (--trials, --seeds, --lr-range); drop --grid/--budget")
    args.method = _joined(args.method)
    task, methods = select("task", args.task, False), select("method", args.method, False)
    if len(task) != 1:
        raise SuiteError("tune --protocol: pass exactly one --task")
    try:
        factors = tuple(float(v) for v in args.lr_range.split(","))
    except ValueError:
        raise SuiteError(f"bad --lr-range {args.lr_range!r}: expected LOW,HIGH factors like 0.1,3") from None
    args.seeds = args.seeds or "0,1"
    seeds = unique_seeds(parse_seeds(args.seeds), lambda m: print(m, file=sys.stderr, flush=True))
    protocol = TuneProtocol(n_trials=args.trials, seeds=tuple(seeds), lr_factors=factors, halving=args.halving,
                            min_epochs=args.min_epochs, reduction_factor=args.reduction_factor,
                            sampler_seed=args.sampler_seed)
    task_params = parse_params(args.task_param, "task", task)[task[0]]
    opts = run_options(args, progress=resolve_mode(args.progress))
    failed, records = 0, []
    for method in methods:
        command = " ".join(["python -m surrogate_bench tune --protocol", "--task", task[0], "--method", method,
                            f"--trials {args.trials}", f"--seeds {','.join(map(str, seeds))}",
                            f"--lr-range {args.lr_range}", f"--sampler-seed {args.sampler_seed}",
                            *([f"--halving --min-epochs {args.min_epochs} --reduction-factor {args.reduction_factor}"]
                              if args.halving else []),
                            f"--profile {args.profile}", *(f"--task-param {p}" for p in args.task_param)])
        rec = tune_protocol(task[0], method, protocol, args.profile, opts, task_params, command,
                            on_trial=lambda r: print(_protocol_trial_label(r) + console.summary_line(r, opts.results_dir),
                                                     flush=True))
        records.append(rec)
        if rec["status"] != "ok":
            failed += 1
            print(f"tune {task[0]} {method}: failed: {rec['reason']} ({rec['path']})", flush=True)
            continue
        choice = ", ".join(f"{k}={v}" for k, v in rec["choice"].items())
        print(f"tune {task[0]} {method} {args.profile}: {choice} (mean final val {rec['metric_name']} "
              f"{rec['choice_val_metric']:.4f} over {len(seeds)} seeds; {protocol.n_trials} trials) -> {rec['path']}",
              flush=True)
    print(budget_line(records), flush=True)
    return 1 if failed else 0


def _protocol_trial_label(rec: dict) -> str:
    """``trial [lr=...,knob=...] `` for a protocol trial's line."""
    from .launch.tune_protocol import knob_of

    lr = (rec.get("profile_settings") or {}).get("lr")

    knob = knob_of(rec.get("method", ""))
    extra = f",{knob['param']}={(rec.get('method_params') or {}).get(knob['param'])}" if knob else ""
    return f"trial [lr={lr}{extra}] "


def cmd_probe(args: argparse.Namespace) -> int:
    from .launch.grid import select

    tasks, methods = select("task", _joined(args.task), False), select("method", _joined(args.method), False)
    for t in tasks:
        from .plugins.registry import get_task

        get_task(t).profile(args.profile)
    return 1 if run_probes(tasks, methods, args.profile, run_options(args, progress=False), args.descent) else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .reporting.leaderboard import write

    if not args.results_dir.is_dir():
        raise SuiteError(f"results directory {args.results_dir} does not exist")
    if args.out is not None:
        target = Path(args.out).resolve()
        record_dirs = [(args.results_dir / d).resolve() for d in
                       ("runs", "tuning", "probes", "descent", "decisions", "checkpoints", "pools", "artifacts")]
        if target.suffix == ".json" or any(target.is_relative_to(d) for d in record_dirs):
            raise SuiteError(f"--out {args.out} would overwrite records; choose a path outside the record folders")
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

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    root = data_root(args.data_root)
    method_names = select("method", args.method, False)
    from .running.step_capture import resolve_mode

    resolve_mode(args.step_capture, device)
    if args.batch_runs is not None:
        from .bench.batched import bench_cli

        return bench_cli(args, device, root, method_names)
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


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove (or with --dry-run list) stale run records: skips, failures, other code/data fingerprints."""
    from .results import parse_age, stale_records

    if not args.results_dir.is_dir():
        raise SuiteError(f"results directory {args.results_dir} does not exist")
    older = parse_age(args.older_than) if args.older_than is not None else None
    stale, kept = stale_records(args.results_dir, args.data_root, older_than_s=older, keep_failed=args.keep_failed)
    verb = "would remove" if args.dry_run else "removed"
    for path, why in stale:
        if not args.dry_run:
            path.unlink(missing_ok=True)
            Path(str(path) + ".lock").unlink(missing_ok=True)
        print(f"{verb} {path}: {why}", flush=True)
    notes: dict[str, int] = {}
    for _, note in kept:
        notes[note] = notes.get(note, 0) + 1
    for note, n in sorted(notes.items()):
        print(f"{n} record(s) {note}", file=sys.stderr, flush=True)
    kinds: dict[str, int] = {"skips": 0, "failures": 0, "other fingerprints": 0}
    for _, why in stale:
        kind = "skips" if why.startswith("skip") else "failures" if why.startswith("failed") else "other fingerprints"
        kinds[kind] = kinds.get(kind, 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items() if n) or "nothing stale"
    where = f" older than {args.older_than}" if args.older_than else ""
    print(f"clean {args.results_dir}{where}: {verb} {len(stale)} record(s) ({detail})"
          + ("; run without --dry-run to remove them" if args.dry_run and stale else ""), file=sys.stderr, flush=True)
    return 0


COMMANDS = {"bench": cmd_bench, "list": cmd_list, "run": cmd_run, "tune": cmd_tune, "probe": cmd_probe,
            "leaderboard": cmd_leaderboard, "export": cmd_export, "clean": cmd_clean}


def _command_list(parser: argparse.ArgumentParser) -> str:
    """What a bare ``python -m surrogate_bench`` prints: the subcommands, one line each."""
    lines = [f"surrogate_bench {__version__}: compare surrogate losses for non-differentiable metrics", "",
             "usage: python -m surrogate_bench [--plugin FILE.py] COMMAND [options]   (or: surrogate-bench COMMAND)",
             "", "commands:"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub._choices_actions:
        lines.append(f"  {choice.dest:12s} {choice.help}")
    lines += ["", "python -m surrogate_bench COMMAND --help for its options; start with:",
              "  python -m surrogate_bench run --task digits-ap --method ce,uniloss --profile quick --seeds 0,1,2,3,4"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every way it can end is one line on stderr at most (never a traceback)."""
    import warnings

    from .launch.signals import stop_on_signals

    # a plugin on a 0.1 import path hears it (Python hides DeprecationWarnings outside __main__ by default)
    warnings.filterwarnings("default", category=DeprecationWarning, message=r"surrogate_bench\.\S+ moved to")
    try:
        with stop_on_signals():
            parser = build_parser()
            args = _merge_global_options(parser.parse_args(argv))
            if args.command is None:  # a bare command: what there is to run
                print(_command_list(parser), flush=True)
                return 2
            if getattr(args, "threads", None) is not None:
                if args.threads < 1:
                    raise SuiteError(f"bad --threads {args.threads}: expected a positive integer")
                import torch

                torch.set_num_threads(args.threads)
            if args.plugin:
                from .launch.executors import load_plugins

                load_plugins(args.plugin)
            if hasattr(args, "results_dir"):
                from .paths import results_dir

                args.results_dir = results_dir(args.results_dir)
            return COMMANDS[args.command](args)
    except SuiteError as exc:
        return _fail(f"error: {exc}", 2)
    except SystemExit as exc:  # --help, --version: argparse printed and exits
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
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
