"""The flags the estimator adds to its output rows (specutils_cinn.quality)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn.fit_check import FEATURE_SIGMA_MIN, FitStatistics
from specutils_cinn.flags import RESOLUTION_TOLERANCE, QualityFlag
from specutils_cinn.inputs import prepare_spectra
from specutils_cinn.quality import (
    EDGE_FRACTION,
    meta_resolving_power,
    output_flags,
    poor_fit_threshold,
    row_resolving_power,
    typical_resolving_power,
    velocity_offset,
)

F = QualityFlag


@pytest.mark.parametrize(
    ("meta", "expected"),
    [({"resolving_power": 20000}, 20000.0), ({"resolving_power": "6500"}, 6500.0),
     ({"resolving_power": {"HR": 18000, "LR": 22000.0, "note": True}}, 20000.0),
     ({"resolving_power": {"note": "high"}}, np.nan), ({"resolving_power": -5}, np.nan),
     ({"resolving_power": np.inf}, np.nan), ({"resolving_power": "high"}, np.nan),
     ({}, np.nan), (None, np.nan)],
)
def test_meta_resolving_power(meta, expected):
    assert np.array_equal(meta_resolving_power(meta), expected, equal_nan=True)


@pytest.fixture(scope="module")
def lg(linear_gaussian_model):
    prob, model = linear_gaussian_model
    y, x = prob.observations(n=3, seed=4)

    def spectrum(flux, meta=None):
        return Spectrum(flux=np.asarray(flux) * u.one, spectral_axis=prob.grid.wavelength,
                        uncertainty=StdDevUncertainty(np.full(np.shape(flux), prob.sigma)),
                        meta=meta or {})

    return model, y, spectrum


def test_row_resolving_power_follows_nested_inputs(lg):
    model, y, spectrum = lg
    grid = model.metadata.grid
    inputs = [spectrum(y[0], {"resolving_power": 5000}), [spectrum(y[1]),
                                                         spectrum(y[2], {"resolving_power": 7})]]
    prepared = prepare_spectra(inputs, grid, normalize=False)
    assert np.array_equal(row_resolving_power(inputs, prepared), [5000.0, np.nan, 7.0],
                          equal_nan=True)
    plain = [spectrum(y[0]), spectrum(y[1])]
    assert row_resolving_power(plain, prepare_spectra(plain, grid, normalize=False)) is None


def test_poor_fit_threshold():
    no_emulator = SimpleNamespace(emulator=None)
    with_emulator = SimpleNamespace(emulator=SimpleNamespace(chi2_threshold=3.0))
    assert poor_fit_threshold(no_emulator, 2.0) is None
    assert poor_fit_threshold(with_emulator) == 3.0
    assert poor_fit_threshold(with_emulator, np.float32(2)) == 2.0


def test_output_flags_one_reason_each(lg):
    model, y, spectrum = lg
    md = model.metadata
    rows = 8
    prepared = prepare_spectra(spectrum(np.repeat(y[:1], rows, axis=0)), md.grid,
                               normalize=False)
    lo, hi = md.ranges[:, 0], md.ranges[:, 1]
    center = 0.5 * (lo + hi)
    median = np.tile(center, (rows, 1))
    median[1, 0] = hi[0] - 0.5 * EDGE_FRACTION * (hi[0] - lo[0])  # inside, near the edge
    median[2, 1] = lo[1] - 1.0  # outside
    snr = np.full(rows, md.snr_range[0])
    snr[3], snr[4] = md.snr_range[0] - 1, md.snr_range[1] + 1
    rp = np.full(rows, np.nan)
    rp[5] = typical_resolving_power(md) * (1 - 1.5 * RESOLUTION_TOLERANCE)
    chi2, sigma = np.ones(rows), np.full(rows, 100.0)
    chi2[6], sigma[7] = 10.0, FEATURE_SIGMA_MIN / 2
    offset = np.zeros(rows, bool)
    offset[0] = True
    flagged = dataclasses.replace(prepared, snr=snr, resolving_power=rp)
    fit = FitStatistics(chi2, sigma, np.zeros(rows))
    flags = output_flags(md, flagged, median, fit=fit, threshold=3.0, offset=offset)
    assert flags.dtype == np.int32
    assert [F(int(f)) for f in flags] == [
        F.VELOCITY_OFFSET, F.PARAMETER_AT_EDGE, F.PARAMETER_AT_EDGE | F.OUTSIDE_TRAINING_RANGE,
        F.LOW_SNR, F.HIGH_SNR, F.RESOLUTION_MISMATCH, F.POOR_FIT, F.NO_FEATURES,
    ]
    # without a threshold (a model without emulator) neither fit flag is set
    quiet = output_flags(md, flagged, median, fit=fit, threshold=None)
    assert not np.any(quiet & (F.POOR_FIT | F.NO_FEATURES | F.VELOCITY_OFFSET))
    # the input's own flags are kept, and a row with nothing wrong gets none
    own = np.zeros(rows, np.int32)
    own[0] = F.NOISE_ESTIMATED
    clean = dataclasses.replace(prepared, snr=np.full(rows, md.snr_range[0]), flags=own)
    assert output_flags(md, clean, np.tile(center, (rows, 1))).tolist() == own.tolist()


def test_velocity_offset_is_false_without_an_emulator(lg):
    model, y, spectrum = lg
    assert model.emulator is None
    prepared = prepare_spectra(spectrum(y), model.metadata.grid, normalize=False)
    assert velocity_offset(model, prepared).tolist() == [False, False, False]
