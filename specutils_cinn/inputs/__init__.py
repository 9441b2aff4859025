"""Spectra in, arrays on a model's wavelength grid out.

`prepare_spectra` takes any mix of `~specutils.Spectrum` (1-D or N-D),
`~specutils.SpectrumCollection`, `~specutils.SpectrumList` and lists or tuples of
them, and returns a `PreparedSpectra`: continuum-normalized flux, uncertainties and a
validity mask, one row per spectrum, on the model's
`~specutils_cinn.wavelength_grid.WavelengthGrid`.
`Normalization` is a model's continuum-normalization convention, which `prepare_spectra`
applies to observed spectra and training applies to simulated ones. `PixelMask` is a model's
mask of poorly modeled pixels, which both apply with `mask_pixels`.

The subpackage holds one module per step:

- ``units``: spectral axes to Angstrom, flux and uncertainty units, `doppler_factor`;
- ``collect``: walking specutils objects into blocks of rows that share a wavelength axis;
- ``chunks``: resampling groups of blocks onto the grid, chunk by chunk;
- ``prepare``: `prepare_spectra` and `PreparedSpectra`;
- `~specutils_cinn.inputs.resampling`: the vectorized flux-conserving resampler;
- `~specutils_cinn.inputs.normalization`: the batched continuum fit and `Normalization`;
- `~specutils_cinn.inputs.noise_estimate`: DER_SNR and masked row quantiles;
- ``pixel_mask``: `PixelMask` and `mask_pixels`.
"""

from .chunks import AUTO_NORMALIZED_RANGE, FILL_FLUX, FILL_SIGMA
from .normalization import Normalization
from .pixel_mask import PixelMask, mask_pixels
from .prepare import PreparedSpectra, prepare_spectra
from .units import doppler_factor

__all__ = [
    "AUTO_NORMALIZED_RANGE",
    "FILL_FLUX",
    "FILL_SIGMA",
    "Normalization",
    "PixelMask",
    "PreparedSpectra",
    "doppler_factor",
    "mask_pixels",
    "prepare_spectra",
]
