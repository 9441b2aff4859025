# Sphinx configuration for specutils-cinn (sphinx-astropy v3 defaults).
import datetime
import sys
from importlib.metadata import version as _version
from pathlib import Path

from sphinx_astropy.conf.v3 import *  # noqa: F403

project = "specutils-cinn"
author = "specutils-cinn developers"
copyright = f"{datetime.datetime.now(datetime.UTC).year}, {author}"
release = _version("specutils-cinn")
version = ".".join(release.split(".")[:2])

extensions += ["sphinx.ext.mathjax", "matplotlib.sphinxext.plot_directive"]  # noqa: F405
# the tutorial's figures are drawn from its code when the docs are built
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.dpi": 110}
# Intersphinx: each project's own inventory on the web first, then the local copy written by
# scripts/intersphinx_inventories.py (docs/_intersphinx/), so that an offline build (CI, a
# cluster without internet) still links to Python, numpy, astropy, specutils, torch, ... and
# passes -W. sphinx-astropy's defaults are replaced: scipy and astropy.org are not cited here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from intersphinx_inventories import PROJECTS  # noqa: E402

intersphinx_mapping = {
    name: (url, (None, f"_intersphinx/{name}.inv")) for name, (url, _) in PROJECTS.items()
}
intersphinx_timeout = 10
exclude_patterns += ["_build", "**.ipynb_checkpoints", "_generated"]  # noqa: F405
# Every measured number the prose quotes is a substitution (|hr_teff_250|) defined from its
# generated source by scripts/docs_numbers.py (tests/test_docs_numbers.py checks it is current).
rst_prolog = (Path(__file__).resolve().parent / "_generated" / "numbers.rst").read_text()
html_title = f"{project} v{release}"
html_theme_options = {
    "github_url": "https://github.com/specutils-cinn/specutils-cinn",
    "use_edit_page_button": False,
}
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
