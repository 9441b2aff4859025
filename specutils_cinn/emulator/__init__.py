"""Neural emulator of synthetic spectra (The Payne style): labels to flux on a 4MOST grid.

Trained on Turbospectrum synthesis grids degraded to an instrument grid (after the
instrumental line-spread function, before rotation and noise), an emulator generates
unlimited noise-free training spectra for the cINN. Rotation is applied afterwards by
`emulate_spectra` with `specutils_cinn.instruments.rotational_broaden`.

The release stages (``specutils-cinn emulator ...``): `specutils_cinn.emulator.prepare` makes
the training data and the held-out test sets from a synthesis grid, `train_from_config` trains
an emulator from ``configs/emulator-4most-*.toml`` and `measure_pixel_error` writes its error
per pixel (`specutils_cinn.emulator.pipeline`).
"""

from __future__ import annotations

from ..parameters import EMULATOR_LABELS, SOLAR_A_LI, a_li_from_li_fe
from .accuracy import hat_weights, pixel_error, residual_statistics, teff_nodes
from .io import EMULATOR_FORMAT, EMULATOR_FORMAT_VERSION, load_emulator, save_emulator
from .network import EMULATOR_KINDS, SpectrumEmulator
from .pipeline import (
    load_training_data,
    measure_pixel_error,
    read_emulator_config,
    train_and_save,
    train_from_config,
    validation_rows,
)
from .spectra import emulate_spectra
from .training import EmulatorConfig, train_emulator, validation_split

__all__ = [
    "EMULATOR_FORMAT",
    "EMULATOR_FORMAT_VERSION",
    "EMULATOR_KINDS",
    "EMULATOR_LABELS",
    "SOLAR_A_LI",
    "EmulatorConfig",
    "SpectrumEmulator",
    "a_li_from_li_fe",
    "emulate_spectra",
    "hat_weights",
    "load_emulator",
    "load_training_data",
    "measure_pixel_error",
    "pixel_error",
    "read_emulator_config",
    "residual_statistics",
    "save_emulator",
    "teff_nodes",
    "train_and_save",
    "train_emulator",
    "train_from_config",
    "validation_rows",
    "validation_split",
]
