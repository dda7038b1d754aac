import sys


def _unshadow() -> None:
    """``python -m surrogate_bench`` from a folder that holds a directory named ``surrogate_bench`` (the clone
    folder) imports that directory as a namespace package instead of this one: put this package first and
    import it again (worker processes inherit the path); if that cannot work, say what shadows it in one line."""
    pkg = sys.modules.get(__package__ or "surrogate_bench")
    if pkg is None or getattr(pkg, "__file__", None):
        return
    import importlib
    from pathlib import Path

    here = Path(__file__).resolve().parent
    shadows = [p for p in getattr(pkg, "__path__", []) if Path(p).resolve() != here]
    sys.path.insert(0, str(here.parent))
    for name in [n for n in sys.modules if n == "surrogate_bench" or n.startswith("surrogate_bench.")]:
        if name != "surrogate_bench.__main__":
            del sys.modules[name]
    real = importlib.import_module("surrogate_bench")
    if not getattr(real, "__file__", None):
        print(f"error: the folder {shadows[0] if shadows else '?'} (a directory named surrogate_bench without "
              f"__init__.py, e.g. the clone folder) shadows the surrogate_bench package; run from another folder "
              f"or use the surrogate-bench command", file=sys.stderr)
        sys.exit(2)


try:  # Ctrl-C while the first imports run (torch takes seconds) is one line, not a traceback
    _unshadow()
    from surrogate_bench.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
