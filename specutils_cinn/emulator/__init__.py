"""Neural emulator of synthetic spectra (The Payne style): labels to flux on a 4MOST grid.

Trained on Turbospectrum synthesis grids degraded to an instrument grid (after the
instrumental line-spread function, before rotation and noise), an emulator generates
unlimited noise-free training spectra for the cINN. Rotation is applied afterwards by
`emulate_spectra` with `specutils_cinn.instruments.rotational_broaden`.
"""

from __future__ import annotations

from ..parameters import EMULATOR_LABELS, SOLAR_A_LI, a_li_from_li_fe
from .accuracy import pixel_error, residual_statistics
from .io import EMULATOR_FORMAT, EMULATOR_FORMAT_VERSION, load_emulator, save_emulator
from .network import SpectrumEmulator
from .spectra import emulate_spectra
from .training import EmulatorConfig, train_emulator, validation_split

__all__ = [
    "EMULATOR_FORMAT",
    "EMULATOR_FORMAT_VERSION",
    "EMULATOR_LABELS",
    "SOLAR_A_LI",
    "EmulatorConfig",
    "SpectrumEmulator",
    "a_li_from_li_fe",
    "emulate_spectra",
    "load_emulator",
    "pixel_error",
    "save_emulator",
    "residual_statistics",
    "train_emulator",
    "validation_split",
]
