"""Moved to `specutils_cinn.inputs.normalization`; this path goes away in the next release.

Kept for one release: it re-exports the public names of `specutils_cinn.inputs.normalization`
(American spelling).
"""

from .inputs.normalization import (
    Normalization,
    fit_continuum,
    fit_segment_continuum,
    normalize_continuum,
)

__all__ = ["Normalization", "fit_continuum", "fit_segment_continuum", "normalize_continuum"]
