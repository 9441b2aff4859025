"""The import graph of specutils_cinn: cycles, upward imports and private names used across modules.

Every ``import`` and ``from ... import`` of every module of the package is read with `ast`:
those at module level, those inside functions (which run later, but are dependencies all the
same) and those under ``if TYPE_CHECKING:`` (never run: listed, but not counted as
dependencies). Importing ``a.b.c`` also runs the ``__init__`` of the package ``a.b``, so an
import of a submodule of another subpackage is an edge to that subpackage too. Imports made
through `importlib` (the lazy faces of ``specutils_cinn`` and ``specutils_cinn.synthesis``)
are not seen.

The report lists

- the cycles: groups of modules that import each other, directly or through others (the
  strongly connected components of the graph of runtime imports), each with one cycle;
- the upward imports: a module importing one in a higher layer of `LAYERS`;
- private names used across modules: ``from X import _name`` (or ``X._name``) where ``X`` is
  another module, unless both modules lie in the same subpackage (``flows/``, ``io/``, ...;
  the top-level modules each count as their own unit), and imports of a private module
  (``instruments._utils``) from outside the package that holds it. Private modules of the
  top level (``specutils_cinn._hashing``) serve the whole package.

With ``--scripts DIR`` the private names of specutils_cinn used by the scripts in ``DIR`` are
listed too (every private name or module counts there).

Usage::

    python scripts/import_graph.py                  # the report; exit status 1 on a cycle
    python scripts/import_graph.py --edges          # also every edge, with its kind and line
    python scripts/import_graph.py --scripts scripts --scripts benchmarks
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "specutils_cinn"
#: The package directory next to this script.
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

#: Layers from the ground floor up: a module may import modules of its own layer or lower
#: ones. An entry names a module or a package (all its modules); the longest match wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", (
        PACKAGE, "_version", "_hashing", "_files", "_forwarding", "_checks", "constants",
        "parameters", "devices", "wavelength_grid", "flags", "checkpoint",
        # the old path of wavelength_grid: a re-export module for one release
        "grid",
    )),
    ("components", (
        "calibration", "flows", "instruments", "io", "inputs", "results", "emulator",
        # the old paths of inputs.resampling, inputs.normalization and inputs.noise_estimate:
        # re-export modules for one release
        "resampling", "normalisation", "noise_estimate",
    )),
    ("model", ("fit_check", "model", "models", "registry", "calibration.mismatch")),
    # training: the package (config, data, augmentation, loop, simulation); "simulation" is the
    # old module that re-exports its names for one release
    ("training", ("synthesis", "simulation", "training", "validation", "emulator.prepare")),
    ("inference", (
        "rv", "options", "sampling", "quality", "estimator", "survey", "plotting",
        "validation.heldout", "validation.shard_heldout", "calibration.fit_flag",
        "calibration.heldout",
    )),
    ("interface", ("cli",)),
)

#: Kinds of edges: run when the module is imported, run when a function is called, never run
#: (``if TYPE_CHECKING:``), and the ``__init__`` of a package run by importing its submodule.
KINDS = ("module", "function", "type-checking", "parent")


@dataclass(frozen=True)
class Import:
    """One imported name (or module) and where it is imported.

    Attributes
    ----------
    source : str
        The importing module, e.g. ``"specutils_cinn.fit_check"``.
    target : str
        The module imported from (a submodule when ``name`` is one).
    name : str or None
        The name imported (``from target import name``), None for ``import target`` and for
        edges of kind ``"parent"``.
    line : int
        Line of the import statement (or of the attribute access, see ``attribute``).
    kind : str
        One of `KINDS`.
    attribute : bool
        True for ``module._name`` (an attribute of an imported module) rather than an import.
    """

    source: str
    target: str
    name: str | None
    line: int
    kind: str
    attribute: bool = False


@dataclass
class Report:
    """What `analyze` found.

    Attributes
    ----------
    imports : list of Import
        Every edge (imports, implied package imports and private attribute uses).
    cycles : list of list of str
        One cycle per group of modules that import each other (first module repeated last).
    upward : list of Import
        Imports of a module in a higher layer (runtime and type-only).
    private : list of Import
        Private names or modules used across modules or packages.
    unplaced : list of str
        Modules that `LAYERS` does not place.
    modules : list of str
        Every module of the package.
    """

    imports: list[Import]
    cycles: list[list[str]] = field(default_factory=list)
    upward: list[Import] = field(default_factory=list)
    private: list[Import] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """The modules of the package: dotted name to file (a package is its ``__init__.py``).

    Parameters
    ----------
    package_dir : pathlib.Path
        The directory of the top-level package.

    Returns
    -------
    dict of str to pathlib.Path
    """
    root = package_dir.resolve()
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """Imports of one file, with the context of each (module, function, TYPE_CHECKING)."""

    def __init__(self, source: str, package: str, modules: Mapping[str, Path]) -> None:
        self.source = source
        self.package = package  # the package relative imports are resolved against
        self.modules = modules
        self.context: list[str] = []
        self.aliases: dict[str, str] = {}  # local name -> module of specutils_cinn
        self.found: list[Import] = []

    @property
    def kind(self) -> str:
        if "type-checking" in self.context:
            return "type-checking"
        return "function" if "function" in self.context else "module"

    def _nested(self, node: ast.AST, what: str) -> None:
        self.context.append(what)
        self.generic_visit(node)
        self.context.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node, "function")

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._nested(node, "function")

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.context.append("type-checking")
            for child in node.body:
                self.visit(child)
            self.context.pop()
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, target: str, name: str | None, line: int, attribute: bool = False) -> None:
        self.found.append(Import(self.source, target, name, line, self.kind, attribute))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                self._add(alias.name, None, node.lineno)
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            if node.level - 1 > len(parts) - 1:
                return
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            if node.module:
                base = f"{base}.{node.module}"
        else:
            base = node.module or ""
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in self.modules:
                self._add(sub, None, node.lineno)
                self.aliases[alias.asname or alias.name] = sub
            else:
                self._add(base, alias.name, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.aliases:
            module = self.aliases[value.id]
            for attr in reversed(chain):
                if f"{module}.{attr}" in self.modules:
                    module = f"{module}.{attr}"
                    continue
                if _is_private(attr):
                    self._add(module, attr, node.lineno, attribute=True)
                break
            return  # the chain is handled: do not visit its inner attributes again
        self.generic_visit(node)


def _package_of(module: str, modules: Mapping[str, Path]) -> str:
    """The package a module's relative imports are resolved against."""
    if modules[module].name == "__init__.py":
        return module
    return module.rsplit(".", 1)[0]


