"""Instrument models: the 4MOST setups, line broadening, rotation and the noise model.

`degrade` (rotation, macroturbulence, line-spread function, pixel binning) turns
high-resolution synthetic spectra into spectra on a 4MOST setup's pixels (the emulator's
training data and the validation pages' held-out stars);
``instruments.rotation.BinnedRotation`` rotates and shifts spectra that are already binned,
in torch, for the training simulator and the fit check. `draw_noise` is the one noise model:
training (`specutils_cinn.training.augment_batch`) and the validation pages (through
`add_noise`) both use it.
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
from .noise import NOISE_FLOOR, add_noise, draw_noise, snr_per_pixel

__all__ = [
    "FOURMOST_HR",
    "FOURMOST_HR_RESOLVING_POWER",
    "FOURMOST_LR",
    "FOURMOST_LR_RESOLVING_POWER",
    "InstrumentSetup",
    "LinearResolvingPower",
    "NOISE_FLOOR",
    "add_noise",
    "bin_average",
    "degrade",
    "degrade_spectrum",
    "draw_noise",
    "fourmost_setup",
    "from_log_lambda_grid",
    "gaussian_lsf_broaden",
    "macroturbulence_broaden",
    "rotational_broaden",
    "snr_per_pixel",
    "to_log_lambda_grid",
]
