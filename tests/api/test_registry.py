"""Registry: discovery by path, entry points, ad-hoc files, duplicates, broken plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from surrogate_bench.plugins.errors import SuiteError
from surrogate_bench.plugins.registry import Registry

METHOD_SRC = """
from surrogate_bench.plugins.contracts import Method
class {cls}(Method):
    name = {name!r}
    def make_loss(self, task):
        return lambda o, t: o.sum()
"""


def _plugin(folder: Path, stem: str, name: str, cls: str = "M") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(METHOD_SRC.format(cls=cls, name=name))
    return path


def test_builtin_plugins_found_by_path() -> None:
    reg = Registry()
    assert "mnist-ap" in reg.names("task") and "ce" in reg.names("method")
    assert reg.get_class("method", "ce").source.endswith("methods/ce.py")


def test_duplicate_name_names_both_sources(tmp_path: Path) -> None:
    a = _plugin(tmp_path / "methods", "a", "dup")
    b = _plugin(tmp_path / "methods", "b", "dup")
    reg = Registry(search_root=tmp_path, use_entry_points=False)
    with pytest.raises(SuiteError) as err:
        reg.ensure_loaded()
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_broken_plugin_does_not_break_others(tmp_path: Path) -> None:
    _plugin(tmp_path / "methods", "good", "good-one")
    (tmp_path / "methods" / "bad.py").write_text("import not_a_module_anywhere\n")
    reg = Registry(search_root=tmp_path, use_entry_points=False)
    assert reg.names("method") == ["good-one"]
    (src, err), = reg.broken.items()
    assert src.endswith("bad.py") and "ModuleNotFoundError" in err


def test_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package installed elsewhere adds a method through the ``surrogate_bench.methods`` group."""
    _plugin(tmp_path, "ep_plugin_pkg", "from-entry-point", cls="EpMethod")
    dist = tmp_path / "ep_plugin_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[surrogate_bench.methods]\nfrom-entry-point = ep_plugin_pkg:EpMethod\n"
        "[surrogate_bench.tasks]\nbroken = ep_plugin_pkg:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry(search_root=None, use_entry_points=True)
    assert "from-entry-point" in reg.names("method")
    assert any("broken" in src for src in reg.broken)


def test_unknown_name_lists_known() -> None:
    with pytest.raises(SuiteError, match="unknown method 'nope'.*ce"):
        Registry().get_class("method", "nope")


def test_unknown_and_bad_params() -> None:
    from surrogate_bench import get_method, get_task

    with pytest.raises(SuiteError, match="unknown parameter 'bogus'"):
        get_task("mnist-ap", bogus=1)
    with pytest.raises(SuiteError, match="bad value 'abc'"):
        get_method("ce", label_smoothing="abc")
    assert get_method("ce", label_smoothing="0.1").p["label_smoothing"] == 0.1


def test_plugin_file_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from surrogate_bench.plugins import registry
    from surrogate_bench.cli import main

    path = _plugin(tmp_path / "adhoc", "my_loss", "my-adhoc-loss", cls="Adhoc")
    old = registry._REGISTRY
    registry._REGISTRY = None
    try:
        assert main(["--plugin", str(path), "list"]) == 0
        assert "my-adhoc-loss" in capsys.readouterr().out
    finally:
        registry._REGISTRY = old
