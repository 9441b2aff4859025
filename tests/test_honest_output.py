"""Honest output on real stars: the model-mismatch term, fit_mismatch and physical support."""

import numpy as np
import pytest
import torch

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.calibration import PosteriorCalibration
from specutils_cinn.model import CINNModel


def test_mismatch_widening_factor():
    cal = PosteriorCalibration({"teff": 1.0}, {"teff": 0.0}, mismatch={"teff": 1000.0},
                               mismatch_tolerance=0.01)
    q16 = torch.tensor([[5700.0, 4.0], [5700.0, 4.0], [5700.0, 4.0]], dtype=torch.float64)
    q84 = q16 + torch.tensor([60.0, 0.2], dtype=torch.float64)  # half widths 30 K and 0.1
    amp = torch.tensor([0.005, 0.02, float("nan")], dtype=torch.float64)
    k = cal.mismatch_widening(q16, q84, amp, ["teff", "logg"])
    excess = np.sqrt(0.02**2 - 0.01**2)
    np.testing.assert_allclose(k[:, 0].numpy(), [1.0, np.sqrt(1 + (1000 * excess / 30) ** 2), 1])
    np.testing.assert_array_equal(k[:, 1].numpy(), [1.0, 1.0, 1.0])  # no kappa for logg
    # a coverage power divides the excess by coverage**gamma (NaN coverage counts as 1, and
    # coverage below MISMATCH_MIN_COVERAGE as that)
    from specutils_cinn.calibration import MISMATCH_MIN_COVERAGE

    cov = PosteriorCalibration({"teff": 1.0}, {"teff": 0.0}, mismatch={"teff": 1000.0},
                               mismatch_tolerance=0.01, mismatch_coverage_power={"teff": 1.5})
    c = torch.tensor([0.5, float("nan"), 0.0], dtype=torch.float64)
    amp = torch.full((3,), 0.02, dtype=torch.float64)
    k = cov.mismatch_widening(q16, q84, amp, ["teff", "logg"], coverage=c)
    scaled = 1000 * excess / np.array([0.5, 1.0, MISMATCH_MIN_COVERAGE]) ** 1.5
    np.testing.assert_allclose(k[:, 0].numpy(), np.sqrt(1 + (scaled / 30) ** 2))
    # the coverage is clipped to the range the term was fitted on
    ranged = PosteriorCalibration({"teff": 1.0}, {"teff": 0.0}, mismatch={"teff": 1000.0},
                                  mismatch_tolerance=0.01, mismatch_coverage_power={"teff": 1.5},
                                  mismatch_coverage_range=(0.7, 0.9))
    c = torch.tensor([0.5, 0.8, 1.0], dtype=torch.float64)
    k = ranged.mismatch_widening(q16, q84, amp, ["teff", "logg"], coverage=c)
    scaled = 1000 * excess / np.array([0.7, 0.8, 0.9]) ** 1.5
    np.testing.assert_allclose(k[:, 0].numpy(), np.sqrt(1 + (scaled / 30) ** 2))
    # without coverage the power is not used
    np.testing.assert_allclose(cov.mismatch_widening(q16, q84, amp, ["teff"])[:, 0].numpy(),
                               np.sqrt(1 + (1000 * excess / 30) ** 2))


