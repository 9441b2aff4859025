"""The public estimator, end to end, on a cINN whose exact posterior is known."""

import warnings

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from astropy.table import QTable
from specutils import Spectrum, SpectrumCollection, SpectrumList

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.flags import QualityFlag


@pytest.fixture(scope="module")
def lg(linear_gaussian_model):
    prob, model = linear_gaussian_model
    est = CINNParameterEstimator(model, device="cpu")
    y, x = prob.observations(n=12, seed=21)
    return prob, est, y, x


def _spectrum(prob, flux):
    wave = prob.grid.wavelength
    return Spectrum(flux=np.asarray(flux) * u.one, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(np.full(np.shape(flux), prob.sigma)))


def _predict(est, spectra, **kw):
    kw = {"n_samples": 200, "seed": 3, "normalize": False, "progress": False, **kw}
    return est.predict(spectra, **kw)


def test_table_layout_units_and_meta(lg):
    prob, est, y, _ = lg
    t = _predict(est, _spectrum(prob, y), quantiles=(0.16, 0.5, 0.84, 0.025))
    assert isinstance(t, QTable) and len(t) == len(y)
    assert est.parameters == ["teff", "logg"]
    assert t.colnames == [
        "teff", "teff_p16", "teff_p50", "teff_p84", "teff_p2_5", "teff_std",
        "logg", "logg_p16", "logg_p50", "logg_p84", "logg_p2_5", "logg_std",
        "snr", "coverage", "fit_chi2", "feature_sigma", "fit_mismatch", "flags",
    ]
    assert np.all(np.isnan(t["fit_chi2"])) and "FITTHR" not in t.meta  # model without emulator
    assert np.all(np.isnan(t["feature_sigma"])) and not np.any(t["flags"] & QualityFlag.NO_FEATURES)
    assert t["teff"].unit == u.K and t["teff_std"].unit == u.K
    assert t["logg"].unit == u.dex(u.cm / u.s**2) and t["logg_std"].unit == u.dex
    assert t.meta["NSAMPLES"] == 200 and t.meta["SEED"] == 3
    assert t.meta["PRECISN"] in ("float32", "bfloat16")       # the sampling precision used
    assert t.meta["QUANTILE"] == [0.16, 0.5, 0.84, 0.025]
    assert t.meta["MODEL"] == "linear-gaussian-test-v0.0.1"
    assert t.meta["MODELSHA"] == est.model.sha256 and len(t.meta["MODELSHA"]) == 64
    assert "LOW_COVERAGE=1" in t.meta["FLAGBITS"]
    np.testing.assert_allclose(t["teff"].value, t["teff_p50"].value)
    assert np.all(t["teff_p16"] < t["teff"]) and np.all(t["teff"] < t["teff_p84"])
    np.testing.assert_allclose(t["coverage"], 1.0)
    # S/N per Angstrom with 1 A pixels is the S/N per pixel: flux / sigma ~ 1 / 0.01.
    np.testing.assert_allclose(t["snr"], 100.0, rtol=0.05)


def test_posterior_matches_exact_through_the_estimator(lg):
    prob, est, y, _ = lg
    t = _predict(est, _spectrum(prob, y), n_samples=4000)
    mean, cov = prob.exact_posterior(y)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    med = np.column_stack([t["teff"].value, t["logg"].value])
    assert np.sqrt(np.mean(((med - mean) / sd) ** 2)) < 0.2
    std = np.column_stack([t["teff_std"].value, t["logg_std"].value])
    assert abs(np.median(std / sd) - 1) < 0.12


