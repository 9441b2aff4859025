"""A model's mask of poorly modeled pixels in inference: exactly a user's mask, minus the coverage.

The model's masked pixels must reach the network, the fit statistics and the S/N as pixels
without data, and must not count against the spectrum's coverage (``LOW_COVERAGE``).
"""

import dataclasses

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.flags import QualityFlag
from specutils_cinn.inputs import PixelMask, prepare_spectra
from specutils_cinn.model import CINNModel

#: Masked pixels of the linear-Gaussian problem's grid (centers 5000, 5001, ... 5023 A).
INTERVALS = [(5002.5, 5005.5), (5010.5, 5011.5), (5019.5, 5021.5)]


@pytest.fixture(scope="module")
def lg_masked(linear_gaussian_model):
    prob, model = linear_gaussian_model
    mask = PixelMask(INTERVALS, {"method": "test"})
    masked_model = CINNModel(model.metadata.replace(pixel_mask=mask), model.network)
    y, _ = prob.observations(n=6, seed=31)
    return (prob, CINNParameterEstimator(model, device="cpu"),
            CINNParameterEstimator(masked_model, device="cpu"), mask, y)


def _spectrum(prob, flux, mask=None):
    return Spectrum(flux=np.asarray(flux) * u.one, spectral_axis=prob.grid.wavelength,
                    uncertainty=StdDevUncertainty(np.full(np.shape(flux), prob.sigma)),
                    mask=mask)


def _same_hash(est):
    """Key every row's draws on the same content hash (a user's mask changes the hash)."""
    prepare = est._prepare

    def fixed(spectra, options):
        p = prepare(spectra, options)
        return dataclasses.replace(p, content_hash=np.arange(p.n_rows, dtype=np.uint64))

    est._prepare = fixed
    return est


def test_masked_pixels_on_the_model_grid(lg_masked):
    prob, _, est_m, mask, _ = lg_masked
    on = est_m.model.metadata.masked_pixels
    assert on.sum() == 6
    assert prob.grid.wavelength.value[on].tolist() == [5003, 5004, 5005, 5011, 5020, 5021]
    assert np.array_equal(on, mask.on_grid(prob.grid))


def test_the_model_mask_gives_the_result_of_the_user_masking_those_pixels(lg_masked):
    prob, est, est_m, mask, y = lg_masked
    on = mask.on_grid(prob.grid)
    user = _spectrum(prob, y, np.broadcast_to(on, y.shape))
    plain = _spectrum(prob, y)
    # what the network is given: the same arrays
    p_model, p_user = est_m.prepare(plain, normalize=False), est.prepare(user, normalize=False)
    for name in ("flux", "sigma", "valid", "snr", "flags"):
        np.testing.assert_array_equal(getattr(p_model, name), getattr(p_user, name), name)
    assert not p_model.valid[:, on].any()
    assert np.array_equal(p_model.pixel_mask, on) and p_user.pixel_mask is None
    # and the same posterior, fit statistics and flags; only the coverage differs
    kw = {"n_samples": 200, "seed": 3, "normalize": False, "progress": False}
    a = _same_hash(CINNParameterEstimator(est_m.model, device="cpu")).predict(plain, **kw)
    b = _same_hash(CINNParameterEstimator(est.model, device="cpu")).predict(user, **kw)
    for col in a.colnames:
        if col != "coverage":
            np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), err_msg=col)
    np.testing.assert_allclose(np.asarray(a["coverage"]), 1.0)
    np.testing.assert_allclose(np.asarray(b["coverage"]), 1.0 - on.mean())


def test_masked_pixels_do_not_reach_the_network(lg_masked):
    # garbage in the masked pixels changes nothing at all
    prob, _, est_m, mask, y = lg_masked
    on = mask.on_grid(prob.grid)
    garbage = np.where(on, 50.0, y)
    kw = {"n_samples": 100, "seed": 5, "normalize": False, "progress": False}
    a = _same_hash(CINNParameterEstimator(est_m.model, device="cpu")).predict(
        _spectrum(prob, y), **kw)
    b = _same_hash(CINNParameterEstimator(est_m.model, device="cpu")).predict(
        _spectrum(prob, garbage), **kw)
    for col in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), err_msg=col)


def test_coverage_is_over_the_unmasked_pixels(lg_masked):
    prob, est, est_m, mask, y = lg_masked
    on = mask.on_grid(prob.grid)
    # the user's spectrum misses 13 of the 18 unmasked pixels (and one masked one)
    wl = prob.grid.wavelength.value
    missing = (wl >= 5006) & (wl <= 5019)
    assert missing[~on].sum() == 13 and missing[on].sum() == 1
    spec = _spectrum(prob, y[:1], missing[None, :])
    kw = {"n_samples": 50, "seed": 1, "normalize": False, "progress": False}
    t_m, t = est_m.predict(spec, **kw), est.predict(spec, **kw)
    assert t_m["coverage"][0] == pytest.approx(1 - 13 / 18)
    assert int(t_m["flags"][0]) & int(QualityFlag.LOW_COVERAGE)
    assert t["coverage"][0] == pytest.approx(1 - 14 / 24)
    # a spectrum whose only missing pixels are the masked ones has full coverage
    only_masked = est_m.predict(_spectrum(prob, y[:1], on[None, :]), **kw)
    assert only_masked["coverage"][0] == 1.0
    assert not int(only_masked["flags"][0]) & int(QualityFlag.LOW_COVERAGE)