def test_mismatch_round_trip_and_validation():
    cal = PosteriorCalibration({"teff": 1.2}, {"teff": 5.0}, {"x": 1},
                               mismatch={"teff": 800.0}, mismatch_tolerance=0.008)
    back = PosteriorCalibration.from_dict(cal.to_dict())
    assert back == cal
    old = PosteriorCalibration.from_dict({"scale": {"teff": 1.1}, "floor": {}})
    assert old.mismatch == {} and "mismatch" not in old.to_dict()
    with pytest.raises(ValueError, match="mismatch"):
        PosteriorCalibration({}, {}, mismatch={"teff": -1.0})
    with pytest.raises(ValueError, match="mismatch_tolerance"):
        PosteriorCalibration({}, {}, mismatch_tolerance=float("nan"))
    powered = PosteriorCalibration({}, {}, mismatch={"teff": 800.0},
                                   mismatch_coverage_power={"teff": 2.0})
    assert PosteriorCalibration.from_dict(powered.to_dict()) == powered
    assert "mismatch_coverage_power" not in cal.to_dict()
    with pytest.raises(ValueError, match="mismatch_coverage_power"):
        PosteriorCalibration({}, {}, mismatch_coverage_power={"teff": -1.0})
    ranged = PosteriorCalibration({}, {}, mismatch={"teff": 800.0},
                                  mismatch_coverage_power={"teff": 2.0},
                                  mismatch_coverage_range=(0.7, 0.98))
    assert PosteriorCalibration.from_dict(ranged.to_dict()) == ranged
    for bad in ((0.0, 1.0), (0.9, 0.8), (0.5, 1.2), (0.5,), "ab"):
        with pytest.raises(ValueError, match="mismatch_coverage_range"):
            PosteriorCalibration({}, {}, mismatch_coverage_range=bad)
    with pytest.raises(ValueError, match="mismatch_coverage_power must be an object"):
        PosteriorCalibration.from_dict({"scale": {}, "floor": {}, "mismatch_coverage_power": 2})


@pytest.fixture(scope="module")
def sun():
    from importlib.resources import files

    from specutils import Spectrum

    return Spectrum.read(files("specutils_cinn") / "data" / "sun_4most_hr_example.fits",
                         format="tabular-fits")


def _without_mismatch(est):
    """The bundled model without its mismatch term and unconstrained declaration."""
    md = est.model.metadata
    cal = md.posterior_calibration
    base = md.replace(posterior_calibration=PosteriorCalibration(cal.scale, cal.floor, cal.info),
                      unconstrained=())
    return CINNParameterEstimator(CINNModel(base, est.model.network, emulator=est.model.emulator))


def test_bundled_hr_model_holds_the_sun_in_its_95_percent_intervals(sun):
    est = CINNParameterEstimator.from_pretrained("4most-hr")
    assert est.model.metadata.posterior_calibration.mismatch["fe_h"] > 0
    q = (0.025, 0.975)
    t = est.predict(sun, n_samples=1000, seed=4, quantiles=q)
    plain = _without_mismatch(est).predict(sun, n_samples=1000, seed=4, quantiles=q)
    for p, ref in (("teff", 5772.0), ("logg", 4.44), ("fe_h", 0.0)):
        lo, hi = float(t[f"{p}_p2_5"][0].value), float(t[f"{p}_p97_5"][0].value)
        assert lo <= ref <= hi, (p, lo, hi)
    # without the term the laboratory-line-data offset of [Fe/H] is outside the interval
    assert float(plain["fe_h_p97_5"][0].value) < 0.0


def test_predict_widens_by_fit_mismatch(sun):
    est = _without_mismatch(CINNParameterEstimator.from_pretrained("4most-hr"))
    md = est.model.metadata
    cal = md.posterior_calibration
    kappa = {"teff": 3000.0, "fe_h": 5.0}
    mm = CINNModel(md.replace(posterior_calibration=PosteriorCalibration(
        cal.scale, cal.floor, cal.info, kappa, 0.005)), est.model.network,
        emulator=est.model.emulator)
    est_mm = CINNParameterEstimator(mm)
    q = (0.16, 0.5, 0.84)
    a = est.predict(sun, n_samples=400, seed=3, quantiles=q)
    b = est_mm.predict(sun, n_samples=400, seed=3, quantiles=q)
    amp = float(a["fit_mismatch"][0])
    assert amp > 0.005  # the real Sun is not described perfectly by the LTE seed physics
    for p in ("teff", "fe_h", "logg"):
        assert b[p][0] == a[p][0]  # medians do not move
    w = lambda t, p: 0.5 * float((t[f"{p}_p84"][0] - t[f"{p}_p16"][0]).value)  # noqa: E731
    for p in ("teff", "fe_h"):
        expect = np.sqrt(w(a, p) ** 2 + kappa[p] ** 2 * (amp**2 - 0.005**2))
        assert w(b, p) == pytest.approx(expect, rel=1e-4)
    assert w(b, "logg") == pytest.approx(w(a, "logg"), rel=1e-6)
    c = est_mm.predict(sun, n_samples=400, seed=3, quantiles=q, calibrated=False)
    d = est.predict(sun, n_samples=400, seed=3, quantiles=q, calibrated=False)
    assert w(c, "teff") == pytest.approx(w(d, "teff"), rel=1e-6)  # raw draws untouched
    draws = est_mm.sample_posterior(sun, n_samples=400, seed=3)
    t = draws["teff"][0].value
    assert 0.5 * (np.quantile(t, 0.84) - np.quantile(t, 0.16)) == pytest.approx(w(b, "teff"),
                                                                               rel=0.02)