def test_every_input_type_gives_identical_rows(lg):
    prob, est, y, _ = lg
    ref = _predict(est, _spectrum(prob, y))
    singles = [_spectrum(prob, row) for row in y]
    wave2d = np.tile(prob.grid.wavelength, (y.shape[0], 1))
    collection = SpectrumCollection(flux=y * u.one, spectral_axis=wave2d,
                                    uncertainty=StdDevUncertainty(np.full(y.shape, prob.sigma)))
    flux_first = Spectrum(flux=y.T * u.one, spectral_axis=prob.grid.wavelength,
                          uncertainty=StdDevUncertainty(np.full(y.T.shape, prob.sigma)),
                          spectral_axis_index=0)
    with pytest.warns(Warning, match="Spectrum1D"):
        from specutils import Spectrum1D

        legacy = [Spectrum1D(flux=row * u.one, spectral_axis=prob.grid.wavelength,
                             uncertainty=StdDevUncertainty(np.full(row.shape, prob.sigma)))
                  for row in y]
    variants = {
        "list": singles,
        "tuple": tuple(singles),
        "SpectrumList": SpectrumList(singles),
        "SpectrumCollection": collection,
        "nested list": [singles[:5], _spectrum(prob, y[5:])],
        "spectral axis first": flux_first,
        "Spectrum1D": legacy,
    }
    for name, spectra in variants.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            t = _predict(est, spectra)
        for col in ("teff", "logg_p84", "teff_std", "snr", "coverage", "flags"):
            np.testing.assert_array_equal(np.asarray(t[col]), np.asarray(ref[col]),
                                          err_msg=f"{name}: {col}")


@pytest.mark.parametrize("unit", [u.nm, u.THz, u.micron, u.cm**-1])
def test_spectral_axis_units(lg, unit):
    prob, est, y, _ = lg
    ref = _predict(est, _spectrum(prob, y[:3]))
    axis = prob.grid.wavelength.to(unit, equivalencies=u.spectral())
    flux = y[:3]
    if axis[0] > axis[-1]:  # frequency-like units: give the spectrum in increasing order
        axis, flux = axis[::-1], flux[:, ::-1]
    spec = Spectrum(flux=flux * u.one, spectral_axis=axis,
                    uncertainty=StdDevUncertainty(np.full(flux.shape, prob.sigma)))
    t = _predict(est, spec)
    # the same draws (keyed by the flux, not the axis): only resampling rounding differs
    np.testing.assert_allclose(t["teff"].value, ref["teff"].value, atol=1e-4)


def test_bad_rows_are_flagged_not_dropped(lg):
    prob, est, y, _ = lg
    flux = y[:4].copy()
    flux[1] = np.nan
    good = _spectrum(prob, flux)
    far = Spectrum(flux=y[0] * u.one, spectral_axis=prob.grid.wavelength + 3000 * u.AA,
                   uncertainty=StdDevUncertainty(np.full(y.shape[1], prob.sigma)))
    t = _predict(est, [good, far])
    assert len(t) == 5
    assert t["flags"][1] & QualityFlag.NO_VALID_DATA
    assert t["flags"][4] & QualityFlag.NO_OVERLAP
    assert np.isnan(t["teff"][1]) and np.isnan(t["teff"][4])
    assert np.all(np.isfinite(t["teff"][[0, 2, 3]]))
    ref = _predict(est, _spectrum(prob, y[[0, 2, 3]]))
    # rows 0, 2, 3 are the same spectra in another batch: the same draws (same seed)
    np.testing.assert_allclose(t["teff"][[0, 2, 3]].value, ref["teff"].value, atol=2e-5)


def test_low_snr_and_edge_flags(lg):
    prob, est, y, _ = lg
    spec = Spectrum(flux=y[:2] * u.one, spectral_axis=prob.grid.wavelength,
                    uncertainty=StdDevUncertainty(np.full(y[:2].shape, 1.0)))  # S/N ~ 1
    t = _predict(est, spec)
    assert np.all(t["flags"] & QualityFlag.LOW_SNR)
    far_out = 1.0 + 30 * prob.a.sum(axis=1)  # parameters ~ +30 sigma: outside training range
    t = _predict(est, _spectrum(prob, far_out[None, :]))
    assert t["flags"][0] & QualityFlag.PARAMETER_AT_EDGE


def test_seed_reproducibility(lg):
    prob, est, y, _ = lg
    spec = _spectrum(prob, y)
    a, b = _predict(est, spec, seed=1), _predict(est, spec, seed=1)
    c = _predict(est, spec, seed=2)
    np.testing.assert_array_equal(a["teff"], b["teff"])
    assert not np.array_equal(a["teff"], c["teff"])
    d = _predict(est, spec, seed=None)
    assert isinstance(d.meta["SEED"], int)