def test_fit_statistics_and_snr_ignore_the_masked_pixels(lg_masked):
    prob, est, est_m, mask, y = lg_masked
    on = mask.on_grid(prob.grid)
    # pixels of very different S/N where the mask is: the snr median does not see them
    sigma = np.where(on, 10 * prob.sigma, prob.sigma)
    spec = Spectrum(flux=y * u.one, spectral_axis=prob.grid.wavelength,
                    uncertainty=StdDevUncertainty(np.broadcast_to(sigma, y.shape)))
    p_m, p = est_m.prepare(spec, normalize=False), est.prepare(spec, normalize=False)
    ratio = y / sigma
    np.testing.assert_allclose(p_m.snr, np.median(ratio[:, ~on], axis=1), rtol=1e-5)
    np.testing.assert_allclose(p.snr, np.median(ratio, axis=1), rtol=1e-5)
    # fit statistics (model with an emulator): garbage in masked pixels does not move them
    # (a mask of 3 pixels: the fit needs 20)
    from test_estimator import _exact_emulator

    small = PixelMask([(5010.5, 5013.5)])
    on = small.on_grid(prob.grid)
    fitted = est.model.attach_emulator(_exact_emulator(prob), 0.0, chi2_threshold=3.0,
                                       continuum_degree=0)
    fitted = CINNModel(fitted.metadata.replace(pixel_mask=small), fitted.network,
                       emulator=fitted.emulator)
    est_f = CINNParameterEstimator(fitted, device="cpu")
    values = np.zeros((len(y), 2))
    clean = est_f.fit_statistics(est_f.prepare(_spectrum(prob, y), normalize=False), values)
    dirty = est_f.fit_statistics(
        est_f.prepare(_spectrum(prob, np.where(on, 5.0, y)), normalize=False), values)
    np.testing.assert_array_equal(clean.chi2, dirty.chi2)
    np.testing.assert_array_equal(clean.mismatch, dirty.mismatch)
    assert np.all(np.isfinite(clean.chi2))
    unmasked = CINNParameterEstimator(CINNModel(fitted.metadata.replace(pixel_mask=None),
                                                fitted.network, emulator=fitted.emulator),
                                      device="cpu")
    moved = unmasked.fit_statistics(
        unmasked.prepare(_spectrum(prob, np.where(on, 5.0, y)), normalize=False), values)
    assert np.all(moved.chi2 > 10 * clean.chi2)


def test_prepare_spectra_masks_before_the_continuum_fit():
    # with a fitted continuum, the model's mask is the user's mask: the masked pixels are left
    # out of the fit (a deep feature there would otherwise pull the continuum down)
    from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

    grid = WavelengthGrid((GridSegment("A", 5000.0, 5099.0, 1.0),
                           GridSegment("B", 6000.0, 6049.0, 1.0)))
    wl = grid.wavelength.value
    rng = np.random.default_rng(3)
    flux = (2.0 + 1e-3 * (wl - 5000)) * (1 - 0.5 * np.exp(-0.5 * ((wl - 5040) / 2) ** 2))
    flux = flux[None, :] * (1 + 0.01 * rng.normal(size=(3, wl.size)))
    mask = PixelMask([(5035.5, 5045.5), (6010.0, 6012.0)])
    on = mask.on_grid(grid)
    unc = StdDevUncertainty(0.02 * flux)
    plain = Spectrum(flux=flux * u.one, spectral_axis=grid.wavelength, uncertainty=unc)
    user = Spectrum(flux=flux * u.one, spectral_axis=grid.wavelength, uncertainty=unc,
                    mask=np.broadcast_to(on, flux.shape))
    a = prepare_spectra(plain, grid, normalize=True, pixel_mask=mask)
    b = prepare_spectra(user, grid, normalize=True)
    for name in ("flux", "sigma", "valid", "snr", "flags"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
    np.testing.assert_allclose(a.coverage, 1.0)
    np.testing.assert_allclose(b.coverage, 1 - on.mean())
    # the same with the boolean array
    c = prepare_spectra(plain, grid, normalize=True, pixel_mask=on)
    np.testing.assert_array_equal(a.flux, c.flux)
    with pytest.raises(ValueError, match="boolean array of 150"):
        prepare_spectra(plain, grid, pixel_mask=on[:10])
    with pytest.raises(ValueError, match="boolean array"):
        prepare_spectra(plain, grid, pixel_mask=on.astype(int))


def test_radial_velocity_search_uses_the_model_mask(lg_masked, monkeypatch):
    from specutils_cinn import rv

    prob, _, est_m, mask, y = lg_masked
    seen = {}

    def spy(model, prepared, template, velocity_range, **kw):
        seen["prepared"] = prepared
        raise RuntimeError("stop")

    monkeypatch.setattr(rv, "velocity_of_prepared", spy)
    monkeypatch.setattr(rv, "emulated_template", lambda model, labels: np.ones((1, prob.npix)))
    with pytest.raises(RuntimeError, match="stop"):
        rv.estimate_radial_velocity(est_m, _spectrum(prob, y[:1]))
    assert np.array_equal(seen["prepared"].pixel_mask, mask.on_grid(prob.grid))
    assert not seen["prepared"].valid[0, mask.on_grid(prob.grid)].any()