def test_predict_divides_the_term_by_a_power_of_coverage(sun):
    """A spectrum that lacks part of the model's range gets the term over coverage**gamma."""
    from specutils import Spectrum

    est = _without_mismatch(CINNParameterEstimator.from_pretrained("4most-hr"))
    md = est.model.metadata
    cal = md.posterior_calibration
    kappa, gamma = {"teff": 3000.0, "fe_h": 5.0}, {"teff": 2.0}
    mm = CINNModel(md.replace(posterior_calibration=PosteriorCalibration(
        cal.scale, cal.floor, cal.info, kappa, 0.005, mismatch_coverage_power=gamma)),
        est.model.network, emulator=est.model.emulator)
    flux = sun.flux.value.copy()
    flux[: flux.size // 2] = np.nan  # the blue half missing
    half = Spectrum(flux=flux * sun.flux.unit, spectral_axis=sun.spectral_axis,
                    uncertainty=sun.uncertainty)
    q = (0.16, 0.5, 0.84)
    a = est.predict([sun, half], n_samples=400, seed=3, quantiles=q)
    b = CINNParameterEstimator(mm).predict([sun, half], n_samples=400, seed=3, quantiles=q)
    c = np.asarray(a["coverage"], float)
    assert c[1] < 0.7 * c[0]
    w = lambda t, p, i: 0.5 * float((t[f"{p}_p84"][i] - t[f"{p}_p16"][i]).value)  # noqa: E731
    for i in range(2):
        amp = float(a["fit_mismatch"][i])
        assert amp > 0.005
        excess2 = kappa["teff"] ** 2 * (amp**2 - 0.005**2) / c[i] ** 4
        assert w(b, "teff", i) == pytest.approx(np.sqrt(w(a, "teff", i) ** 2 + excess2),
                                                rel=1e-4)
        # no power for fe_h: the term as without coverage
        expect = np.sqrt(w(a, "fe_h", i) ** 2 + kappa["fe_h"] ** 2 * (amp**2 - 0.005**2))
        assert w(b, "fe_h", i) == pytest.approx(expect, rel=1e-4)


def test_vsini_draws_and_quantiles_respect_the_physical_support(sun):
    est = CINNParameterEstimator.from_pretrained("4most-hr")
    t = est.predict(sun, n_samples=1000, seed=1, quantiles=(0.01, 0.5))
    # the Sun rotates slowly: without the support the lowest percentile is negative
    assert float(t["vsini_p1"][0].value) == 0.0
    draws = est.sample_posterior(sun, n_samples=1000, seed=1)["vsini"][0].value
    assert draws.min() == 0.0 and 0.01 <= np.mean(draws == 0.0) < 0.5
    for p in ("teff", "fe_h"):  # unbounded parameters are left alone
        assert np.all(np.isfinite(draws)) and float(t[p][0].value) != 0.0


def test_unconstrained_parameters_are_masked(sun, tmp_path):
    from astropy.table import QTable

    assert CINNParameterEstimator.from_pretrained("4most-hr").model.metadata.unconstrained == (
        "mn_fe", "ni_fe")
    est = _without_mismatch(CINNParameterEstimator.from_pretrained("4most-hr"))
    md = est.model.metadata
    plain = est.predict(sun, n_samples=200, seed=2)
    mm = CINNModel(md.replace(unconstrained=("mn_fe", "ni_fe")), est.model.network,
                   emulator=est.model.emulator)
    t = CINNParameterEstimator(mm).predict(sun, n_samples=200, seed=2)
    assert t.meta["UNCONSTR"] == "mn_fe ni_fe" and "UNCONSTR" not in plain.meta
    for col in ("mn_fe", "mn_fe_p16", "mn_fe_std", "ni_fe_p84"):
        assert np.all(t[col].mask) and "not constrained" in t[col].description
        assert t[col].unmasked[0] == plain[col][0]  # the numbers are kept underneath
    assert not hasattr(t["teff"], "mask")
    t.write(tmp_path / "t.ecsv")
    back = QTable.read(tmp_path / "t.ecsv")
    assert np.all(back["mn_fe"].mask) and back["teff"][0] == t["teff"][0]
    draws = CINNParameterEstimator(mm).sample_posterior(sun, n_samples=50, seed=2)
    assert np.all(draws["ni_fe"].mask) and not hasattr(draws["fe_h"], "mask")
    with pytest.raises(ValueError, match="unconstrained"):
        md.replace(unconstrained=("vmacro",))


def test_resolution_mismatch_is_flagged_from_meta(sun):
    from specutils import Spectrum

    from specutils_cinn import QualityFlag
    from specutils_cinn.flags import RESOLUTION_TOLERANCE

    est = CINNParameterEstimator.from_pretrained("4most-hr")

    def with_r(r):
        meta = {} if r is None else {"resolving_power": r}
        return Spectrum(flux=sun.flux, spectral_axis=sun.spectral_axis,
                        uncertainty=sun.uncertainty, mask=sun.mask, meta=meta)

    rows = [None, 115000.0, 20000.0, {"HG": 20000.0, "HR": 21000.0}, 6500.0,
            20000.0 * (1 + 0.9 * RESOLUTION_TOLERANCE)]
    t = est.predict([with_r(r) for r in rows], n_samples=100, seed=1)
    got = [bool(f & QualityFlag.RESOLUTION_MISMATCH) for f in t["flags"]]
    assert got == [False, True, False, False, True, False]
    # the flag does not change the numbers: the same spectrum without meta gives the same row
    assert t["teff"][0] == t["teff"][1]


@pytest.mark.parametrize("snr_factor", [1.0, 7.0])  # the example's S/N (~100) and ~15
def test_velocity_offset_is_flagged_at_every_snr(sun, snr_factor):
    from astropy import units as u
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from specutils_cinn import QualityFlag

    est = CINNParameterEstimator.from_pretrained("4most-hr")
    rng = np.random.default_rng(5)
    sigma = np.asarray(sun.uncertainty.array) * snr_factor
    flux = np.asarray(sun.flux.value) + np.nan_to_num(sigma) * np.sqrt(
        max(snr_factor**2 - 1, 0.0)) * rng.standard_normal(sigma.size)
    wave = sun.spectral_axis.to_value(u.AA)

    def spec(w):
        return Spectrum(flux=flux * u.one, spectral_axis=w * u.AA,
                        uncertainty=StdDevUncertainty(sigma), mask=sun.mask)

    shifted = spec(wave * (1 + 100 / 299792.458))
    vacuum_as_air = spec(wave * 1.000277)
    t = est.predict([spec(wave), shifted, vacuum_as_air], n_samples=200, seed=1)
    got = [bool(f & QualityFlag.VELOCITY_OFFSET) for f in t["flags"]]
    assert got == [False, True, True]
    # with the velocity given, the shifted spectrum is fine again
    ok = est.predict(shifted, n_samples=200, seed=1, radial_velocity=100 * u.km / u.s)
    assert not ok["flags"][0] & QualityFlag.VELOCITY_OFFSET