def test_sample_posterior_matches_predict(lg):
    prob, est, y, _ = lg
    spec = _spectrum(prob, y[:4])
    s = est.sample_posterior(spec, n_samples=300, seed=4, normalize=False, progress=False)
    t = _predict(est, spec, n_samples=300, seed=4)
    assert s["teff"].shape == (4, 300) and s["teff"].unit == u.K
    assert s["logg"].unit == u.dex(u.cm / u.s**2)
    np.testing.assert_allclose(np.median(s["teff"].value, axis=1), t["teff"].value, rtol=1e-5)


def test_batch_size_and_chunking_do_not_change_statistics(lg):
    prob, est, y, _ = lg
    spec = _spectrum(prob, y)
    a = _predict(est, spec, n_samples=3000, batch_size=1)
    b = _predict(est, spec, n_samples=3000, batch_size=None)
    np.testing.assert_allclose(a["teff"].value, b["teff"].value, atol=2e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 1}, "n_samples"),
        ({"quantiles": (0.5, 1.5)}, "quantiles"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_arguments(lg, kwargs, match):
    prob, est, y, _ = lg
    with pytest.raises(ValueError, match=match):
        _predict(est, _spectrum(prob, y[:1]), **kwargs)


def test_bad_inputs(lg):
    prob, est, y, _ = lg
    with pytest.raises(TypeError, match="ndarray"):
        _predict(est, y)
    no_unc = Spectrum(flux=y[0] * u.one, spectral_axis=prob.grid.wavelength)
    with pytest.raises(ValueError, match="snr"):
        _predict(est, no_unc)
    t = _predict(est, no_unc, snr=100.0)
    assert len(t) == 1 and np.isfinite(t["teff"][0])


def test_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="CUDA"):
        from specutils_cinn.devices import resolve_device

        resolve_device("cuda")


def test_round_trip_ecsv_and_fits(lg, tmp_path):
    prob, est, y, _ = lg
    t = _predict(est, _spectrum(prob, y[:3]))
    t.write(tmp_path / "r.ecsv")
    back = QTable.read(tmp_path / "r.ecsv")
    assert back.colnames == t.colnames and back.meta["SEED"] == 3
    assert back["logg"].unit == t["logg"].unit
    np.testing.assert_array_equal(back["teff"].value, t["teff"].value)
    with pytest.warns(Warning, match="dex"):
        t.write(tmp_path / "r.fits")
    back = QTable.read(tmp_path / "r.fits")
    assert back["teff"].unit == u.K
    np.testing.assert_allclose(back["logg"].value, t["logg"].value)
    assert back.meta["MODEL"] == t.meta["MODEL"] and back.meta["NSAMPLES"] == 200


# ---------------------------------------------------------------- goodness of fit (POOR_FIT)
def _exact_emulator(prob):
    """An emulator that is exactly the problem's forward model 1 + A x (x in [-5, 5])."""
    from specutils_cinn.emulator import SpectrumEmulator

    emu = SpectrumEmulator(list(prob.parameters), [[-5.0, 5.0], [-5.0, 5.0]], prob.grid,
                           n_components=2, hidden=[])
    with torch.no_grad():
        emu.mlp[0].weight.copy_(10.0 * torch.eye(2))  # scaled labels are x / 10
        emu.mlp[0].bias.zero_()
        emu.basis.copy_(torch.as_tensor(prob.a.T, dtype=torch.float32))
        emu.flux_mean.fill_(1.0)
    return emu


@pytest.fixture(scope="module")
def lg_fit(lg, tmp_path_factory):
    prob, est, y, x = lg
    model = est.model.attach_emulator(_exact_emulator(prob), 0.0, chi2_threshold=3.0,
                                      continuum_degree=0)
    path = tmp_path_factory.mktemp("lg-with-emulator")
    model.save(path)
    from specutils_cinn.model import CINNModel

    return prob, CINNParameterEstimator(CINNModel.load(path), device="cpu"), y


