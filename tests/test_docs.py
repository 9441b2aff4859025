"""The documentation: the local intersphinx inventories (docs/_intersphinx/, written by
scripts/intersphinx_inventories.py) and a full Sphinx build with warnings as errors."""

import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from repo_scripts import script_module

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCRIPT = ROOT / "scripts" / "intersphinx_inventories.py"
INVENTORIES = DOCS / "_intersphinx"

pytestmark = pytest.mark.skipif(not (SCRIPT.is_file() and DOCS.is_dir()),
                                reason="docs/ and scripts/ are not in this checkout")


@pytest.fixture(scope="module")
def inventories():
    with script_module("intersphinx_inventories") as module:
        yield module


def read_inventory(path):
    """name -> (role, uri) of a version-2 inventory, ``$`` expanded (no Sphinx needed)."""
    raw = path.read_bytes()
    header = raw.split(b"\n", 4)
    assert header[0] == b"# Sphinx inventory version 2"
    entries = {}
    for line in zlib.decompress(header[4]).decode().splitlines():
        name, role, _priority, uri, _display = line.split(" ", 4)
        entries[name] = (role, uri.replace("$", name) if uri.endswith("$") else uri)
    return entries


def test_every_project_has_a_committed_inventory(inventories):
    missing = [p for p in inventories.PROJECTS if not (INVENTORIES / f"{p}.inv").is_file()]
    assert missing == []
    assert sorted(p.stem for p in INVENTORIES.glob("*.inv")) == sorted(inventories.PROJECTS)


@pytest.mark.parametrize(("project", "name", "uri"), [
    ("astropy", "astropy.table.QTable", "api/astropy.table.QTable.html#astropy.table.QTable"),
    # the private-module path autodoc renders in annotations points at the public page
    ("astropy", "astropy.units.quantity.Quantity",
     "api/astropy.units.Quantity.html#astropy.units.Quantity"),
    ("specutils", "specutils.Spectrum", "api/specutils.Spectrum.html#specutils.Spectrum"),
    ("numpy", "numpy.ndarray", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
    ("torch", "torch.Tensor", "tensors.html#torch.Tensor"),
    ("python", "pathlib.Path", "library/pathlib.html#pathlib.Path"),
    ("python", "os.PathLike", "library/os.html#os.PathLike"),
])
def test_committed_inventories_use_each_projects_page_layout(project, name, uri):
    entries = read_inventory(INVENTORIES / f"{project}.inv")
    assert entries[name][1] == uri


def test_inventory_written_from_the_installed_package_round_trips(inventories, tmp_path):
    inv = inventories.build_inventory("specutils")
    n = inventories.write_inventory(inv, tmp_path / "specutils.inv")
    entries = read_inventory(tmp_path / "specutils.inv")
    assert len(entries) == n
    assert entries["specutils.SpectrumList"] == (
        "py:class", "api/specutils.SpectrumList.html#specutils.SpectrumList")
    # methods are anchors on their class's page, inherited ones included (automodapi)
    role, uri = entries["specutils.Spectrum.read"]
    assert uri == "api/specutils.Spectrum.html#specutils.Spectrum.read"


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors_and_link_offline(tmp_path):
    pytest.importorskip("sphinx_astropy", reason="the docs extra is not installed")
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    page = (out / "api" / "specutils_cinn.CINNParameterEstimator.html").read_text()
    # intersphinx resolved (from the local inventories when offline)
    assert "https://docs.astropy.org/en/stable/api/astropy.table.QTable.html" in page
    assert "https://specutils.readthedocs.io/en/stable/api/specutils.Spectrum.html" in page
