"""The model-mismatch term: kappa from spectra of a star with known labels."""

import numpy as np
import pytest

from specutils_cinn.calibration import PosteriorCalibration
from specutils_cinn.calibration.mismatch import (
    Z95,
    fit_mismatch_coverage_power,
    fit_mismatch_kappa,
    fitted_coverage_range,
    mismatch_excess,
    mismatch_tolerance,
    with_mismatch,
    without_mismatch,
)
from specutils_cinn.model import CINNModel


def _quantiles(median, half_width):
    m, w = np.asarray(median, float), np.asarray(half_width, float)
    return np.column_stack([m - 2 * w, m - w, m, m + w, m + 2 * w])


def test_kappa_is_the_smallest_that_contains_the_reference():
    # offsets 0.3 and 0.1 with 68 % half widths 0.1; mismatch amplitudes 0.02 and 0.01
    q = {"logg": _quantiles([4.74, 4.54], [0.1, 0.1]), "vmic": _quantiles([1.0, 1.0], [0.1, 0.1])}
    amp = np.array([0.02, 0.01])
    kappa = fit_mismatch_kappa(q, amp, tolerance=0.0, reference={"logg": 4.44}, margin=1.0)
    assert set(kappa) == {"logg"}  # no reference, no term
    need = np.sqrt(np.clip((np.array([0.3, 0.1]) / Z95) ** 2 - 0.1**2, 0, None)) / amp
    assert kappa["logg"] == pytest.approx(need.max(), abs=1e-4)
    # with it, the reference lies on the edge of the 95 % interval of the worst spectrum
    width = np.sqrt(0.1**2 + (kappa["logg"] * 0.02) ** 2)
    assert Z95 * width == pytest.approx(0.3, abs=1e-3)
    # a margin scales it; spectra within the tolerance are never widened, so need more
    assert fit_mismatch_kappa(q, amp, 0.0, {"logg": 4.44}, margin=1.25)["logg"] == pytest.approx(
        1.25 * kappa["logg"], abs=1e-3)
    assert fit_mismatch_kappa(q, amp, 0.015, {"logg": 4.44}, 1.0)["logg"] > kappa["logg"]


def test_spectra_within_the_tolerance_do_not_drive_kappa():
    """A spectrum the term cannot widen (fit_mismatch at or below A0) that misses the reference
    is left out of the fit: kappa stays what the widened spectra need, not ~1e6 times more."""
    q = {"fe_h": _quantiles([-0.3, 0.25], [0.05, 0.05])}
    amp = np.array([0.010, 0.05])  # the first is within the tolerance 0.02
    kappa = fit_mismatch_kappa(q, amp, 0.02, {"fe_h": 0.0}, margin=1.0)["fe_h"]
    excess = np.sqrt(0.05**2 - 0.02**2)
    assert kappa == pytest.approx(np.sqrt((0.25 / Z95) ** 2 - 0.05**2) / excess, abs=1e-3)
    assert 1.0 < kappa < 10.0
    # nothing can be widened: no term
    assert fit_mismatch_kappa(q, np.array([0.01, 0.01]), 0.02, {"fe_h": 0.0})["fe_h"] == 0.0


def test_contained_reference_needs_no_term():
    q = {"teff": _quantiles([5780.0], [50.0])}
    assert fit_mismatch_kappa(q, np.array([0.05]), 0.0)["teff"] == 0.0


def _widened_half_width(q, amp, cov, kappa, gamma, tolerance):
    """Half widths after PosteriorCalibration.mismatch_widening (the estimator's code path)."""
    import torch

    cal = PosteriorCalibration({}, {}, mismatch={"fe_h": kappa}, mismatch_tolerance=tolerance,
                               mismatch_coverage_power={"fe_h": gamma})
    k = cal.mismatch_widening(torch.tensor(q[:, [1]]), torch.tensor(q[:, [3]]),
                              torch.tensor(amp), ["fe_h"], coverage=torch.tensor(cov))
    return 0.5 * (q[:, 3] - q[:, 1]) * k[:, 0].numpy()


def test_coverage_power_keeps_full_spectra_narrow():
    """Two full spectra with a small offset and a large residual, two half spectra with a large
    offset and a small residual (the HARPS and UVES Sun): without a coverage power the half
    spectra set kappa and widen the full ones; the fitted power lets each carry its own."""
    q = {"fe_h": _quantiles([-0.06, -0.05, -0.2, -0.22], [0.03, 0.03, 0.04, 0.04])}
    amp = np.array([0.012, 0.011, 0.008, 0.009])
    cov = np.array([1.0, 1.0, 0.5, 0.5])
    tol = 0.005
    gamma = fit_mismatch_coverage_power(q, amp, cov, tol, {"fe_h": 0.0}, margin=1.0)["fe_h"]
    assert gamma > 0
    k0 = fit_mismatch_kappa(q, amp, tol, {"fe_h": 0.0}, margin=1.0)["fe_h"]
    kg = fit_mismatch_kappa(q, amp, tol, {"fe_h": 0.0}, 1.0, cov, {"fe_h": gamma})["fe_h"]
    w0 = _widened_half_width(q["fe_h"], amp, cov, k0, 0.0, tol)
    wg = _widened_half_width(q["fe_h"], amp, cov, kg, gamma, tol)
    assert np.all(wg[:2] < 0.7 * w0[:2])  # the full spectra much narrower
    assert np.mean(np.log(wg)) < np.mean(np.log(w0))
    # the reference still inside every 95 % interval (the fit's margin is 1: on the edge)
    offset = np.abs(q["fe_h"][:, 2])
    assert np.all(offset <= Z95 * wg * (1 + 1e-3))
    assert np.any(np.isclose(offset, Z95 * wg, rtol=1e-3))
    # the same excess as the widening's
    e = mismatch_excess(amp, tol, cov, gamma)
    np.testing.assert_allclose(wg, np.sqrt((0.5 * (q["fe_h"][:, 3] - q["fe_h"][:, 1])) ** 2
                                           + (kg * e) ** 2))