def test_fit_chi2_is_near_one_for_good_fits_and_flags_garbage(lg_fit):
    prob, est, y = lg_fit
    t = _predict(est, _spectrum(prob, y))
    assert t.colnames[-4:] == ["fit_chi2", "feature_sigma", "fit_mismatch", "flags"]
    assert t.meta["FITTHR"] == 3.0
    # 24 pixels, 2 fitted labels + 1 continuum scale: E[chi2] ~ 21 / 24
    assert 0.6 < np.median(t["fit_chi2"]) < 1.3 and np.all(t["fit_chi2"] < 3.0)
    assert not np.any(t["flags"] & QualityFlag.POOR_FIT)
    wiggle = 0.05 * np.sin(np.arange(prob.npix) * 1.3)  # not a spectrum of this model
    bad = _predict(est, _spectrum(prob, y + wiggle))
    assert np.all(bad["fit_chi2"] > 5.0)
    assert np.all(bad["flags"] & QualityFlag.POOR_FIT)
    # the wiggle's RMS (0.035) is what the noise does not explain
    assert np.all(np.abs(bad["fit_mismatch"] - 0.05 / np.sqrt(2)) < 0.01)
    assert np.median(t["fit_mismatch"]) < 0.01
    empty = _predict(est, _spectrum(prob, 0.01 * np.random.default_rng(1).normal(size=y.shape)))
    assert np.all(empty["fit_chi2"] > 100.0)  # the continuum correction cannot scale to 0
    loose = _predict(est, _spectrum(prob, y + wiggle), fit_chi2_threshold=1e6)
    assert not np.any(loose["flags"] & QualityFlag.POOR_FIT) and loose.meta["FITTHR"] == 1e6
    np.testing.assert_allclose(loose["fit_chi2"], bad["fit_chi2"])
    draws = est.sample_posterior(_spectrum(prob, y + wiggle), n_samples=200, seed=3,
                                 normalize=False, progress=False)
    np.testing.assert_allclose(draws["fit_chi2"], bad["fit_chi2"])
    np.testing.assert_array_equal(draws["flags"], bad["flags"])
    with pytest.raises(ValueError, match="fit_chi2_threshold"):
        _predict(est, _spectrum(prob, y), fit_chi2_threshold=-1.0)


def test_fit_chi2_uses_the_error_floor_and_skips_rows_without_data(lg_fit):
    prob, est, y = lg_fit
    flux = y + 0.05 * np.sin(np.arange(prob.npix) * 1.3)
    flux[0] = np.nan  # a row without valid data gets NaN and no POOR_FIT
    t0 = _predict(est, _spectrum(prob, flux))
    floored = CINNParameterEstimator(
        est.model.attach_emulator(_exact_emulator(prob), 0.05, chi2_threshold=3.0,
                                  continuum_degree=0), device="cpu")
    t1 = _predict(floored, _spectrum(prob, flux))
    assert np.isnan(t0["fit_chi2"][0]) and not t0["flags"][0] & QualityFlag.POOR_FIT
    ratio = t1["fit_chi2"][1:] / t0["fit_chi2"][1:]
    np.testing.assert_allclose(ratio, prob.sigma**2 / (prob.sigma**2 + 0.05**2), rtol=0.05)


def test_feature_sigma_is_the_significance_of_the_stellar_features(lg_fit):
    from specutils_cinn.fit_check import FEATURE_SIGMA_MIN, fit_statistics

    prob, est, _ = lg_fit
    fe, names = est.model.emulator, est.parameters
    x = np.array([[4.0, -4.0], [0.5, 0.2]])
    flux = 1.0 + x @ prob.a.T  # noise-free spectra of the model at x
    sigma = np.full(flux.shape, prob.sigma)
    valid = np.ones(flux.shape, bool)
    fit = fit_statistics(fe, names, x, flux, sigma, valid)
    np.testing.assert_allclose(fit.chi2, 0.0, atol=1e-9)
    # continuum_degree=0: the featureless model is the best constant, so the significance is
    # the features' RMS about their mean in units of sigma, summed over the pixels
    expected = np.sqrt((((flux - flux.mean(axis=1, keepdims=True)) / prob.sigma) ** 2).sum(1))
    np.testing.assert_allclose(fit.feature_sigma, expected, rtol=1e-6)
    assert expected[0] > 2 * FEATURE_SIGMA_MIN > 2 * expected[1]

    rng = np.random.default_rng(4)
    noise = 1.0 + prob.sigma * rng.normal(size=(20, prob.npix))  # a featureless continuum
    t = _predict(est, _spectrum(prob, np.vstack([flux[:1], noise])))
    assert t["feature_sigma"][0] > 2 * FEATURE_SIGMA_MIN
    assert not t["flags"][0] & QualityFlag.NO_FEATURES
    assert np.all(t["feature_sigma"][1:] < FEATURE_SIGMA_MIN)
    assert np.all(t["flags"][1:] & QualityFlag.NO_FEATURES)


