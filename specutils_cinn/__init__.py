"""specutils-cinn: stellar parameters with full posteriors from specutils spectra.

A conditional invertible neural network (cINN) turns spectra into posterior draws of
stellar parameters and abundances; `CINNParameterEstimator` is the public entry point.

Importing the package is cheap: the estimator (and with it PyTorch) is imported on first use
of ``specutils_cinn.CINNParameterEstimator``, and the specutils readers of `specutils_cinn.io`
are registered as soon as specutils is imported (at once if it already is), so that the
``specutils-cinn`` command answers ``--help`` without loading torch or specutils.
"""

import importlib
import importlib.util
import sys

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only when running from a source tree without a build
    __version__ = "0.0.0"

__all__ = ["CINNParameterEstimator", "QualityFlag", "__version__"]

#: Public names imported on first access (PEP 562), with the module that defines them.
_LAZY = {"CINNParameterEstimator": ".estimator", "QualityFlag": ".flags"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a submodule, e.g. io
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _register_readers():
    """Register the readers of `specutils_cinn.io` with specutils (imports both)."""
    importlib.import_module(".io", __name__)


class _RegisterReadersAfterSpecutils:
    """Import hook: register the readers right after ``specutils`` itself has been imported.

    It only wraps the loader of the top-level ``specutils`` module; every other import, and
    ``specutils`` itself, is found and loaded as usual.
    """

    def __init__(self):
        self._finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "specutils" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register_readers()

        loader.exec_module = exec_and_register
        return spec


if "specutils" in sys.modules:
    _register_readers()
else:
    sys.meta_path.insert(0, _RegisterReadersAfterSpecutils())
