"""Radial velocities by cross-correlation against a model's emulated spectrum."""

from importlib import resources

import numpy as np
import pytest
from astropy import units as u
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.inputs import doppler_factor
from specutils_cinn.rv import emulated_template, estimate_radial_velocity


@pytest.fixture(scope="module")
def est():
    return CINNParameterEstimator.from_pretrained(device="cpu")


def _sun() -> Spectrum:
    path = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(path) as p:
        return Spectrum.read(p, format="tabular-fits")


def _shifted(sun: Spectrum, v_kms: float) -> Spectrum:
    return Spectrum(flux=sun.flux, spectral_axis=sun.spectral_axis * doppler_factor(
        v_kms * u.km / u.s), uncertainty=sun.uncertainty, mask=sun.mask)


def test_estimate_recovers_the_shifted_sun(est):
    sun = _sun()
    velocities = [0.0, 100.0, -250.0]
    res = estimate_radial_velocity(est, [_shifted(sun, v) for v in velocities])
    # the solar template (emulated LTE spectrum) against the real Sun: a zero point of
    # about +0.3 km/s; the statistical error at S/N 100 is about 0.05 km/s
    np.testing.assert_allclose(res.rv.to_value(u.km / u.s), velocities, atol=2.0)
    assert np.all((res.rv_err > 0.01 * u.km / u.s) & (res.rv_err < 1 * u.km / u.s))
    assert np.all(res.significance > 50)
    # outside the searched range: no estimate
    far = estimate_radial_velocity(est, _shifted(sun, 100.0), velocity_range=(-50, 50))
    assert np.isnan(far.rv[0]) and np.isnan(far.rv_err[0])


def test_template_labels(est):
    one = emulated_template(est)
    assert one.shape == (1, est.model.metadata.grid.npix) and np.nanmax(one) < 1.1
    hot = emulated_template(est, {"teff": 6800.0})
    depth = lambda t: np.nanmean(1 - t)  # noqa: E731
    assert depth(hot) < depth(one)
    with pytest.raises(ValueError, match="not parameters"):
        emulated_template(est, {"color": 1.0})


def test_no_emulator_no_estimate(est):
    import dataclasses

    from specutils_cinn.model import CINNModel

    md = dataclasses.replace(est.model.metadata, emulator=None)
    bare = CINNParameterEstimator(CINNModel(md, est.model.network), device="cpu")
    with pytest.raises(ValueError, match="no spectrum emulator"):
        estimate_radial_velocity(bare, _sun())