def test_noise_window_keeps_noisy_flux_uncertainties_from_inflating_the_chi2(lg_fit):
    """At a few counts per pixel, uncertainties computed from the noisy flux (draw_noise, as
    pipelines report them) inflate a per-pixel chi-square at the true labels; the local mean
    variance (EmulatorSpec.noise_window) keeps it near 1, and at high S/N the two agree."""
    from specutils_cinn.fit_check import ModelEmulator, fit_statistics
    from specutils_cinn.instruments import draw_noise

    prob, est, _ = lg_fit
    fe, names = est.model.emulator, est.parameters
    assert fe.spec.noise_window == 0 and "noise_window" not in fe.spec.to_dict()
    windowed = ModelEmulator(fe.spec.replace(noise_window=25), fe.emulator, fe.error_floor,
                             fe.model_grid)
    assert windowed.spec.to_dict()["noise_window"] == 25
    x = np.random.default_rng(5).normal(size=(400, 2))
    clean = torch.as_tensor(1.0 + x @ prob.a.T)
    valid = np.ones(clean.shape, bool)
    medians = {}
    for snr in (1.5, 100.0):
        noisy, sigma = draw_noise(clean, torch.full((400, 1), snr, dtype=clean.dtype),
                                  torch.Generator().manual_seed(6))
        args = (names, x, noisy.numpy(), sigma.numpy(), valid)
        medians[snr] = (np.median(fit_statistics(fe, *args).chi2),
                        np.median(fit_statistics(windowed, *args).chi2))
    # 24 pixels, 2 labels + 1 continuum scale fitted: E[chi2] ~ 21 / 24 at high S/N
    assert medians[1.5][0] > 3.0                      # per pixel: inflated several-fold
    assert 0.75 < medians[1.5][1] < 1.1               # windowed: as at high S/N
    assert medians[100.0][1] == pytest.approx(medians[100.0][0], rel=0.05)
    with pytest.raises(ValueError, match="noise_window"):
        fe.spec.replace(noise_window=-1)


def test_fit_check_rotation_matches_the_emulator_spline_rotation(lg_fit):
    from specutils_cinn.emulator import SpectrumEmulator, emulate_spectra
    from specutils_cinn.instruments.rotation import BinnedRotation
    from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

    fe = lg_fit[1].model.emulator  # the fit check rotates with BinnedRotation on its grid
    assert isinstance(fe.rotation, BinnedRotation) and fe.rotation.grid is fe.spec.grid

    grid = WavelengthGrid((GridSegment("A", 5000.0, 5060.0, 0.1),
                           GridSegment("B", 6500.0, 6540.0, 0.1)))
    wave = grid.wavelength.value
    lines = 1.0 - sum(d * np.exp(-0.5 * ((wave - c) / 0.12) ** 2)
                      for c, d in ((5010.0, 0.6), (5030.3, 0.3), (5031.0, 0.5), (6520.0, 0.8)))
    emu = SpectrumEmulator(["teff"], [[4000.0, 7000.0]], grid, n_components=1, hidden=[])
    with torch.no_grad():
        emu.mlp[0].weight.zero_()
        emu.mlp[0].bias.zero_()
        emu.flux_mean.copy_(torch.as_tensor(lines, dtype=torch.float32))
    labels = np.full((4, 1), 5000.0)
    vsini = np.array([0.0, 3.0, 10.0, 25.0])
    ref = emulate_spectra(emu, labels, vsini=vsini)
    rotate = BinnedRotation(grid, max_shift=0.0)
    fast = rotate(torch.as_tensor(np.tile(lines, (4, 1))), torch.as_tensor(vsini)).numpy()
    np.testing.assert_array_equal(fast[0], lines)  # v sin i = 0: unchanged
    assert np.abs(ref[3] - lines).max() > 0.2  # rotation matters ...
    # ... and both agree to < 0.5 % of the line depth (largest at v sin i = 3 km/s, where the
    # two sub-pixel interpolants of these under-sampled lines differ; not an oversampling limit)
    assert np.abs(fast - ref).max() < 4e-3


