# Sphinx configuration for specutils-cinn (sphinx-astropy v3 defaults).
import datetime
from importlib.metadata import version as _version

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
intersphinx_mapping.update(  # noqa: F405
    {
        "astropy": ("https://docs.astropy.org/en/stable/", None),
        "specutils": ("https://specutils.readthedocs.io/en/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "pooch": ("https://www.fatiando.org/pooch/latest/", None),
    }
)
exclude_patterns += ["_build", "**.ipynb_checkpoints"]  # noqa: F405
html_title = f"{project} v{release}"
html_theme_options = {
    "github_url": "https://github.com/specutils-cinn/specutils-cinn",
    "use_edit_page_button": False,
}
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
