"""Which code and which data produced a run: fingerprints that go into its key, and facts its record keeps.

* **Code fingerprint** -- sha256 over the task's and the method's plugin files and the engine modules on the
  training path (:data:`TRAINING_PATH`), plus torch's release. Reporting code (leaderboard, plots, CLI,
  launchers, store, bench, probes) is left out, so editing it never invalidates a run. Training-path files
  are hashed by *content* only (CRLF -> LF), as a sorted list of digests under the logical name
  ``training_path``: moving or renaming an unchanged file keeps every key, while any edit changes it, and
  one checkout gives the same fingerprint on every machine. Any engine file on the path changing re-keys
  every run: coarse, but nothing that shapes a result can slip past.
* **Data fingerprint** -- sha256 over the (name, size, sha256) of every file the task declares it reads
  (:meth:`Task.data_files`); the per-file digests are cached by (path, size, mtime_ns, inode) in
  ``$SURROGATE_BENCH_CACHE`` (default ``~/.cache/surrogate_bench``)/``digests.json``, so a 180 MB CIFAR copy
  is read once. A task whose data is generated (``data_files`` returns ``[]``) gets ``"generated"``: its
  generator's parameters are in the key already and its code is in the code fingerprint. A task that does
  not declare its files gets ``"undeclared"`` (recorded, so a reader can see it).

torch's public release (``2.5.1``, no local ``+cu124`` tag) is part of the key: kernels and defaults change
between releases and change results; the other libraries' versions are recorded, not keyed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from ..paths import REPO_ROOT
from ..plugins.contracts import Method, Task
from ..plugins.errors import DataUnavailable

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Engine modules and subpackages whose code decides a run's numbers (relative to the package).
TRAINING_PATH: tuple[str, ...] = (
    "plugins/contracts.py", "plugins/registry.py", "running/runner.py", "running/step.py",
    "running/checkpoint.py", "running/data_cache.py", "running/baseline.py", "running/environment.py",
    "running/step_capture.py", "stats/bootstrap.py", "losses", "datasets", "models", "taskkit", "uniloss", "reloss",
)
CACHE_ENV = "SURROGATE_BENCH_CACHE"
DEFAULT_CACHE = Path("~/.cache/surrogate_bench")
RECORDED_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "diffsort", "pandas")


# -- code ----------------------------------------------------------------------------------------------------
def plugin_file(obj: Task | Method | type) -> Path | None:
    """The file a task or method class is defined in (None for classes without one, e.g. built in a REPL)."""
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        return Path(inspect.getfile(cls)).resolve()
    except (TypeError, OSError):
        return None


def training_path_files(root: Path | None = None) -> list[Path]:
    """The engine's source files on the training path, sorted."""
    root = root or PACKAGE_ROOT
    files: set[Path] = set()
    for item in TRAINING_PATH:
        target = root / item
        files.update(target.rglob("*.py") if target.is_dir() else [target] if target.is_file() else [])
    return sorted(files)


@functools.lru_cache(maxsize=512)
def _source_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a source file with line ends normalised (cached per stat, so an edit is seen)."""
    return hashlib.sha256(Path(path).read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def source_digest(path: Path) -> str:
    st = path.stat()
    return _source_digest(str(path), st.st_size, st.st_mtime_ns)


def torch_release() -> str:
    return torch.__version__.split("+")[0]


def training_path_digest(root: Path | None = None) -> list[str]:
    """The training-path files' content digests, sorted: where a file lives does not enter a key."""
    return sorted(source_digest(path) for path in training_path_files(root))


def code_fingerprint(task: Task, method: Method) -> str:
    """sha256 over the task's and method's plugin files, the training-path engine files and torch's release."""
    parts: list[tuple[str, Any]] = [("torch", torch_release())]
    for role, obj in (("task", task), ("method", method)):
        path = plugin_file(obj)
        parts.append((f"plugin:{role}", source_digest(path) if path else f"unknown:{type(obj).__qualname__}"))
    parts.append(("training_path", training_path_digest()))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


# -- data ----------------------------------------------------------------------------------------------------
def declared_data_files(task: Task, data_root: Path) -> list[Path] | None:
    """The files the task reads, or None when it does not say. A subclass that overrides ``load`` but
    inherits ``data_files`` from above that ``load`` is undeclared (it reads something else)."""
    cls = type(task)
    owner_load = next(c for c in cls.__mro__ if "load" in c.__dict__)
    owner_files = next(c for c in cls.__mro__ if "data_files" in c.__dict__)
    if owner_files is Task or not issubclass(owner_files, owner_load):
        return None
    files = task.data_files(Path(data_root))
    return None if files is None else [Path(f) for f in files]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


_NOTED: set[str] = set()