# ------------------------------------------------------------------ trust: flags (issue 15)
def test_flag_bits_keep_their_values():
    expected = {"NONE": 0, "LOW_COVERAGE": 1, "NO_OVERLAP": 2, "NO_VALID_DATA": 4,
                "NOISE_ESTIMATED": 8, "PARAMETER_AT_EDGE": 16, "LOW_SNR": 32, "POOR_FIT": 64,
                "NO_FEATURES": 128, "OUTSIDE_TRAINING_RANGE": 256, "HIGH_SNR": 512,
                "RESOLUTION_MISMATCH": 1024, "VELOCITY_OFFSET": 2048}
    assert {name: int(f) for name, f in QualityFlag.__members__.items()} == expected


def test_medians_outside_the_training_range_are_flagged(lg):
    prob, est, y, _ = lg
    lo, hi = est.model.metadata.ranges.T
    far_out = 1.0 + 30 * prob.a.sum(axis=1)  # parameters ~ +30 sigma, an "empty fiber" case
    t = _predict(est, _spectrum(prob, np.vstack([y[:4], far_out])))
    med = np.column_stack([t[p].value for p in est.parameters])
    outside = ((med < lo) | (med > hi)).any(axis=1)
    assert outside[4] and not outside[:4].any()
    np.testing.assert_array_equal((t["flags"] & QualityFlag.OUTSIDE_TRAINING_RANGE) != 0, outside)
    assert t["flags"][4] & QualityFlag.PARAMETER_AT_EDGE  # beyond the edge is at the edge too
    assert "OUTSIDE_TRAINING_RANGE=256" in t.meta["FLAGBITS"]


def test_snr_above_the_training_range_is_flagged(lg):
    prob, est, y, _ = lg
    lo, hi = est.model.metadata.snr_range  # 100 .. 100 for this model
    wave = prob.grid.wavelength
    high = Spectrum(flux=y[:2] * u.one, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(np.full((2, prob.npix), prob.sigma / 20)))
    low = Spectrum(flux=y[:2] * u.one, spectral_axis=wave,
                   uncertainty=StdDevUncertainty(np.full((2, prob.npix), prob.sigma * 20)))
    t = _predict(est, [high, low])
    assert np.all(t["snr"][:2] > 10 * hi) and np.all(t["snr"][2:] < lo / 10)
    np.testing.assert_array_equal((t["flags"] & QualityFlag.HIGH_SNR) != 0, [1, 1, 0, 0])
    np.testing.assert_array_equal((t["flags"] & QualityFlag.LOW_SNR) != 0, [0, 0, 1, 1])
    assert "HIGH_SNR=512" in t.meta["FLAGBITS"]


@pytest.mark.parametrize("case", ["zeros", "negative", "two pixels"])
def test_hopeless_spectra_are_nan_and_flagged_no_valid_data(lg, case):
    prob, est, y, _ = lg
    if case == "two pixels":
        bad = Spectrum(flux=[1.0, 1.0] * u.one, spectral_axis=[5003.0, 5003.5] * u.AA,
                       uncertainty=StdDevUncertainty([0.01, 0.01]))
    else:
        bad = _spectrum(prob, np.full(prob.npix, 0.0 if case == "zeros" else -1.0))
    t = _predict(est, [_spectrum(prob, y[0]), bad], normalize=True)
    assert np.isfinite(t["teff"][0]) and np.isnan(t["teff"][1]) and np.isnan(t["logg_std"][1])
    assert t["flags"][1] & QualityFlag.NO_VALID_DATA


# --------------------------------------------------- trust: arguments checked before work
_ESTIMATOR_ARGUMENTS = [
    ({"fit_chi2_threshold": -1.0}, "fit_chi2_threshold"),
    ({"fit_chi2_threshold": "3"}, "fit_chi2_threshold"),
    ({"batch_size": 0}, "batch_size"),
    ({"calibrated": "yes"}, "calibrated"),
    ({"seed": 2**64}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"n_samples": 1}, "n_samples"),
    ({"quantiles": (0.5, 1.5)}, "quantiles"),
    ({"device": "tpu"}, "device"),
]


