"""Held-out spectra for a model: noisy realizations, subsets and the estimator runs on them."""

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.calibration import (
    CROSS_FIT_RULE,
    LEGACY_CROSS_FIT_RULE,
    PosteriorCalibration,
    cross_fit_fold,
)
from specutils_cinn.model import CINNModel
from specutils_cinn.validation.heldout import (
    cross_fitted_estimators,
    noisy_spectrum,
    run_heldout,
    subset_spectrum,
)


def test_noisy_spectrum_is_reproducible_and_has_the_snr():
    wave = np.linspace(5000.0, 5100.0, 2001) * u.AA
    width = np.full(wave.size, 0.05)
    flux = np.ones((40, wave.size))
    a = noisy_spectrum(flux, wave, width, 100.0, seed=3)
    b = noisy_spectrum(flux, wave, width, 100.0, seed=3)
    np.testing.assert_array_equal(a.flux.value, b.flux.value)
    assert a.flux.shape == flux.shape and isinstance(a.uncertainty, StdDevUncertainty)
    # S/N 100 per Angstrom on 0.05 A pixels: sigma = 1 / (100 sqrt(0.05)) at the continuum
    expected = 1.0 / (100.0 * np.sqrt(0.05))
    assert abs(np.std(a.flux.value - 1.0) / expected - 1.0) < 0.05
    assert not np.array_equal(noisy_spectrum(flux, wave, width, 100.0, seed=4).flux.value,
                              a.flux.value)


def test_subset_spectrum_keeps_rows_and_uncertainties():
    wave = np.linspace(5000.0, 5010.0, 11) * u.AA
    flux = np.arange(33.0).reshape(3, 11)
    spec = Spectrum(flux=flux * u.one, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(flux / 10))
    sub = subset_spectrum(spec, np.array([2, 0]))
    np.testing.assert_array_equal(sub.flux.value, flux[[2, 0]])
    np.testing.assert_array_equal(sub.uncertainty.array, flux[[2, 0]] / 10)


@pytest.mark.parametrize("rule", [None, CROSS_FIT_RULE])
def test_cross_fitted_runs_keep_input_order(linear_gaussian_model, rule):
    """Rows stay in input order, and each star gets the calibration fitted on the other fold
    by the rule the calibration recorded (the legacy rule where it recorded none)."""
    prob, model = linear_gaussian_model
    md = model.metadata
    params = md.parameter_names
    assert cross_fitted_estimators(CINNParameterEstimator(model, device="cpu")) is None
    folds = {"A": {"scale": dict.fromkeys(params, 1.0), "floor": dict.fromkeys(params, 0.0)},
             "B": {"scale": dict.fromkeys(params, 3.0), "floor": dict.fromkeys(params, 0.0)}}
    record = {"folds": folds} if rule is None else {"folds": folds, "rule": rule}
    cal = PosteriorCalibration(dict.fromkeys(params, 2.0), dict.fromkeys(params, 0.0),
                               {"cross_validation": record})
    est = CINNParameterEstimator(CINNModel(md.replace(posterior_calibration=cal), model.network),
                                 device="cpu")
    cross = cross_fitted_estimators(est)
    assert cross is not None and cross.rule == (rule or LEGACY_CROSS_FIT_RULE)
    y, truth = prob.observations(n=6, seed=2)
    spec = Spectrum(flux=y * u.one, spectral_axis=md.grid.wavelength,
                    uncertainty=StdDevUncertainty(np.full(y.shape, prob.sigma)))
    star = np.array([0, 10, 20, 30, 40, 50])  # the legacy rule: star_id // 10 parity
    if rule is not None:  # ids with both folds under the hashed rule
        star = np.flatnonzero(cross_fit_fold(np.arange(40)))[:3]
        star = np.concatenate([star, np.flatnonzero(~cross_fit_fold(np.arange(40)))[:3]])
    run = run_heldout(est, cross, spec, star, "test", truth, n_samples=200, seed=1)
    plain = run_heldout(est, None, spec, star, "test", truth, n_samples=200, seed=1)
    assert len(run.table) == 6 and run.truth is truth
    # medians are the calibration's fixed point: the same row order whatever the folds
    for p in params:
        np.testing.assert_allclose(run.table[p].value, plain.table[p].value, rtol=0.05,
                                   atol=0.05 * np.std(truth))
    # fold A gets fold B's wider calibration and vice versa
    in_a = cross_fit_fold(star, cross.rule)
    assert in_a.any() and not in_a.all()
    std = np.asarray(run.table[f"{params[0]}_std"].value)
    assert np.all(std[in_a].mean() > std[~in_a].mean())
