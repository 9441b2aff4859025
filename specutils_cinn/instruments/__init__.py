"""Instrument models: the 4MOST setups, line broadening, noise and other observational effects.

Used to turn high-resolution synthetic spectra into training spectra that look like 4MOST
observations: `degrade` (rotation, macroturbulence, line-spread function, pixel binning),
then `add_noise`, `random_masks` and `continuum_distortion`.
"""

from __future__ import annotations

from .broadening import (
    from_log_lambda_grid,
    gaussian_lsf_broaden,
    macroturbulence_broaden,
    rotational_broaden,
    to_log_lambda_grid,
)
from .degradation import bin_average, degrade, degrade_spectrum
from .fourmost import (
    FOURMOST_HR,
    FOURMOST_HR_RESOLVING_POWER,
    FOURMOST_LR,
    FOURMOST_LR_RESOLVING_POWER,
    InstrumentSetup,
    LinearResolvingPower,
    fourmost_setup,
)
from .noise import add_noise, continuum_distortion, random_masks, snr_per_pixel

__all__ = [
    "FOURMOST_HR",
    "FOURMOST_HR_RESOLVING_POWER",
    "FOURMOST_LR",
    "FOURMOST_LR_RESOLVING_POWER",
    "InstrumentSetup",
    "LinearResolvingPower",
    "add_noise",
    "bin_average",
    "continuum_distortion",
    "degrade",
    "degrade_spectrum",
    "fourmost_setup",
    "from_log_lambda_grid",
    "gaussian_lsf_broaden",
    "macroturbulence_broaden",
    "random_masks",
    "rotational_broaden",
    "snr_per_pixel",
    "to_log_lambda_grid",
]