@pytest.mark.parametrize(
    ("method", "kwargs", "match"),
    [("predict", kw, m) for kw, m in _ESTIMATOR_ARGUMENTS]
    + [("sample_posterior", kw, m) for kw, m in _ESTIMATOR_ARGUMENTS if "quantiles" not in kw],
)
def test_estimator_arguments_are_checked_before_any_work(lg_fit, monkeypatch, method, kwargs,
                                                          match):
    import specutils_cinn.estimator as estimator_module

    prob, est, y = lg_fit

    def no_work(*args, **kw):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(estimator_module, "prepare_spectra", no_work)
    monkeypatch.setattr(CINNParameterEstimator, "_draw_batches", no_work)
    kw = {"n_samples": 50, "seed": 1, "normalize": False, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        getattr(est, method)(_spectrum(prob, y[:2]), **kw)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"medium": "water"}, "medium"), ({"normalize": "yes"}, "normalize"),
     ({"snr": -1.0}, "snr"), ({"radial_velocity": 10.0}, "radial_velocity"),
     ({"radial_velocity": [1.0, 2.0, 3.0] * u.km / u.s}, "radial_velocity")],
)
def test_input_arguments_are_checked_before_any_work(lg, monkeypatch, kwargs, match):
    import specutils_cinn.inputs.prepare as prepare_module

    prob, est, y, _ = lg

    def no_work(*args, **kw):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(prepare_module, "_process_group", no_work)
    monkeypatch.setattr(CINNParameterEstimator, "_draw_batches", no_work)
    with pytest.raises(ValueError, match=match):
        _predict(est, _spectrum(prob, y[:2]), **kwargs)


def test_corrupt_emulator_file_is_rejected_when_the_estimator_is_built(lg_fit, tmp_path):
    import shutil

    from specutils_cinn.model import EMULATOR_FILENAME, CINNModel

    prob, est, y = lg_fit
    shutil.copytree(est.model.source, tmp_path / "model")
    emu = tmp_path / "model" / EMULATOR_FILENAME
    data = bytearray(emu.read_bytes())
    data[-1] ^= 0xFF
    emu.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        CINNParameterEstimator(CINNModel.load(tmp_path / "model"), device="cpu")


def test_largest_seed_works_and_survives_fits(lg, tmp_path):
    prob, est, y, _ = lg
    t = _predict(est, _spectrum(prob, y[:2]), seed=2**63 - 1)
    assert t.meta["SEED"] == 2**63 - 1 and np.all(np.isfinite(t["teff"]))
    with pytest.warns(Warning, match="dex"):
        t.write(tmp_path / "seed.fits")
    assert QTable.read(tmp_path / "seed.fits").meta["SEED"] == 2**63 - 1
    with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\*\*63 - 1"):
        _predict(est, _spectrum(prob, y[:2]), seed=2**64)


# ------------------------------------------- trust: a row depends on its spectrum and the seed
_SUMMARY = ("teff", "teff_p16", "teff_p84", "teff_std", "logg", "logg_p16", "logg_p84", "logg_std")


def _assert_rows_equal(t, ref, rows, ref_rows):
    for col in _SUMMARY:
        np.testing.assert_allclose(t[col].value[rows], ref[col].value[ref_rows], rtol=0,
                                   atol=2e-5, err_msg=col)
    for col in ("snr", "coverage", "flags"):
        np.testing.assert_array_equal(np.asarray(t[col])[rows], np.asarray(ref[col])[ref_rows])


