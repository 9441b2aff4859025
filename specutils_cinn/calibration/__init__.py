"""Calibrating a model: its posterior widths and its goodness-of-fit flag.

`specutils_cinn.calibration.posterior` (re-exported here) holds `PosteriorCalibration`, the
widening of posterior draws stored in a model's metadata, and `fit_posterior_calibration`.
The release drivers that fit a model's calibrations on held-out or observed spectra run the
estimator, so they live in submodules imported explicitly (``specutils-cinn calibrate ...``):

- `specutils_cinn.calibration.fit_flag`: attach a spectrum emulator, measure its error floor
  and choose the ``POOR_FIT`` threshold;
- `specutils_cinn.calibration.heldout`: fit the posterior calibration on held-out
  Turbospectrum stars, two-fold cross-fitted;
- `specutils_cinn.calibration.mismatch`: the model-mismatch term fitted on observed spectra.
"""

from __future__ import annotations

from .posterior import (
    CALIBRATION_LEVELS,
    CROSS_FIT_RULE,
    LEGACY_CROSS_FIT_RULE,
    MISMATCH_MIN_COVERAGE,
    PosteriorCalibration,
    central_coverage,
    cross_fit_fold,
    fit_posterior_calibration,
)

__all__ = [
    "CALIBRATION_LEVELS",
    "CROSS_FIT_RULE",
    "LEGACY_CROSS_FIT_RULE",
    "MISMATCH_MIN_COVERAGE",
    "PosteriorCalibration",
    "central_coverage",
    "cross_fit_fold",
    "fit_posterior_calibration",
]
