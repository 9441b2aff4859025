"""Write the local intersphinx inventories of docs/_intersphinx/ from the installed packages.

The documentation links to Python, numpy, astropy, specutils, torch, matplotlib, pooch, h5py
and dask.distributed through intersphinx. Each project is mapped to its real inventory on the
web first and to a local file second (``docs/conf.py``), so a build with network uses the
projects' own inventories, and a build without one (this project's CI, an air-gapped cluster)
falls back to the files written here instead of failing with ``-W``.

A local inventory is what Sphinx would have written for the objects a project documents, in
that project's page layout, for the versions installed here:

- astropy and specutils (``sphinx-automodapi``): one page per public class or function of each
  public subpackage, ``api/<subpackage>.<name>.html``; its methods and attributes are anchors
  on the class page;
- numpy: ``reference/generated/numpy.<name>.html`` for functions, ufuncs, ``ndarray`` and
  ``dtype`` (and one page per ``ndarray`` method); scalar types on ``arrays.scalars.html``;
  ``numpy.random.Generator`` on ``reference/random/generator.html``;
- torch: ``generated/torch.<name>.html`` for functions, ``torch.nn`` and ``torch.optim``
  classes; ``torch.Tensor`` on ``tensors.html``; ``device`` and ``dtype`` on
  ``tensor_attributes.html``;
- Python: ``library/<module>.html#<name>`` for a list of standard-library modules, builtins on
  ``functions.html``, ``stdtypes.html``, ``exceptions.html`` and ``constants.html``;
- matplotlib, pooch, h5py, dask.distributed: the few pages of the objects this
  documentation names.

Where an object is defined in a private module (``astropy.table.table.QTable``), that path is
written as an alias of the public one, so annotations rendered by autodoc link too.

Usage (rerun after upgrading one of these packages, and commit the result)::

    python scripts/intersphinx_inventories.py [--output docs/_intersphinx]
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import importlib.metadata
import inspect
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Entry", "Inventory", "PROJECTS", "build_inventory", "main", "write_inventory"]

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "_intersphinx"


@dataclass(frozen=True)
class Entry:
    """One object of an inventory.

    Attributes
    ----------
    name : str
        Full dotted name, e.g. ``"astropy.table.QTable"``.
    role : str
        Domain and object type, e.g. ``"py:class"``.
    uri : str
        Page and anchor relative to the project's documentation root.
    """

    name: str
    role: str
    uri: str

    def line(self) -> str:
        """The entry as a line of a version-2 inventory."""
        uri = self.uri
        if uri.endswith("#" + self.name):
            uri = uri[: -len(self.name)] + "$"
        return f"{self.name} {self.role} 1 {uri} -"


@dataclass
class Inventory:
    """The objects of one project, keyed by name (the first entry of a name wins).

    Attributes
    ----------
    project : str
        Project name written in the header.
    version : str
        Version of the installed package the entries were taken from.
    entries : dict of str to Entry
    """

    project: str
    version: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, name: str, role: str, uri: str) -> None:
        """Add one entry unless the name is already there."""
        self.entries.setdefault(name, Entry(name, role, uri))

    def to_bytes(self) -> bytes:
        """The inventory file: a four-line header and the zlib-compressed entries."""
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {self.project}\n"
            f"# Version: {self.version}\n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        body = "".join(e.line() + "\n" for e in sorted(self.entries.values(),
                                                       key=lambda e: (e.name, e.role)))
        return header.encode() + zlib.compress(body.encode(), 9)


def _public(names: Iterable[str]) -> list[str]:
    return [n for n in names if not n.startswith("_")]


def _exported(module, *, own: bool = False) -> list[str]:
    """Names in ``__all__`` (what automodapi documents); with ``own``, also the public objects
    the module defines itself (the standard library documents some outside ``__all__``)."""
    names = set(getattr(module, "__all__", ()))
    if not names:
        names.update(n for n, v in vars(module).items()
                     if str(getattr(v, "__module__", "")).startswith(module.__name__))
    elif own:
        names.update(n for n, v in vars(module).items()
                     if getattr(v, "__module__", None) == module.__name__)
    return sorted(_public(names))


def _role(obj) -> str | None:
    if inspect.isclass(obj):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    if callable(obj):
        return "py:function"
    return None


def _members(cls, *, inherited: bool = False) -> Iterator[tuple[str, str]]:
    """Public methods, properties and attributes of a class; with ``inherited``, also those it
    inherits (as astropy's automodapi pages document them), leaving out those of `object`."""
    seen = set()
    for klass in cls.__mro__ if inherited else (cls,):
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            yield name, _member_role(value)


def _member_role(value) -> str:
    if isinstance(value, property):
        return "py:property"
    if isinstance(value, classmethod | staticmethod) or inspect.isfunction(value) or (
            inspect.ismethoddescriptor(value) or inspect.isbuiltin(value)) or callable(value):
        return "py:method"
    return "py:attribute"


def _defined_as(obj, public: str) -> str | None:
    """The private-module path of an object, if it differs from its public name."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    private = f"{module}.{qualname}"
    return private if private != public else None


def _add_object(inv: Inventory, public: str, obj, page: str, *, inherited: bool = False,
                member_page: Callable[[str, str], str] | None = None) -> None:
    """Add a class or function, its private-module alias, and a class's members."""
    role = _role(obj)
    if role is None:
        return
    inv.add(public, role, f"{page}#{public}")
    alias = _defined_as(obj, public)
    if alias:
        inv.add(alias, role, f"{page}#{public}")
    if inspect.isclass(obj):
        for member, mrole in _members(obj, inherited=inherited):
            target = f"{public}.{member}"
            mpage = member_page(public, member) if member_page else page
            inv.add(target, mrole, f"{mpage}#{target}")
            if alias:
                inv.add(f"{alias}.{member}", mrole, f"{mpage}#{target}")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --- the projects ------------------------------------------------------------------------------

def _automodapi(project: str, distribution: str, modules: Sequence[str]) -> Inventory:
    inv = Inventory(project, _version(distribution))
    for modname in modules:
        module = importlib.import_module(modname)
        for name in _exported(module):
            obj = getattr(module, name, None)
            if obj is None:
                continue
            public = f"{modname}.{name}"
            _add_object(inv, public, obj, f"api/{public}.html", inherited=True)
    return inv


def astropy_inventory() -> Inventory:
    """astropy: the automodapi pages of the subpackages this package uses."""
    return _automodapi("astropy", "astropy", (
        "astropy.units", "astropy.table", "astropy.io.fits", "astropy.io.registry",
        "astropy.nddata", "astropy.coordinates", "astropy.time", "astropy.wcs",
        "astropy.utils.exceptions", "astropy.constants", "astropy.stats",
    ))


def specutils_inventory() -> Inventory:
    """specutils: the automodapi pages of its public subpackages."""
    return _automodapi("specutils", "specutils", (
        "specutils", "specutils.manipulation", "specutils.analysis", "specutils.fitting",
    ))


_NUMPY_SCALARS = {"bool_", "bool", "float16", "float32", "float64", "int8", "int16", "int32",
                  "int64", "uint8", "uint16", "uint32", "uint64", "complex64", "complex128",
                  "floating", "integer", "number", "generic", "str_", "bytes_"}


def numpy_inventory() -> Inventory:
    """numpy: generated pages of top-level functions, ndarray, dtype; scalars; Generator."""
    import numpy as np
    import numpy.random

    inv = Inventory("NumPy", np.__version__)
    gen = "reference/generated/numpy.{}.html"
    for name in _public(dir(np)):
        obj = getattr(np, name)
        public = f"numpy.{name}"
        if name in _NUMPY_SCALARS:
            inv.add(public, "py:class", f"reference/arrays.scalars.html#{public}")
        elif name in ("ndarray", "dtype"):
            _add_object(inv, public, obj, gen.format(name),
                        member_page=lambda cls, m: f"reference/generated/{cls}.{m}.html")
        elif callable(obj) and not inspect.isclass(obj):  # functions, ufuncs, builtins
            inv.add(public, "py:function", f"{gen.format(name)}#{public}")
    page = "reference/random/generator.html"
    _add_object(inv, "numpy.random.Generator", numpy.random.Generator, page)
    inv.add("numpy.random.default_rng", "py:function", f"{page}#numpy.random.default_rng")
    inv.add("numpy.typing.ArrayLike", "py:data", "reference/typing.html#numpy.typing.ArrayLike")
    inv.add("numpy.typing.NDArray", "py:data", "reference/typing.html#numpy.typing.NDArray")
    return inv


def torch_inventory() -> Inventory:
    """torch: generated pages of functions and torch.nn / torch.optim classes; Tensor; device."""
    import torch
    import torch.nn
    import torch.optim
    import torch.optim.lr_scheduler

    inv = Inventory("PyTorch", torch.__version__.split("+")[0])
    inv.add("torch.Tensor", "py:class", "tensors.html#torch.Tensor")
    for member, role in _members(torch.Tensor, inherited=True):
        name = f"torch.Tensor.{member}"
        inv.add(name, role, f"generated/{name}.html#{name}")
    for name in ("device", "dtype", "layout", "memory_format"):
        inv.add(f"torch.{name}", "py:class", f"tensor_attributes.html#torch.{name}")
    _add_object(inv, "torch.Generator", torch.Generator, "generated/torch.Generator.html")
    for name in _public(dir(torch)):
        obj = getattr(torch, name)
        if name in ("Tensor", "device", "dtype", "layout", "memory_format", "Generator"):
            continue
        if inspect.isfunction(obj) or inspect.isbuiltin(obj) or name in ("no_grad",
                                                                            "inference_mode"):
            public = f"torch.{name}"
            role = "py:class" if inspect.isclass(obj) else "py:function"
            inv.add(public, role, f"generated/{public}.html#{public}")
    for modname in ("torch.fft", "torch.sparse", "torch.linalg", "torch.nn.functional"):
        module = importlib.import_module(modname)
        for name in _public(dir(module)):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isbuiltin(obj):
                public = f"{modname}.{name}"
                inv.add(public, "py:function", f"generated/{public}.html#{public}")
    for module in (torch.nn, torch.optim, torch.optim.lr_scheduler):
        for name in _public(dir(module)):
            obj = getattr(module, name)
            if inspect.isclass(obj) and obj.__module__.startswith(module.__name__):
                public = f"{module.__name__}.{name}"
                _add_object(inv, public, obj, f"generated/{public}.html")
    return inv


_STDLIB = ("abc", "argparse", "collections", "collections.abc", "concurrent.futures",
           "contextlib", "dataclasses", "datetime", "enum", "functools", "gzip", "hashlib",
           "io", "itertools", "json", "logging", "math", "numbers", "os", "pathlib", "random",
           "re", "shutil", "subprocess", "tempfile", "threading", "tomllib", "typing",
           "urllib.request", "warnings", "zlib")
_STDTYPES = {"str", "dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray",
             "range", "memoryview"}


def python_inventory() -> Inventory:
    """Python: builtins and the public names of a list of standard-library modules."""
    import sys

    inv = Inventory("Python", ".".join(map(str, sys.version_info[:3])))
    for name in _public(dir(builtins)):
        obj = getattr(builtins, name)
        if name in ("None", "True", "False", "Ellipsis", "NotImplemented"):
            inv.add(name, "py:data", f"library/constants.html#{name}")
        elif inspect.isclass(obj) and issubclass(obj, BaseException):
            inv.add(name, "py:exception", f"library/exceptions.html#{name}")
        elif name in _STDTYPES:
            inv.add(name, "py:class", f"library/stdtypes.html#{name}")
        elif inspect.isclass(obj):
            inv.add(name, "py:class", f"library/functions.html#{name}")
        elif callable(obj):
            inv.add(name, "py:function", f"library/functions.html#{name}")
    for modname in _STDLIB:
        module = importlib.import_module(modname)
        page = f"library/{modname}.html"
        inv.add(modname, "py:module", f"{page}#module-{modname}")
        for name in _exported(module, own=True):
            obj = getattr(module, name, None)
            public = f"{modname}.{name}"
            role = _role(obj)
            if role is None:
                inv.add(public, "py:data", f"{page}#{public}")
                continue
            inv.add(public, role, f"{page}#{public}")
            if inspect.isclass(obj):
                for member, mrole in _members(obj):
                    inv.add(f"{public}.{member}", mrole, f"{page}#{public}.{member}")
    return inv


def matplotlib_inventory() -> Inventory:
    """matplotlib: Figure, Axes and the pyplot functions."""
    import matplotlib
    import matplotlib.pyplot as plt

    inv = Inventory("Matplotlib", matplotlib.__version__)
    inv.add("matplotlib.figure.Figure", "py:class",
            "api/_as_gen/matplotlib.figure.Figure.html#matplotlib.figure.Figure")
    inv.add("matplotlib.axes.Axes", "py:class", "api/axes_api.html#matplotlib.axes.Axes")
    inv.add("matplotlib.pyplot", "py:module", "api/pyplot_summary.html#module-matplotlib.pyplot")
    for name in _public(dir(plt)):
        obj = getattr(plt, name)
        if inspect.isfunction(obj) and obj.__module__ == "matplotlib.pyplot":
            public = f"matplotlib.pyplot.{name}"
            inv.add(public, "py:function", f"api/_as_gen/{public}.html#{public}")
    return inv


def pooch_inventory() -> Inventory:
    """pooch: its generated API pages."""
    import pooch

    inv = Inventory("Pooch", pooch.__version__)
    for name in _exported(pooch):
        obj = getattr(pooch, name, None)
        if obj is not None:
            _add_object(inv, f"pooch.{name}", obj, f"api/generated/pooch.{name}.html")
    return inv


def h5py_inventory() -> Inventory:
    """h5py: File, Group and Dataset."""
    inv = Inventory("h5py", _version("h5py"))
    for name, page in (("File", "high/file.html"), ("Group", "high/group.html"),
                       ("Dataset", "high/dataset.html")):
        inv.add(f"h5py.{name}", "py:class", f"{page}#h5py.{name}")
    return inv


def distributed_inventory() -> Inventory:
    """dask.distributed: Client and LocalCluster (also under their ``dask.distributed`` names)."""
    inv = Inventory("Dask.distributed", _version("distributed"))
    for name in ("Client", "LocalCluster", "Future"):
        inv.add(f"distributed.{name}", "py:class", f"api.html#distributed.{name}")
        inv.add(f"dask.distributed.{name}", "py:class", f"api.html#distributed.{name}")
    return inv


#: Project name in ``intersphinx_mapping`` -> (documentation root, inventory builder).
PROJECTS: dict[str, tuple[str, Callable[[], Inventory]]] = {
    "python": ("https://docs.python.org/3/", python_inventory),
    "numpy": ("https://numpy.org/doc/stable/", numpy_inventory),
    "astropy": ("https://docs.astropy.org/en/stable/", astropy_inventory),
    "specutils": ("https://specutils.readthedocs.io/en/stable/", specutils_inventory),
    "torch": ("https://docs.pytorch.org/docs/stable/", torch_inventory),
    "matplotlib": ("https://matplotlib.org/stable/", matplotlib_inventory),
    "pooch": ("https://www.fatiando.org/pooch/latest/", pooch_inventory),
    "h5py": ("https://docs.h5py.org/en/stable/", h5py_inventory),
    "distributed": ("https://distributed.dask.org/en/stable/", distributed_inventory),
}


def build_inventory(project: str) -> Inventory:
    """The local inventory of one project of `PROJECTS`."""
    return PROJECTS[project][1]()


def write_inventory(inv: Inventory, path: Path) -> int:
    """Write an inventory file; returns the number of entries."""
    path.write_bytes(inv.to_bytes())
    return len(inv.entries)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="folder of the inventories (default: docs/_intersphinx)")
    parser.add_argument("projects", nargs="*", default=list(PROJECTS),
                        help="projects to write (default: all)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    for project in args.projects:
        inv = build_inventory(project)
        n = write_inventory(inv, args.output / f"{project}.inv")
        print(f"{project:12s} {inv.version:14s} {n:6d} entries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