def test_a_row_depends_only_on_its_spectrum_and_the_seed(lg):
    # the posterior draws of a spectrum are keyed by the seed and the spectrum's content, so
    # neither batch_size, nor the other spectra, nor their order moves its row (it used to
    # by up to 0.3 posterior sigma: the draws came from one stream for the whole input)
    prob, est, y, _ = lg
    n = len(y)
    ref = _predict(est, _spectrum(prob, y), n_samples=300)
    for batch_size in (1, 5, 64):
        _assert_rows_equal(_predict(est, _spectrum(prob, y), n_samples=300,
                                    batch_size=batch_size), ref, slice(None), slice(None))
    for i in (0, 5, n - 1):
        _assert_rows_equal(_predict(est, _spectrum(prob, y[i]), n_samples=300), ref, [0], [i])
    perm = np.random.default_rng(2).permutation(n)
    _assert_rows_equal(_predict(est, _spectrum(prob, y[perm]), n_samples=300), ref,
                       slice(None), perm)
    far = Spectrum(flux=y[0] * u.one, spectral_axis=prob.grid.wavelength + 3000 * u.AA,
                   uncertainty=StdDevUncertainty(np.full(prob.npix, prob.sigma)))
    others = 1.0 + 0.3 * np.random.default_rng(7).normal(size=(3, prob.npix)) * prob.a[:, 0]
    mixed = _predict(est, [far, _spectrum(prob, others), [_spectrum(prob, y[::-1])], far],
                     n_samples=300, batch_size=4)
    _assert_rows_equal(mixed, ref, slice(4, 4 + n), slice(None, None, -1))
    twice = _predict(est, _spectrum(prob, np.vstack([y[:2], y[:2]])), n_samples=300)
    _assert_rows_equal(twice, ref, [0, 1, 2, 3], [0, 1, 0, 1])
    # a different seed gives other draws of every row
    other = _predict(est, _spectrum(prob, y), n_samples=300, seed=4)
    assert np.all(other["teff"].value != ref["teff"].value)


def test_sample_posterior_draws_do_not_depend_on_the_batch(lg):
    prob, est, y, _ = lg
    kw = {"n_samples": 100, "seed": 9, "normalize": False, "progress": False}
    all_rows = est.sample_posterior(_spectrum(prob, y[:5]), batch_size=2, **kw)
    for i in (0, 3):
        one = est.sample_posterior(_spectrum(prob, y[i]), **kw)
        np.testing.assert_allclose(one["teff"].value[0], all_rows["teff"].value[i], atol=2e-5)
        np.testing.assert_allclose(one["logg"].value[0], all_rows["logg"].value[i], atol=2e-5)


def test_bad_pixels_marked_by_their_uncertainty_give_the_masked_result(lg):
    # issue 15: a pipeline marking bad pixels with sigma = -1 had them used with sigma = 1
    # (and garbage flux), unflagged; now they are missing data, and the row is the masked one
    prob, est, y, _ = lg
    bad = np.random.default_rng(5).random(y[:4].shape) < 0.25
    flux = np.where(bad, 0.0, y[:4])
    sigma = np.full(flux.shape, prob.sigma)
    wave = prob.grid.wavelength
    marked = Spectrum(flux=flux * u.one, spectral_axis=wave,
                      uncertainty=StdDevUncertainty(np.where(bad, -1.0, sigma)))
    masked = Spectrum(flux=flux * u.one, spectral_axis=wave, uncertainty=StdDevUncertainty(sigma),
                      mask=bad)
    a, b = _predict(est, marked), _predict(est, masked)
    for col in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), err_msg=col)
    np.testing.assert_allclose(a["coverage"], 1 - bad.mean(axis=1))


def test_compile_sampling_gives_the_same_table(linear_gaussian_model, monkeypatch):
    """compile_sampling only changes how the draws are computed (here a stand-in compiler
    that records its use), not the table; a copy of the network for another process (pickle)
    is uncompiled."""
    import pickle

    import specutils_cinn.flows.cinn as cinn_module

    prob, model = linear_gaussian_model
    y, _ = prob.observations(n=4, seed=5)
    plain = _predict(CINNParameterEstimator(model, device="cpu"), _spectrum(prob, y))
    calls = []

    def stand_in(fn, **kwargs):
        assert kwargs == {"dynamic": True}
        return lambda *args: calls.append(1) or fn(*args)

    monkeypatch.setattr(cinn_module.torch, "compile", stand_in)
    est = CINNParameterEstimator(pickle.loads(pickle.dumps(model)), device="cpu")
    assert est.compile_sampling() is est and est.sampling_compiled
    compiled = _predict(est, _spectrum(prob, y))
    assert calls
    for name in plain.colnames:
        np.testing.assert_array_equal(np.asarray(compiled[name]), np.asarray(plain[name]))
    assert not est.compile_sampling(False).sampling_compiled
