"""Command line: ``python -m surrogate_bench list | run | leaderboard``.

User errors print one line and exit with code 2; failed runs exit with 1 after the grid finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .errors import SuiteError
from .paths import DATA_ENV, DEFAULT_DATA_ROOT, DEFAULT_RESULTS_DIR


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too; keep it short)
        raise SuiteError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="surrogate_bench", description="Compare surrogate losses for non-differentiable metrics.")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="load a task/method plugin file (repeatable)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="list tasks, methods and broken plugins")

    r = sub.add_parser("run", help="run a grid of task x method x seed")
    r.add_argument("--all", action="store_true", help="every task x every method")
    r.add_argument("--task", help="comma list or glob patterns of task names")
    r.add_argument("--method", help="comma list or glob patterns of method names")
    r.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    r.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    r.add_argument("--task-param", action="append", default=[], metavar="K=V")
    r.add_argument("--method-param", action="append", default=[], metavar="K=V")
    _common(r)
    r.add_argument("--force", action="store_true", help="rerun finished keys")
    r.add_argument("--download", action="store_true", help="download missing datasets (torchvision)")
    r.add_argument("--no-progress", action="store_true")

    lb = sub.add_parser("leaderboard", help="write the markdown leaderboard from the records")
    lb.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    lb.add_argument("--out", type=Path, default=None, help="default: RESULTS_DIR/LEADERBOARD.md")
    return p


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data-root", default=None,
                    help=f"dataset root (else ${DATA_ENV}, else {DEFAULT_DATA_ROOT})")
    sp.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import registry

    reg = registry()
    for kind in ("task", "method"):
        print(f"{kind}s:")
        for name in reg.names(kind):
            cls = reg.get_class(kind, name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"  {name:18s} {doc}")
    if reg.broken:
        print("broken plugins:")
        for src, err in sorted(reg.broken.items()):
            print(f"  {src}: {err}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .environment import resolve_device
    from .grid import build_specs, parse_params, parse_seeds, select
    from .paths import data_root
    from .runner import RunOptions, run_one
    from .store import check_writable

    if not args.all and not (args.task and args.method):
        raise SuiteError("run: pass --all, or both --task and --method")
    tasks = select("task", args.task, args.all)
    methods = select("method", args.method, args.all)
    specs = build_specs(tasks, methods, args.profile, parse_seeds(args.seeds),
                        parse_params(args.task_param, "task", tasks),
                        parse_params(args.method_param, "method", methods))
    root = data_root(args.data_root)
    if args.data_root and not root.is_dir():
        raise SuiteError(f"--data-root {root} does not exist or is not a directory")
    device = resolve_device(args.device)
    check_writable(args.results_dir)
    opts = RunOptions(results_dir=args.results_dir, data_root=root, device=device, force=args.force,
                      download=args.download, progress=not args.no_progress,
                      log=lambda m: print(m, file=sys.stderr))
    failed = 0
    for spec in specs:
        rec = run_one(spec, opts)
        failed += rec["status"] == "failed"
        print(summary_line(rec), flush=True)
    return 1 if failed else 0


def summary_line(rec: dict) -> str:
    head = f"{rec['task']:16s} {rec['method']:12s} {rec['profile']:6s} seed {rec['seed']}: "
    if rec["status"] == "ok":
        how = "reused" if rec.get("reused") else f"{rec.get('wall_time_s', 0):.1f}s"
        return head + (f"{rec.get('metric_name', 'metric')} {rec['test_metric']:.4f} "
                       f"(best val {rec.get('best_val_metric') or float('nan'):.4f}; {how})")
    return head + f"{rec['status']}: {rec.get('reason', '')}".splitlines()[0]


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import write

    if not args.results_dir.is_dir():
        raise SuiteError(f"results directory {args.results_dir} does not exist")
    out = write(args.results_dir, args.out or args.results_dir / "LEADERBOARD.md")
    print(f"wrote {out}")
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "leaderboard": cmd_leaderboard}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.plugin:
            from .registry import load_plugin

            for path in args.plugin:
                load_plugin(path)
        return COMMANDS[args.command](args)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
