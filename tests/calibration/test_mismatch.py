"""The model-mismatch term: kappa from spectra of a star with known labels."""

import numpy as np
import pytest

from specutils_cinn.calibration import PosteriorCalibration
from specutils_cinn.calibration.mismatch import (
    Z95,
    fit_mismatch_kappa,
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
    with_term = with_mismatch(base, {params[0]: 2.0}, 0.01, {"rule": "test"}, version="9.9.9")
    new = with_term.metadata.posterior_calibration
    assert new.mismatch == {params[0]: 2.0} and new.mismatch_tolerance == 0.01
    assert new.scale == cal.scale and new.info["mismatch"] == {"rule": "test"}
    assert with_term.metadata.unconstrained == (params[-1],)
    assert with_term.metadata.version == "9.9.9"
    assert with_term.network is model.network
    back = without_mismatch(with_term).metadata
    assert back.posterior_calibration.mismatch == {}
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
