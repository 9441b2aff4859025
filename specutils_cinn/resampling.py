"""Moved to `specutils_cinn.inputs.resampling`; this path goes away in the next release.

Kept for one release: it re-exports the public names of `specutils_cinn.inputs.resampling`.
"""

from .inputs.resampling import (
    CHUNK_ELEMENTS,
    GAP_FACTOR,
    EdgeLocator,
    find_gaps,
    flux_conserving_resample,
    gap_edges,
    insert_gaps,
    pixel_edges,
    resample_block,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "GAP_FACTOR",
    "EdgeLocator",
    "find_gaps",
    "flux_conserving_resample",
    "gap_edges",
    "insert_gaps",
    "pixel_edges",
    "resample_block",
]