def test_coverage_power_is_zero_when_coverage_does_not_matter():
    q = {"fe_h": _quantiles([-0.2, -0.1], [0.03, 0.03]), "vmic": _quantiles([1, 1], [0.1, 0.1])}
    amp = np.array([0.02, 0.01])
    same = fit_mismatch_coverage_power(q, amp, np.array([0.8, 0.8]), 0.005, {"fe_h": 0.0})
    assert same == {"fe_h": 0.0}
    # a contained reference needs no term, so no power either
    inside = {"fe_h": _quantiles([-0.01, 0.01], [0.03, 0.03])}
    assert fit_mismatch_coverage_power(inside, amp, np.array([1.0, 0.5]), 0.005,
                                       {"fe_h": 0.0}) == {"fe_h": 0.0}
    with pytest.raises(ValueError, match="powers"):
        fit_mismatch_coverage_power(q, amp, np.array([1.0, 0.5]), 0.005, powers=[])
    with pytest.raises(ValueError, match="powers"):
        fit_mismatch_coverage_power(q, amp, np.array([1.0, 0.5]), 0.005, powers=[0, -1])
    with pytest.raises(ValueError, match="one value per spectrum"):
        fit_mismatch_coverage_power(q, amp, np.array([1.0]), 0.005)


def test_fitted_coverage_range():
    assert fitted_coverage_range(np.array([0.7414, np.nan, 0.9801])) == (0.741, 0.981)
    assert fitted_coverage_range(np.array([0.01, 1.0])) == (0.05, 1.0)
    with pytest.raises(ValueError, match="no finite coverage"):
        fitted_coverage_range(np.array([np.nan]))


def test_tolerance_is_a_quantile():
    amp = np.array([0.0, 0.01, 0.02, 0.03, np.nan])
    assert mismatch_tolerance(amp, 0.5) == pytest.approx(0.015)
    assert mismatch_tolerance(amp, 1.0) == pytest.approx(0.03)


def test_with_and_without_mismatch_round_trip(linear_gaussian_model):
    _, model = linear_gaussian_model
    params = model.metadata.parameter_names
    cal = PosteriorCalibration(dict.fromkeys(params, 1.5), dict.fromkeys(params, 0.0),
                               {"not_calibrated": {"parameters": [params[-1]]}})
    base = CINNModel(model.metadata.replace(posterior_calibration=cal), model.network)
    with_term = with_mismatch(base, {params[0]: 2.0}, 0.01, {"rule": "test"}, version="9.9.9",
                              coverage_power={params[0]: 1.5, params[1]: 0.0},
                              coverage_range=(0.7, 0.98))
    new = with_term.metadata.posterior_calibration
    assert new.mismatch_coverage_range == (0.7, 0.98)
    assert new.mismatch == {params[0]: 2.0} and new.mismatch_tolerance == 0.01
    assert new.mismatch_coverage_power == {params[0]: 1.5}  # zeros are not stored
    assert new.scale == cal.scale and new.info["mismatch"] == {"rule": "test"}
    assert with_term.metadata.unconstrained == (params[-1],)
    assert with_term.metadata.version == "9.9.9"
    assert with_term.network is model.network
    back = without_mismatch(with_term).metadata
    assert back.posterior_calibration.mismatch == {}
    assert back.posterior_calibration.mismatch_coverage_power == {}
    assert "mismatch" not in back.posterior_calibration.info
    assert back.unconstrained == ()


def test_the_mismatch_term_keeps_a_width_dependent_scale(linear_gaussian_model):
    """Adding or removing the term keeps every other part of the calibration (the first
    v2.1.0 run lost its width_scale here)."""
    _, model = linear_gaussian_model
    params = model.metadata.parameter_names
    cal = PosteriorCalibration({}, {params[0]: 0.0},
                               width_scale={params[0]: [[0.1, 0.8], [1.0, 1.0]]})
    base = CINNModel(model.metadata.replace(posterior_calibration=cal), model.network)
    with_term = with_mismatch(base, {params[0]: 2.0}, 0.01, {"rule": "test"})
    assert with_term.metadata.posterior_calibration.width_scale == cal.width_scale
    back = without_mismatch(with_term).metadata.posterior_calibration
    assert back.width_scale == cal.width_scale and back.mismatch == {}