def collect_imports(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Every import between modules of the package, with the package imports they imply.

    Parameters
    ----------
    package_dir : pathlib.Path
        The directory of the top-level package.

    Returns
    -------
    list of Import
        Imports of modules outside the package are left out. For an import of ``a.b.c`` from
        a module outside the package ``a.b``, an edge of kind ``"parent"`` to ``a.b`` is
        added (the top-level package itself is left out: every module lies inside it).
    """
    modules = package_modules(package_dir)
    out: list[Import] = []
    for name, path in modules.items():
        collector = _Collector(name, _package_of(name, modules), modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for imp in collector.found:
            out.append(imp)
            if imp.attribute or imp.kind == "type-checking":
                continue
            parts = imp.target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                inside = imp.source == parent or imp.source.startswith(parent + ".")
                if parent in modules and not inside:
                    out.append(Import(imp.source, parent, None, imp.line, "parent"))
    return out


def runtime_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    """Module to the modules it imports when run (type-only imports left out).

    Parameters
    ----------
    imports : iterable of Import

    Returns
    -------
    dict of str to set of str
    """
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if imp.kind != "type-checking" and not imp.attribute and imp.source != imp.target:
            graph[imp.source].add(imp.target)
    return graph


def _components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    out.append(sorted(comp))
    return out


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle for each group of modules that import each other.

    Parameters
    ----------
    graph : mapping of str to set of str
        As returned by `runtime_graph`.

    Returns
    -------
    list of list of str
        For each strongly connected component of more than one module (or a module that
        imports itself), a shortest cycle through its first module, that module repeated at
        the end; sorted.
    """
    cycles = []
    for comp in _components(graph):
        members = set(comp)
        start = comp[0]
        if len(comp) == 1 and start not in graph.get(start, ()):
            continue
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph.get(node, ()):
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                cycles.append([start, *reversed(path[:-1]), start] if node != start
                              else [start, start])
                break
            for child in sorted(graph.get(node, ())):
                if child in members and child not in previous and child != start:
                    previous[child] = node
                    queue.append(child)
    return sorted(cycles)


def layer_of(module: str, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> int | None:
    """Index in ``layers`` of the layer of a module (longest matching entry), or None.

    Parameters
    ----------
    module : str
        Dotted module name.
    layers : sequence of (str, sequence of str)
        As `LAYERS`: names relative to the top-level package.

    Returns
    -------
    int or None
    """
    best, best_len = None, -1
    for i, (_, entries) in enumerate(layers):
        for entry in entries:
            full = entry if entry == PACKAGE else f"{PACKAGE}.{entry}"
            if (module == full or module.startswith(full + ".")) and len(full) > best_len:
                best, best_len = i, len(full)
    return best


def _unit(module: str) -> str:
    """What may share private names: a subpackage, or a top-level module on its own."""
    parts = module.split(".")
    return module if len(parts) <= 2 else ".".join(parts[:2])


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``a.b._m`` -> ``a.b``), or None."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:i])
    return None


def private_uses(imports: Iterable[Import]) -> list[Import]:
    """Private names and modules used across modules (see the module docstring).

    Parameters
    ----------
    imports : iterable of Import

    Returns
    -------
    list of Import
    """
    out = []
    for imp in imports:
        if imp.kind == "parent":
            continue
        owner = _private_owner(imp.target)
        if owner is not None and not (imp.source == owner or imp.source.startswith(owner + ".")):
            out.append(imp)
        elif (imp.name is not None and _is_private(imp.name) and imp.source != imp.target
              and _unit(imp.source) != _unit(imp.target)):
            out.append(imp)
    return out


def analyze(package_dir: Path = PACKAGE_DIR) -> Report:
    """Build the import graph of the package and check it.

    Parameters
    ----------
    package_dir : pathlib.Path
        The directory of the top-level package.

    Returns
    -------
    Report
    """
    imports = collect_imports(package_dir)
    report = Report(imports, cycles=find_cycles(runtime_graph(imports)))
    report.modules = list(package_modules(package_dir))
    report.unplaced = [m for m in report.modules if layer_of(m) is None]
    for imp in imports:
        if imp.attribute or imp.source == imp.target:
            continue
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is not None and dst is not None and dst > src:
            report.upward.append(imp)
    report.private = private_uses(imports)
    return report


def script_private_uses(directory: Path, package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Private names or modules of the package that the scripts in a directory use.

    Parameters
    ----------
    directory : pathlib.Path
        A directory of scripts (``*.py``, not recursive).
    package_dir : pathlib.Path
        The directory of the top-level package.

    Returns
    -------
    list of Import
        ``source`` is the script's file name.
    """
    modules = package_modules(package_dir)
    out = []
    for path in sorted(Path(directory).glob("*.py")):
        collector = _Collector(path.name, PACKAGE, modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for imp in collector.found:
            if _private_owner(imp.target) is not None or (
                imp.name is not None and _is_private(imp.name)
            ):
                out.append(imp)
    return out


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".") if module != PACKAGE else module


def describe(imp: Import) -> str:
    """One line for an edge: ``source:line imports target.name (kind)``.

    Parameters
    ----------
    imp : Import

    Returns
    -------
    str
    """
    what = f"{_short(imp.target)}.{imp.name}" if imp.name else _short(imp.target)
    how = "uses" if imp.attribute else "imports"
    return f"{_short(imp.source)}:{imp.line} {how} {what} ({imp.kind})"


def format_report(report: Report, *, edges: bool = False) -> str:
    """The report as text.

    Parameters
    ----------
    report : Report
    edges : bool, optional
        Also list every edge between modules, grouped by importing module.

    Returns
    -------
    str
    """
    lines = []
    graph = runtime_graph(report.imports)
    n_edges = sum(len(v) for v in graph.values())
    lines.append(f"{len(report.modules)} modules, {n_edges} runtime edges "
                 "(module, function and implied package imports)")
    lines.append("")
    lines.append("Layers (ground floor first): "
                 + " < ".join(name for name, _ in LAYERS))
    lines.append("")
    lines.append(f"Cycles: {len(report.cycles)}")
    groups = {comp[0]: comp for comp in _components(graph)}
    for cycle in report.cycles:
        group = groups.get(cycle[0], cycle[:-1])
        lines.append("  " + " -> ".join(_short(m) for m in cycle)
                     + (f"  (one of the cycles among {', '.join(map(_short, group))})"
                        if len(group) > len(cycle) - 1 else ""))
    lines.append("")
    runtime = [i for i in report.upward if i.kind != "type-checking"]
    typed = [i for i in report.upward if i.kind == "type-checking"]
    lines.append(f"Upward imports: {len(runtime)}")
    for imp in runtime:
        src, dst = LAYERS[layer_of(imp.source)][0], LAYERS[layer_of(imp.target)][0]
        lines.append(f"  {describe(imp)}: {src} -> {dst}")
    if typed:
        lines.append(f"Upward type-only references (if TYPE_CHECKING, never run): {len(typed)}")
        for imp in typed:
            lines.append(f"  {describe(imp)}")
    lines.append("")
    lines.append(f"Private names used across modules or packages: {len(report.private)}")
    for imp in report.private:
        lines.append(f"  {describe(imp)}")
    if report.unplaced:
        lines.append("")
        lines.append("Modules LAYERS does not place: " + ", ".join(map(_short, report.unplaced)))
    if edges:
        lines.append("")
        lines.append("Edges:")
        by_source: dict[str, list[Import]] = defaultdict(list)
        for imp in report.imports:
            if not imp.attribute:
                by_source[imp.source].append(imp)
        for source in sorted(by_source):
            targets: dict[str, set[str]] = defaultdict(set)
            for imp in by_source[source]:
                targets[_short(imp.target)].add(imp.kind)
            lines.append(f"  {_short(source)} -> " + ", ".join(
                f"{t}" + ("" if kinds == {"module"} else f" [{'/'.join(sorted(kinds))}]")
                for t, kinds in sorted(targets.items())))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; return 1 if the graph has a cycle, else 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="also list every edge")
    ap.add_argument("--scripts", action="append", default=[], type=Path, metavar="DIR",
                    help="also list the private names the scripts in DIR use (repeatable)")
    args = ap.parse_args(argv)
    report = analyze()
    print(format_report(report, edges=args.edges))
    for directory in args.scripts:
        uses = script_private_uses(directory)
        print(f"\nPrivate names of {PACKAGE} used by {directory}/: {len(uses)}")
        for imp in uses:
            print(f"  {describe(imp)}")
    return 1 if report.cycles else 0


if __name__ == "__main__":
    sys.exit(main())
