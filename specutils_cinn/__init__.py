"""specutils-cinn: stellar parameters with full posteriors from specutils spectra.

A conditional invertible neural network (cINN) turns spectra into posterior draws of
stellar parameters and abundances; `CINNParameterEstimator` is the public entry point.
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only when running from a source tree without a build
    __version__ = "0.0.0"

from . import io  # noqa: E402,F401  (registers the specutils readers)
from .estimator import CINNParameterEstimator  # noqa: E402
from .flags import QualityFlag  # noqa: E402

__all__ = ["CINNParameterEstimator", "QualityFlag", "__version__"]
