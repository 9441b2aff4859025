"""The package's import graph (scripts/import_graph.py): no cycle, no private name shared
across packages, every module in a layer."""

import textwrap
from pathlib import Path

import pytest
from repo_scripts import script_module

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"

#: Import cycles tolerated for now (none).
KNOWN_CYCLES: set[frozenset[str]] = set()


@pytest.fixture(scope="module")
def graph():
    if not SCRIPT.is_file():
        pytest.skip("scripts/import_graph.py is not in this checkout")
    with script_module("import_graph") as module:
        yield module


@pytest.fixture(scope="module")
def report(graph):
    return graph.analyze()


def test_no_import_cycle(report):
    cycles = [" -> ".join(c) for c in report.cycles if frozenset(c) not in KNOWN_CYCLES]
    assert cycles == []


def test_no_private_name_across_packages(graph, report):
    """``from X import _name`` only within a subpackage; private modules only inside the
    package that holds them (the scripts' uses are reported by the script, not checked)."""
    assert [graph.describe(i) for i in report.private] == []


def test_every_module_has_a_layer(report):
    assert report.unplaced == []


def test_the_graph_sees_function_level_and_type_only_imports(graph, tmp_path):
    """A toy package: a cycle hidden by a function-level import is found, one that exists only
    under TYPE_CHECKING is not; private names and modules used across packages are listed."""
    pkg = tmp_path / "specutils_cinn"
    files = {
        "__init__.py": "",
        "a.py": """
            def f():
                from .b import x
                return x
            _hidden = 1
        """,
        "b.py": "from .a import f\nx = 1\n",
        "c.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from .d import Y
        """,
        "d.py": """
            from . import c, sub
            from .a import _hidden
            from .sub._impl import helper
            Y = sub._secret
        """,
        "sub/__init__.py": "_secret = 2\n",
        "sub/_impl.py": "def helper():\n    pass\n",
        "sub/e.py": "from ._impl import helper\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(textwrap.dedent(text))
    imports = graph.collect_imports(pkg)
    assert graph.find_cycles(graph.runtime_graph(imports)) == [
        ["specutils_cinn.a", "specutils_cinn.b", "specutils_cinn.a"]
    ]
    kinds = {(i.source, i.target, i.kind) for i in imports}
    assert ("specutils_cinn.a", "specutils_cinn.b", "function") in kinds
    assert ("specutils_cinn.c", "specutils_cinn.d", "type-checking") in kinds
    assert ("specutils_cinn.d", "specutils_cinn.sub", "parent") in kinds
    private = {(i.source, i.target, i.name) for i in graph.private_uses(imports)}
    assert private == {
        ("specutils_cinn.d", "specutils_cinn.a", "_hidden"),
        ("specutils_cinn.d", "specutils_cinn.sub._impl", "helper"),
        ("specutils_cinn.d", "specutils_cinn.sub", "_secret"),
    }
