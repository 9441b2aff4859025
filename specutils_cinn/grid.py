"""Moved to `specutils_cinn.wavelength_grid`; this path goes away in the next release.

Kept for one release: it re-exports the public names of `specutils_cinn.wavelength_grid`
("grid" alone now means a grid of synthetic stars, `specutils_cinn.synthesis`).
"""

from .wavelength_grid import GridSegment, WavelengthGrid, crop_grid, pixel_map

__all__ = ["GridSegment", "WavelengthGrid", "crop_grid", "pixel_map"]