def _note(message: str) -> None:
    """One line on stderr, each distinct note once per process (a grid fingerprints its data once per run)."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"note: {message}", file=sys.stderr, flush=True)


class DigestCache:
    """sha256 of data files, remembered by (resolved path, size, mtime_ns, inode) in a small JSON file.

    The cache is believed only where it is well formed: a file that is not a JSON object, and an entry that
    is not an object with an integer stamp and a 64-hex-digit ``sha256``, are dropped and the data file is
    hashed again, with one line (``log``, default stderr) naming the cache file; the repaired cache is saved."""

    def __init__(self, path: Path | None = None, log: Callable[[str], None] | None = None) -> None:
        self.path = path or cache_dir() / "digests.json"
        self.log = log or _note
        self.dirty = False
        self.entries: dict[str, Any] = {}
        from .records import read_regular

        try:
            loaded = json.loads(read_regular(self.path))
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self.log(f"digest cache {self.path} is unreadable ({why}); hashing the data files again")
            self.dirty = True  # rewrite it (best effort)
            return
        if not isinstance(loaded, dict):
            self.log(f"digest cache {self.path} is not a JSON object but {type(loaded).__name__}; "
                     "hashing the data files again")
            self.dirty = True
            return
        self.entries = loaded

    def digest(self, path: Path) -> tuple[int, str]:
        real = Path(path).resolve()
        st = real.stat()
        entry = self.entries.get(str(real))
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
            digest = entry.get("sha256")
            if isinstance(digest, str) and _SHA256.match(digest):
                return st.st_size, digest
            self.log(f"digest cache {self.path}: the entry for {real} has no valid sha256; hashing it again")
        elif entry is not None and not isinstance(entry, dict):
            self.log(f"digest cache {self.path}: the entry for {real} is not an object; hashing it again")
        h = hashlib.sha256()
        with real.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        self.entries[str(real)] = {**stamp, "sha256": h.hexdigest()}
        self.dirty = True
        return st.st_size, h.hexdigest()

    def save(self) -> None:
        """Best effort: an unwritable cache only means hashing again next time."""
        if not self.dirty:
            return
        from .records import atomic_write_bytes

        try:
            atomic_write_bytes(self.path, json.dumps(self.entries, sort_keys=True).encode())
            self.dirty = False
        except OSError:
            pass


def data_fingerprint(task: Task, data_root: Path, cache: DigestCache | None = None) -> str:
    """sha256 over the declared files' (root-relative name, size, sha256); raises DataUnavailable when one is
    missing. ``"generated"`` for tasks reading no files, ``"undeclared"`` for tasks that do not say."""
    files = declared_data_files(task, data_root)
    if files is None:
        return "undeclared"
    if not files:
        return "generated"
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataUnavailable(f"{task.name}: data file {missing[0]} not found" +
                              (f" ({len(missing)} missing)" if len(missing) > 1 else "") +
                              (f"; {task.data_hint.replace('<data-root>', str(data_root))}" if task.data_hint else ""))
    cache = cache or DigestCache()
    root = Path(data_root).resolve()
    parts = []
    for f in sorted(files):
        size, digest = cache.digest(f)
        real = f.resolve()
        name = real.relative_to(root).as_posix() if real.is_relative_to(root) else real.name
        parts.append((name, size, digest))
    cache.save()
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


# -- record facts --------------------------------------------------------------------------------------------
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from, read anew for every record (a process that
    outlives a commit or an edit never stamps a stale state); (None, None) outside a git work tree."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit.strip(), (bool(status.strip()) if status is not None else None)


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=64)
def plugin_package(path: Path | None) -> str | None:
    """The installed distribution a plugin file belongs to (None for a loose file or this checkout)."""
    if path is None or path.is_relative_to(REPO_ROOT):
        return None
    from importlib import metadata

    for dist in metadata.distributions():
        try:
            base = Path(dist.locate_file("")).resolve()
        except Exception:
            continue
        if base != REPO_ROOT and path.is_relative_to(base) and any(
                Path(dist.locate_file(f)).resolve() == path for f in (dist.files or []) if f.suffix == ".py"):
            return f"{dist.metadata['Name']}=={dist.version}"
    return None


def provenance(task: Task, method: Method, code_fp: str, data_fp: str) -> dict[str, Any]:
    """The ``provenance`` block of a record."""
    commit, dirty = git_state()
    sources = {role: plugin_file(obj) for role, obj in (("task", task), ("method", method))}
    return {
        "git_commit": commit, "git_dirty": dirty,
        "code_fingerprint": code_fp, "data_fingerprint": data_fp,
        "training_path": list(TRAINING_PATH),
        "plugin_sources": {role: (str(p) if p else None) for role, p in sources.items()},
        "plugin_packages": {role: plugin_package(p) for role, p in sources.items()},
        "package_versions": package_versions(),
    }
