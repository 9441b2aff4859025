"""Tests of prepare_spectra: input types, units, frames, noise, normalization, flags."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from astropy.utils.exceptions import AstropyDeprecationWarning
from specutils import Spectrum, Spectrum1D, SpectrumCollection, SpectrumList
from specutils.utils.wcs_utils import air_to_vac

from specutils_cinn.flags import QualityFlag
from specutils_cinn.inputs import FILL_FLUX, FILL_SIGMA, PreparedSpectra, prepare_spectra
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid(
    (GridSegment("B", 5000.0, 5050.0, 0.1), GridSegment("R", 5100.0, 5150.0, 0.1)), "air"
)
WAVE = np.arange(4980.0, 5170.0, 0.05)  # input: 0.05 A pixels covering the grid
FLUX_UNIT = u.erg / u.s / u.cm**2 / u.AA
LINE = 5025.0


def make_data(n=4, seed=0, noise=0.01, wave=WAVE):
    """Sloped continuum x one absorption line, with Gaussian noise; returns (flux, sigma)."""
    rng = np.random.default_rng(seed)
    cont = (2.0 + 0.004 * (wave - 5000.0)) * rng.uniform(0.8, 1.2, (n, 1))
    line = 1 - 0.6 * np.exp(-0.5 * ((wave - LINE) / 0.3) ** 2)
    clean = cont * line
    sigma = noise * clean
    return clean + sigma * rng.normal(size=clean.shape), sigma


def spectrum_2d(flux, sigma, wave=WAVE, **kwargs):
    return Spectrum(
        flux=flux * FLUX_UNIT,
        spectral_axis=wave * u.AA,
        uncertainty=StdDevUncertainty(sigma),
        **kwargs,
    )


def spectra_1d(flux, sigma, wave=WAVE):
    return [spectrum_2d(f, s, wave) for f, s in zip(flux, sigma, strict=True)]


def assert_same(a: PreparedSpectra, b: PreparedSpectra, rtol=0.0):
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(a.flags, b.flags)
    if rtol:
        np.testing.assert_allclose(a.flux, b.flux, rtol=rtol)
        np.testing.assert_allclose(a.sigma, b.sigma, rtol=rtol)
        np.testing.assert_allclose(a.snr, b.snr, rtol=rtol)
    else:
        np.testing.assert_array_equal(a.flux, b.flux)
        np.testing.assert_array_equal(a.sigma, b.sigma)
        np.testing.assert_array_equal(a.snr, b.snr)


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def reference(data):
    return prepare_spectra(spectrum_2d(*data), GRID)


def test_output_invariants(reference):
    p = reference
    n, npix = 4, GRID.npix
    assert p.n_rows == n and p.flux.shape == (n, npix)
    assert p.flux.dtype == np.float32 and p.sigma.dtype == np.float32
    assert p.valid.dtype == bool and p.flags.dtype == np.int32
    assert np.all(np.isfinite(p.flux)) and np.all(np.isfinite(p.sigma)) and np.all(p.sigma > 0)
    assert p.valid.all() and np.all(p.coverage == 1) and np.all(p.flags == 0)
    assert p.normalized.all()
    assert u.allclose(p.radial_velocity, 0 * u.km / u.s)
    np.testing.assert_array_equal(p.source, 0)
    assert p.source_index == ((0,), (1,), (2,), (3,))
    assert u.allclose(p.wavelength, GRID.wavelength)
    # normalized: continuum near 1, the line center near 0.4 (0.6 deep, smoothed by 0.1 A bins)
    i = np.argmin(np.abs(GRID.wavelength.value - LINE))
    np.testing.assert_allclose(np.median(p.flux, axis=1), 1.0, atol=0.02)
    np.testing.assert_allclose(p.flux[:, i], 0.4, atol=0.05)


def test_all_input_types_agree(data, reference):
    flux, sigma = data
    items = spectra_1d(flux, sigma)
    collection = SpectrumCollection(
        flux=flux * FLUX_UNIT,
        spectral_axis=np.tile(WAVE, (4, 1)) * u.AA,
        uncertainty=StdDevUncertainty(sigma),
    )
    axis_first = Spectrum(
        flux=flux.T * FLUX_UNIT,
        spectral_axis=WAVE * u.AA,
        spectral_axis_index=0,
        uncertainty=StdDevUncertainty(sigma.T),
    )
    cube = spectrum_2d(flux.reshape(2, 2, -1), sigma.reshape(2, 2, -1))
    variants = {
        "list": items,
        "tuple": tuple(items),
        "SpectrumList": SpectrumList(items),
        "collection": collection,
        "axis_first": axis_first,
        "cube": cube,
        "nested": [items[0], [items[1], SpectrumList(items[2:])]],
    }
    for name, value in variants.items():
        result = prepare_spectra(value, GRID)
        assert_same(result, reference)
        assert result.n_rows == 4, name
    nested = prepare_spectra(variants["nested"], GRID)
    np.testing.assert_array_equal(nested.source, [0, 1, 1, 1])
    assert nested.source_index == ((), (0,), (1, 0), (1, 1))
    assert prepare_spectra(cube, GRID).source_index == ((0, 0), (0, 1), (1, 0), (1, 1))
    assert prepare_spectra(items, GRID).source_index == ((), (), (), ())


def test_deprecated_spectrum1d_is_accepted_without_warnings(data, reference):
    flux, sigma = data
    with pytest.warns(AstropyDeprecationWarning):
        old = Spectrum1D(
            flux=flux * FLUX_UNIT, spectral_axis=WAVE * u.AA, uncertainty=StdDevUncertainty(sigma)
        )
    assert_same(prepare_spectra(old, GRID), reference)  # filterwarnings=error: no warning


@pytest.mark.parametrize(
    "unit", [u.nm, u.micron, u.m, u.Hz, u.THz, 1 / u.cm, u.eV], ids=lambda x: str(x)
)
def test_spectral_axis_units(data, reference, unit):
    flux, sigma = data
    axis = (WAVE * u.AA).to(unit, u.spectral())
    if axis[-1] < axis[0]:  # frequency-like units: specutils wants an increasing axis
        axis, flux, sigma = axis[::-1], flux[:, ::-1], sigma[:, ::-1]
    s = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=axis, uncertainty=StdDevUncertainty(sigma))
    assert_same(prepare_spectra(s, GRID), reference, rtol=1e-5)


def test_decreasing_axis(data, reference):
    flux, sigma = data
    result = prepare_spectra(spectrum_2d(flux[:, ::-1], sigma[:, ::-1], wave=WAVE[::-1]), GRID)
    assert_same(result, reference)


def test_uncertainty_types_agree(data, reference):
    flux, sigma = data
    for unc in (VarianceUncertainty(sigma**2), InverseVariance(1 / sigma**2)):
        s = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=WAVE * u.AA, uncertainty=unc)
        assert_same(prepare_spectra(s, GRID), reference, rtol=1e-6)
    # an uncertainty in another (compatible) unit is converted
    s = Spectrum(
        flux=flux * FLUX_UNIT,
        spectral_axis=WAVE * u.AA,
        uncertainty=StdDevUncertainty(sigma * 10 * u.erg / u.s / u.cm**2 / u.nm),
    )
    assert_same(prepare_spectra(s, GRID), reference, rtol=1e-6)


def test_zero_inverse_variance_and_mask_make_pixels_invalid(data):
    flux, sigma = data
    ivar = 1 / sigma**2
    ivar[0, 1000:1100] = 0.0  # 5030-5035 A
    mask = np.zeros(flux.shape, bool)
    mask[1, 1000:1100] = True
    bad_flux = flux.copy()
    bad_flux[1, 1000:1100] = 1e30  # masked garbage must not leak into neighbors
    s = Spectrum(
        flux=bad_flux * FLUX_UNIT, spectral_axis=WAVE * u.AA,
        uncertainty=InverseVariance(ivar), mask=mask,
    )  # fmt: skip
    p = prepare_spectra(s, GRID)
    lam = GRID.wavelength.value
    hole = (lam > 5030.05) & (lam < 5034.95)
    near = (lam > 5029.0) & (lam < 5030.0)
    for row in (0, 1):
        assert not p.valid[row, hole].any()
        assert p.valid[row, ~hole].sum() >= len(lam) - hole.sum() - 2
        assert np.all(p.flux[row, near] < 1.1)
        np.testing.assert_array_equal(p.flux[row, hole], FILL_FLUX)
        np.testing.assert_array_equal(p.sigma[row, hole], FILL_SIGMA)
    assert p.valid[2:].all()


def test_air_vacuum_round_trip(data, reference):
    flux, sigma = data
    vac = air_to_vac(WAVE * u.AA).value
    result = prepare_spectra(spectrum_2d(flux, sigma, wave=vac), GRID, medium="vacuum")
    assert_same(result, reference, rtol=1e-3)  # air_to_vac is inverted to ~2e-5 A
    # wrong medium: the line lands about 1.4 A too red
    wrong = prepare_spectra(spectrum_2d(flux, sigma, wave=vac), GRID, medium="air")
    lam = GRID.wavelength.value
    assert lam[np.argmin(wrong.flux[0, :500])] == pytest.approx(LINE + 1.4, abs=0.15)


def line_center(p: PreparedSpectra, row: int, near: float = LINE) -> float:
    lam = GRID.wavelength.value
    window = np.abs(lam - near) < 1.5
    depth = np.clip(1 - p.flux[row, window], 0, None)
    return float(np.sum(lam[window] * depth) / np.sum(depth))


@pytest.mark.parametrize("velocity", [-250.0, 37.0, 180.0])
def test_radial_velocity_moves_line_to_rest_frame(velocity):
    beta = velocity / 299792.458
    d = np.sqrt((1 + beta) / (1 - beta))
    flux, sigma = make_data(n=2, noise=0.0, wave=WAVE / d)  # observed = rest * d
    observed = spectrum_2d(flux, sigma + 1e-3)
    at_rest = prepare_spectra(observed, GRID, radial_velocity=velocity * u.km / u.s)
    assert line_center(at_rest, 0) == pytest.approx(LINE, abs=0.005)
    assert u.allclose(at_rest.radial_velocity, velocity * u.km / u.s)
    unshifted = prepare_spectra(observed, GRID)
    assert line_center(unshifted, 0, LINE * d) == pytest.approx(LINE * d, abs=0.005)
    # per-row velocities, and the spectrum's own radial velocity when none is given
    per_row = prepare_spectra(observed, GRID, radial_velocity=[velocity, 0.0] * u.km / u.s)
    assert line_center(per_row, 0) == pytest.approx(LINE, abs=0.005)
    assert line_center(per_row, 1, LINE * d) == pytest.approx(LINE * d, abs=0.005)
    own = spectrum_2d(flux, sigma + 1e-3, radial_velocity=velocity * u.km / u.s)
    assert_same(prepare_spectra(own, GRID), at_rest, rtol=1e-6)


def test_snr_argument_gives_sigma_per_angstrom(data):
    flux, _ = data
    s = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=WAVE * u.AA)
    p = prepare_spectra(s, GRID, snr=50.0)
    # grid pixels 0.1 A, input 0.05 A: sigma per grid pixel = 1 / (50 * sqrt(0.1)) in the
    # continuum (up to the bins' misalignment with the input pixels)
    expected = 1 / (50 * np.sqrt(0.1))
    assert np.median(p.sigma) == pytest.approx(expected, rel=0.25)
    assert not np.any(p.flags & QualityFlag.NOISE_ESTIMATED)
    per_row = prepare_spectra(s, GRID, snr=np.array([10.0, 20.0, 40.0, 80.0]))
    ratio = np.median(per_row.sigma, axis=1)
    np.testing.assert_allclose(ratio[0] / ratio, [1, 2, 4, 8], rtol=1e-6)
    np.testing.assert_allclose(per_row.snr[1:] / per_row.snr[:-1], 2.0, rtol=0.05)
    # snr does not override an existing uncertainty
    with_unc = prepare_spectra(spectrum_2d(*data), GRID, snr=1.0)
    assert_same(with_unc, prepare_spectra(spectrum_2d(*data), GRID))


def test_snr_column_is_per_angstrom():
    # grid pixels (0.1 A) aligned on whole input pixels (0.05 A), white noise
    wave = np.arange(4980.025, 5170.0, 0.05)
    rng = np.random.default_rng(9)
    flux = 1.0 + 0.01 * rng.normal(size=(3, wave.size))
    s = Spectrum(
        flux=flux * u.one,
        spectral_axis=wave * u.AA,
        uncertainty=StdDevUncertainty(np.full(flux.shape, 0.01)),
    )
    p = prepare_spectra(s, GRID, normalize=False)
    assert not p.normalized.any()
    # S/N per input pixel 100 -> per Angstrom 100 * sqrt(1 / 0.05)
    np.testing.assert_allclose(p.snr, 100 * np.sqrt(20), rtol=0.02)


def test_snr_estimate(data):
    flux, sigma = data
    s = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=WAVE * u.AA)
    p = prepare_spectra(s, GRID, snr="estimate")
    assert np.all(p.flags & QualityFlag.NOISE_ESTIMATED)
    reference = prepare_spectra(spectrum_2d(flux, sigma), GRID)
    np.testing.assert_allclose(
        np.median(p.sigma, axis=1), np.median(reference.sigma, axis=1), rtol=0.15
    )
    # noise-free input: the estimate fails, the row has no valid pixel
    clean = Spectrum(flux=np.ones((1, WAVE.size)) * FLUX_UNIT, spectral_axis=WAVE * u.AA)
    failed = prepare_spectra(clean, GRID, snr="estimate")
    assert not failed.valid.any()
    assert failed.flags[0] & QualityFlag.NOISE_ESTIMATED
    assert failed.flags[0] & QualityFlag.NO_VALID_DATA


def test_missing_uncertainty_is_an_error(data):
    s = Spectrum(flux=data[0] * FLUX_UNIT, spectral_axis=WAVE * u.AA)
    with pytest.raises(ValueError, match="has no uncertainty.*snr="):
        prepare_spectra(s, GRID)


@pytest.mark.parametrize(
    ("snr", "match"),
    [
        (0.0, "finite and positive"),
        (-3.0, "finite and positive"),
        (np.nan, "finite and positive"),
        (np.inf, "finite and positive"),
        ([10.0, 20.0], "one value per spectrum"),
        ("guess", "'estimate'"),
        (5 * u.km, "dimensionless"),
    ],
)
def test_bad_snr(data, snr, match):
    s = Spectrum(flux=data[0] * FLUX_UNIT, spectral_axis=WAVE * u.AA)
    with pytest.raises(ValueError, match=match):
        prepare_spectra(s, GRID, snr=snr)


@pytest.mark.parametrize(
    ("bad", "name"),
    [(np.ones((2, 10)), "ndarray"), ({"flux": 1}, "dict"), (None, "NoneType"), ("x.fits", "str")],
)
def test_bad_input_types(bad, name):
    with pytest.raises(TypeError, match=f"unsupported input type {name}"):
        prepare_spectra(bad, GRID)


def test_bad_item_inside_a_list(data):
    items = spectra_1d(*data)
    with pytest.raises(TypeError, match=r"unsupported input type int \(input #1\[2\]\)"):
        prepare_spectra([items[0], [items[1], items[2], 3]], GRID)
    with pytest.raises(ValueError, match="empty"):
        prepare_spectra([], GRID)


def test_argument_errors(data):
    s = spectrum_2d(*data)
    with pytest.raises(ValueError, match="medium"):
        prepare_spectra(s, GRID, medium="water")
    with pytest.raises(ValueError, match="normalize"):
        prepare_spectra(s, GRID, normalize="yes")
    with pytest.raises(ValueError, match="one value per spectrum"):
        prepare_spectra(s, GRID, radial_velocity=[1.0, 2.0] * u.km / u.s)
    with pytest.raises(ValueError, match="Quantity with velocity units"):
        prepare_spectra(s, GRID, radial_velocity=10.0)
    with pytest.raises(ValueError, match="velocity units"):
        prepare_spectra(s, GRID, radial_velocity=10.0 * u.m)
    with pytest.raises(ValueError, match="slower than light"):
        prepare_spectra(s, GRID, radial_velocity=4e5 * u.km / u.s)
    with pytest.raises(ValueError, match="min_valid_fraction"):
        prepare_spectra(s, GRID, min_valid_fraction=0.0)
    with pytest.raises(ValueError, match="min_coverage"):
        prepare_spectra(s, GRID, min_coverage=2)
    with pytest.raises(ValueError, match="continuum_degree"):
        prepare_spectra(s, GRID, continuum_degree=-1)
    with pytest.raises(TypeError, match="WavelengthGrid"):
        prepare_spectra(s, GRID.to_dict())
    pixels = Spectrum(flux=data[0] * FLUX_UNIT, spectral_axis=np.arange(WAVE.size) * u.pix)
    with pytest.raises(ValueError, match="cannot be converted to a wavelength"):
        prepare_spectra(pixels, GRID)


def test_non_monotonic_axis_is_an_error(data):
    wave = WAVE.copy()
    wave[10], wave[11] = wave[11], wave[10]
    collection = SpectrumCollection(
        flux=data[0] * FLUX_UNIT, spectral_axis=np.tile(wave, (4, 1)) * u.AA,
        uncertainty=StdDevUncertainty(data[1]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="not strictly monotonic"):
        prepare_spectra(collection, GRID)


def test_hopeless_rows_are_kept_and_flagged(data):
    flux, sigma = data
    items = spectra_1d(flux, sigma)
    nan_row = spectrum_2d(np.full(WAVE.size, np.nan), sigma[0])
    far = spectrum_2d(flux[0], sigma[0], wave=WAVE + 3000.0)
    half = spectrum_2d(flux[0, :1000], sigma[0, :1000], wave=WAVE[:1000])  # 4980-5030 A
    p = prepare_spectra([items[0], nan_row, far, half, items[1]], GRID)
    assert p.n_rows == 5
    F = QualityFlag
    assert p.flags[0] == 0 and p.flags[4] == 0
    assert p.flags[1] == F.NO_VALID_DATA | F.LOW_COVERAGE
    assert p.flags[2] == F.NO_OVERLAP | F.LOW_COVERAGE
    assert p.flags[3] == F.LOW_COVERAGE
    assert p.coverage[3] == pytest.approx(0.30, abs=0.01)
    for row in (1, 2):
        assert not p.valid[row].any() and np.isnan(p.snr[row]) and p.coverage[row] == 0
        np.testing.assert_array_equal(p.flux[row], FILL_FLUX)
        np.testing.assert_array_equal(p.sigma[row], FILL_SIGMA)
    # rows are unaffected by their hopeless neighbors
    good = prepare_spectra(items[:2], GRID)
    for row, ref in ((0, 0), (4, 1)):
        np.testing.assert_array_equal(p.flux[row], good.flux[ref])
        np.testing.assert_array_equal(p.sigma[row], good.sigma[ref])
    np.testing.assert_array_equal(prepare_spectra(half, GRID).flux[0], p.flux[3])


def test_min_valid_fraction(data):
    flux, sigma = data
    mask = np.zeros(flux.shape, bool)
    mask[:, 1::2] = True  # every other 0.05 A input pixel: grid pixels half covered
    s = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=WAVE * u.AA,
                 uncertainty=StdDevUncertainty(sigma), mask=mask)  # fmt: skip
    assert prepare_spectra(s, GRID, min_valid_fraction=0.4).coverage.min() == 1.0
    assert prepare_spectra(s, GRID, min_valid_fraction=0.6).coverage.max() == 0.0


def test_normalize_auto_rule(data):
    flux, sigma = data
    p_raw = prepare_spectra(spectrum_2d(flux, sigma), GRID)
    assert p_raw.normalized.all()  # flux with a physical unit: always normalized
    rng = np.random.default_rng(3)
    lines = 1 - 0.6 * np.exp(-0.5 * ((WAVE - LINE) / 0.3) ** 2)
    flux_n = lines * (1 + 0.02 * rng.normal(size=(4, WAVE.size)))
    sigma_n = np.full(flux_n.shape, 0.02)
    normed = Spectrum(
        flux=flux_n * 1.1 * u.one, spectral_axis=WAVE * u.AA,
        uncertainty=StdDevUncertainty(sigma_n * 1.1),
    )  # fmt: skip
    p_norm = prepare_spectra(normed, GRID)
    assert not p_norm.normalized.any()
    np.testing.assert_allclose(np.median(p_norm.flux, axis=1), 1.1, rtol=0.01)  # untouched
    percent = Spectrum(
        flux=flux_n * 100 * u.percent, spectral_axis=WAVE * u.AA,
        uncertainty=StdDevUncertainty(sigma_n * 100),
    )  # fmt: skip
    p_percent = prepare_spectra(percent, GRID)
    assert not p_percent.normalized.any()
    np.testing.assert_allclose(np.median(p_percent.flux, axis=1), 1.0, rtol=0.01)
    np.testing.assert_allclose(p_percent.snr, p_norm.snr, rtol=1e-5)
    scaled = Spectrum(
        flux=flux * u.one, spectral_axis=WAVE * u.AA, uncertainty=StdDevUncertainty(sigma)
    )
    assert prepare_spectra(scaled, GRID).normalized.all()  # dimensionless but not near 1
    assert not prepare_spectra(spectrum_2d(flux, sigma), GRID, normalize=False).normalized.any()
    assert prepare_spectra(normed, GRID, normalize=True).normalized.all()
    # mixed list: decided per top-level item
    mixed = prepare_spectra([normed, spectrum_2d(flux, sigma)], GRID)
    np.testing.assert_array_equal(mixed.normalized, [False] * 4 + [True] * 4)


def test_recovers_continuum_times_lines():
    rng = np.random.default_rng(4)
    lam = WAVE
    lines = np.ones(lam.size)
    for c in rng.uniform(4990, 5160, 60):
        lines *= 1 - rng.uniform(0.1, 0.7) * np.exp(-0.5 * ((lam - c) / 0.15) ** 2)
    x = (lam - 5075.0) / 95.0
    cont = 3.0 + 0.5 * x - 0.3 * x**2 + 0.2 * x**3
    s = Spectrum(
        flux=(cont * lines)[None, :] * FLUX_UNIT, spectral_axis=lam * u.AA,
        uncertainty=StdDevUncertainty(np.full((1, lam.size), 1e-4)),
    )  # fmt: skip
    p = prepare_spectra(s, GRID)
    reference = prepare_spectra(
        Spectrum(flux=lines[None, :] * u.one, spectral_axis=lam * u.AA,
                 uncertainty=StdDevUncertainty(np.full((1, lam.size), 1e-4))),
        GRID, normalize=False,
    )  # fmt: skip
    assert np.max(np.abs(p.flux / reference.flux - 1)) < 0.01


def test_groups_of_different_axes_are_interleaved_correctly(data):
    flux, sigma = data
    coarse = np.arange(4980.0, 5170.0, 0.08)
    f2, s2 = make_data(n=3, seed=5, wave=coarse)
    a = spectra_1d(flux, sigma)
    b = spectra_1d(f2, s2, wave=coarse)
    mixed = [a[0], b[0], a[1], b[1], a[2], b[2], a[3]]
    p = prepare_spectra(mixed, GRID)
    pa = prepare_spectra(a, GRID)
    pb = prepare_spectra(b, GRID)
    np.testing.assert_array_equal(p.flux[[0, 2, 4, 6]], pa.flux)
    np.testing.assert_array_equal(p.flux[[1, 3, 5]], pb.flux)
    np.testing.assert_array_equal(p.sigma[[1, 3, 5]], pb.sigma)
    np.testing.assert_array_equal(p.snr[[0, 2, 4, 6]], pa.snr)


def test_chunking_does_not_change_results(monkeypatch):
    import specutils_cinn.inputs.chunks as chunks_module

    flux, sigma = make_data(n=30, seed=8)
    rv = np.linspace(-50, 50, 30) * u.km / u.s
    items = spectra_1d(flux[:10], sigma[:10]) + [spectrum_2d(flux[10:], sigma[10:])]
    whole = prepare_spectra(items, GRID, radial_velocity=rv)
    monkeypatch.setattr(chunks_module, "CHUNK_ELEMENTS", 4000)  # chunks of 3 rows
    chunked = prepare_spectra(items, GRID, radial_velocity=rv)
    assert_same(chunked, whole, rtol=1e-6)
    for i in (0, 9, 10, 29):
        one = prepare_spectra(
            spectrum_2d(flux[i : i + 1], sigma[i : i + 1]), GRID, radial_velocity=rv[i : i + 1]
        )
        np.testing.assert_allclose(one.flux[0], whole.flux[i], rtol=1e-6)
        np.testing.assert_array_equal(one.valid[0], whole.valid[i])


def test_mixed_noise_sources_in_one_batch(data):
    flux, sigma = data
    with_unc = spectra_1d(flux[:2], sigma[:2])
    without = [Spectrum(flux=f * FLUX_UNIT, spectral_axis=WAVE * u.AA) for f in flux[2:]]
    mixed = prepare_spectra([with_unc[0], without[0], with_unc[1], without[1]], GRID, snr=30.0)
    a = prepare_spectra(with_unc, GRID)
    b = prepare_spectra(without, GRID, snr=30.0)
    np.testing.assert_array_equal(mixed.sigma[[0, 2]], a.sigma)
    np.testing.assert_array_equal(mixed.sigma[[1, 3]], b.sigma)
    np.testing.assert_array_equal(mixed.flux[[1, 3]], b.flux)
    estimated = prepare_spectra([with_unc[0], without[0]], GRID, snr="estimate")
    np.testing.assert_array_equal(estimated.flags & QualityFlag.NOISE_ESTIMATED, [0, 8])
    np.testing.assert_array_equal(estimated.sigma[0], a.sigma[0])


def test_collection_with_different_axes(data):
    flux, sigma = data
    shifted = WAVE + 0.013
    waves = np.stack([WAVE, shifted, WAVE, shifted])
    collection = SpectrumCollection(
        flux=flux * FLUX_UNIT, spectral_axis=waves * u.AA, uncertainty=StdDevUncertainty(sigma)
    )
    p = prepare_spectra(collection, GRID)
    items = [spectrum_2d(f, s, wave=w) for f, s, w in zip(flux, sigma, waves, strict=True)]
    assert_same(p, prepare_spectra(items, GRID))
    assert p.source_index == ((0,), (1,), (2,), (3,))


@pytest.mark.parametrize(("n_iter", "floor"), [(0, 0.0), (5, 0.0), (5, 0.97)])
def test_normalization_matches_the_public_normalizer(data, n_iter, floor):
    # what training scripts do (normalize_continuum on spectra on the grid) and what
    # prepare_spectra does at inference must agree
    from specutils_cinn.inputs.normalization import normalize_continuum

    s = spectrum_2d(*data)
    raw = prepare_spectra(s, GRID, normalize=False)
    flux_n, sigma_n, valid_n = normalize_continuum(
        raw.flux, raw.sigma, raw.valid, GRID, degree=2, n_iter=n_iter, floor=floor
    )
    p = prepare_spectra(s, GRID, continuum_degree=2, continuum_iterations=n_iter,
                        continuum_floor=floor)
    np.testing.assert_array_equal(p.valid, valid_n)
    np.testing.assert_allclose(p.flux, flux_n, rtol=1e-4)
    np.testing.assert_allclose(p.sigma, sigma_n, rtol=1e-4)
    if floor:  # a floor this high lifts the continuum somewhere: the test compares that too
        plain = prepare_spectra(s, GRID, continuum_degree=2, continuum_iterations=n_iter)
        assert not np.allclose(p.flux[p.valid], plain.flux[p.valid])
    with pytest.raises(ValueError, match="continuum_iterations"):
        prepare_spectra(s, GRID, continuum_iterations=-1)
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="continuum_floor"):
            prepare_spectra(s, GRID, continuum_floor=bad)


@pytest.mark.parametrize("unit", [u.AA, u.nm, u.THz, u.cm**-1])
def test_input_sampled_exactly_on_the_grid_keeps_its_end_pixels(unit):
    # rounding in the unit conversion must not cost the first and last grid pixels
    lam = GRID.wavelength
    rng = np.random.default_rng(12)
    flux = 1 + 0.01 * rng.normal(size=(2, lam.size))
    axis = lam.to(unit, u.spectral())
    given = flux
    if axis[0] > axis[-1]:
        axis, given = axis[::-1], flux[:, ::-1]
    s = Spectrum(
        flux=given * u.one, spectral_axis=axis, uncertainty=StdDevUncertainty(0.01 + 0 * flux)
    )
    p = prepare_spectra(s, GRID, normalize=False)
    assert p.valid.all()
    np.testing.assert_allclose(p.flux, flux, rtol=1e-6)


def test_gap_in_the_input_axis_is_not_bridged(data):
    # a chip gap removed from the array: input centers 5020.0 .. 5029.95 are missing, so
    # data cover 4979.975 .. 5019.975 and 5029.975 .. 5169.975 (0.05 A pixels)
    flux, sigma = data
    keep = (WAVE < 5020.0 - 1e-6) | (WAVE > 5029.95 + 1e-6)
    full = prepare_spectra(spectrum_2d(flux, sigma), GRID, normalize=False)
    p = prepare_spectra(spectrum_2d(flux[:, keep], sigma[:, keep], WAVE[keep]), GRID,
                        normalize=False)  # fmt: skip
    edges = np.concatenate([seg.edges[:-1] for seg in GRID.segments])
    upper = np.concatenate([seg.edges[1:] for seg in GRID.segments])
    covered = 1 - (np.minimum(upper, 5029.975) - np.maximum(edges, 5019.975)).clip(0) / 0.1
    expected = covered >= 0.5
    assert 90 < np.count_nonzero(~expected) < 110
    for row in range(len(flux)):
        np.testing.assert_array_equal(p.valid[row], expected)
    np.testing.assert_allclose(p.coverage, expected.mean())
    assert not (p.flags & QualityFlag.LOW_COVERAGE).any()
    # grid pixels entirely covered by data are the same as without the gap
    whole = covered == 1
    np.testing.assert_allclose(p.flux[:, whole], full.flux[:, whole], rtol=1e-6)
    np.testing.assert_allclose(p.sigma[:, whole], full.sigma[:, whole], rtol=1e-6)
    # also with normalization, and the pixels next to the gap keep their natural width
    # for the noise given as S/N per Angstrom
    s = Spectrum(flux=flux[:, keep] * FLUX_UNIT, spectral_axis=WAVE[keep] * u.AA)
    q = prepare_spectra(s, GRID, snr=100.0)
    np.testing.assert_array_equal(q.valid, p.valid)
    hole = np.flatnonzero(covered < 1)
    near = [hole[0] - 1, hole[-1] + 1]  # the last whole pixel before the gap, first after
    ratio = q.sigma[:, near] / np.median(q.sigma[:, q.valid[0]], axis=1)[:, None]
    np.testing.assert_allclose(ratio, 1.0, rtol=0.05)


# ------------------------------------------------------------- trust: invalid uncertainties
_UNC_CLASSES = {"std": StdDevUncertainty, "var": VarianceUncertainty, "ivar": InverseVariance}


@pytest.mark.parametrize(
    "marking",
    ["std=-1", "std=0", "std=nan", "std=inf", "var=-1", "var=0", "var=nan", "var=inf",
     "ivar=-1", "ivar=0", "ivar=nan", "ivar=inf"],
)
def test_non_positive_or_non_finite_uncertainty_marks_an_invalid_pixel(data, marking):
    # pipelines mark bad pixels with sigma = -1, variance 0, inverse variance 0, ...: such a
    # pixel must count as invalid exactly like a masked one, never with its sign dropped
    flux, sigma = data
    kind, value = marking.split("=")
    bad = np.zeros(flux.shape, bool)
    bad[:, 1000:1100] = True  # 5030-5035 A
    bad[2, 1500:] = True  # from 5055 A: all of segment R
    garbage = np.where(bad, 0.0, flux)  # what such pipelines store at bad pixels
    good_unc = {"std": sigma, "var": sigma**2, "ivar": 1 / sigma**2}[kind]
    marked = np.where(bad, float(value), good_unc)
    cls = _UNC_CLASSES[kind]
    s = Spectrum(flux=garbage * FLUX_UNIT, spectral_axis=WAVE * u.AA, uncertainty=cls(marked))
    masked = Spectrum(flux=garbage * FLUX_UNIT, spectral_axis=WAVE * u.AA,
                      uncertainty=cls(good_unc), mask=bad)
    p, ref = prepare_spectra(s, GRID), prepare_spectra(masked, GRID)
    assert_same(p, ref)
    np.testing.assert_array_equal(p.content_hash, ref.content_hash)  # hence the same draws
    lam = GRID.wavelength.value
    assert not p.valid[:, (lam > 5030.05) & (lam < 5034.95)].any()
    assert p.coverage[2] < 0.5 and p.flags[2] & QualityFlag.LOW_COVERAGE


# ------------------------------------------------------- trust: hopeless and invalid inputs
@pytest.mark.parametrize("case", ["zeros", "negative", "two pixels", "constant zero noise"])
def test_rows_without_a_valid_grid_pixel_get_no_valid_data(data, case):
    # inputs that overlap the grid but leave no valid grid pixel (the continuum fit fails
    # on zero or negative flux, or the spectrum is too short to cover one grid pixel)
    flux, sigma = data
    if case == "two pixels":
        s = Spectrum(flux=[2.0, 2.0] * FLUX_UNIT, spectral_axis=[5020.0, 5020.05] * u.AA,
                     uncertainty=StdDevUncertainty([0.01, 0.01]))
    elif case == "constant zero noise":
        s = Spectrum(flux=np.ones(WAVE.size) * FLUX_UNIT, spectral_axis=WAVE * u.AA)
    else:
        level = 0.0 if case == "zeros" else -1.0
        s = spectrum_2d(np.full(WAVE.size, level), sigma[0])
    p = prepare_spectra([spectrum_2d(flux[0], sigma[0]), s], GRID,
                        snr="estimate" if case == "constant zero noise" else None)
    assert p.flags[0] == 0
    assert p.coverage[1] == 0 and not p.valid[1].any() and np.isnan(p.snr[1])
    assert p.flags[1] & QualityFlag.NO_VALID_DATA and p.flags[1] & QualityFlag.LOW_COVERAGE
    assert not p.flags[1] & QualityFlag.NO_OVERLAP


@pytest.mark.parametrize(
    "unit",
    [u.K, u.m, u.s, u.kg, u.km / u.s, u.mag, u.A, u.K / u.AA, u.deg_C, u.mol],
    ids=str,
)
def test_flux_in_a_unit_that_is_no_flux_is_rejected(data, unit):
    flux, sigma = data
    s = Spectrum(flux=flux * unit, spectral_axis=WAVE * u.AA, uncertainty=StdDevUncertainty(sigma))
    with pytest.raises(u.UnitsError, match=f"flux unit '{unit}'") as info:
        prepare_spectra(s, GRID)
    assert isinstance(info.value, ValueError)  # both: the CLI and users catch ValueError


@pytest.mark.parametrize(
    "unit",
    [u.one, u.percent, u.Jy, u.mJy, u.erg / u.s / u.cm**2 / u.AA, u.W / u.m**2 / u.nm,
     u.erg / u.s / u.cm**2 / u.Hz, u.photon / u.s / u.cm**2 / u.AA, u.ct, u.electron / u.s,
     u.adu, u.ct / u.pix, u.erg / u.s / u.cm**2 / u.AA / u.arcsec**2, u.Jy / u.sr,
     u.erg / u.s / u.AA, u.erg / u.s / u.cm**2, u.photon / u.s / u.cm**2 / u.keV],
    ids=str,
)
def test_flux_density_count_and_dimensionless_units_are_accepted(data, unit):
    flux, sigma = data
    s = Spectrum(flux=flux * unit, spectral_axis=WAVE * u.AA, uncertainty=StdDevUncertainty(sigma))
    assert prepare_spectra(s, GRID).coverage.min() == 1.0


@pytest.mark.parametrize("start", [0, 1])
def test_pixel_numbers_as_spectral_axis_are_rejected(start):
    # specutils reads a FITS spectrum without a wavelength solution with the pixel numbers
    # 1..N as "Angstrom"; 6000 such pixels "overlap" the grid at 5000-5150 A
    n = 6000
    s = Spectrum(flux=np.ones(n) * FLUX_UNIT, spectral_axis=(np.arange(n) + start) * u.AA,
                 uncertainty=StdDevUncertainty(np.full(n, 0.01)))
    with pytest.raises(ValueError, match="pixel numbers.*no wavelength solution"):
        prepare_spectra(s, GRID)
    ok = Spectrum(flux=np.ones(n) * FLUX_UNIT, spectral_axis=(np.arange(n) + 4990.0) * u.AA,
                  uncertainty=StdDevUncertainty(np.full(n, 0.01)))
    assert prepare_spectra(ok, GRID).coverage[0] == 1.0  # integer Angstrom axes are fine


def test_fits_file_without_wavelength_solution_is_rejected(tmp_path):
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.ones(6000))
    hdu.header["BUNIT"] = "erg / (s cm2 Angstrom)"
    hdu.writeto(tmp_path / "no_wcs.fits")
    s = Spectrum.read(tmp_path / "no_wcs.fits", format="wcs1d-fits")
    assert s.spectral_axis.unit == u.AA  # what specutils makes of it
    with pytest.raises(ValueError, match="pixel numbers"):
        prepare_spectra(s, GRID, snr=50.0)


def test_spectral_axis_in_pixels_names_the_problem(data):
    pixels = Spectrum(flux=data[0] * FLUX_UNIT, spectral_axis=np.arange(WAVE.size) * u.pix)
    with pytest.raises(ValueError, match="'pix'.*no wavelength solution"):
        prepare_spectra(pixels, GRID, snr=50.0)


# ------------------------------------------------- trust: a row depends on its spectrum alone
def test_normalize_auto_is_decided_per_spectrum():
    # one normalized spectrum among dimensionless spectra that are not: the decision used to
    # follow the median of the whole input item, so the row changed with its neighbors
    rng = np.random.default_rng(5)
    lines = 1 - 0.6 * np.exp(-0.5 * ((WAVE - LINE) / 0.3) ** 2)
    flux = lines * (1 + 0.01 * rng.normal(size=(4, WAVE.size)))
    flux[1:] *= 2.5
    sigma = np.full(flux.shape, 0.01)
    block = Spectrum(flux=flux * u.one, spectral_axis=WAVE * u.AA,
                     uncertainty=StdDevUncertainty(sigma))
    p = prepare_spectra(block, GRID)
    np.testing.assert_array_equal(p.normalized, [False, True, True, True])
    for i in range(4):
        alone = prepare_spectra(Spectrum(flux=flux[i] * u.one, spectral_axis=WAVE * u.AA,
                                         uncertainty=StdDevUncertainty(sigma[i])), GRID)
        assert alone.normalized[0] == p.normalized[i]
        np.testing.assert_allclose(alone.flux[0], p.flux[i], rtol=1e-6)


@pytest.mark.parametrize("noise", ["uncertainty", "snr", "estimate"])
def test_rows_do_not_depend_on_their_neighbors(noise):
    # radial velocities spread over +-400 km/s: the input window of the group is wider
    # than any one row's; nothing computed for a row may use pixels outside its own window
    flux, sigma = make_data(n=6, seed=11)
    rv = np.array([-400.0, -120.0, 0.0, 35.0, 210.0, 400.0]) * u.km / u.s
    unc = StdDevUncertainty(sigma) if noise == "uncertainty" else None
    kw = {"snr": {"uncertainty": None, "snr": 40.0, "estimate": "estimate"}[noise]}
    block = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=WAVE * u.AA, uncertainty=unc)
    batch = prepare_spectra(block, GRID, radial_velocity=rv, **kw)
    assert batch.coverage.min() > 0.9
    perm = np.array([3, 5, 0, 2, 4, 1])
    shuffled = Spectrum(flux=flux[perm] * FLUX_UNIT, spectral_axis=WAVE * u.AA,
                        uncertainty=None if unc is None else StdDevUncertainty(sigma[perm]))
    mixed = prepare_spectra(shuffled, GRID, radial_velocity=rv[perm], **kw)
    for i in range(6):
        one = Spectrum(flux=flux[i] * FLUX_UNIT, spectral_axis=WAVE * u.AA,
                       uncertainty=None if unc is None else StdDevUncertainty(sigma[i]))
        alone = prepare_spectra(one, GRID, radial_velocity=rv[i], **kw)
        j = int(np.flatnonzero(perm == i)[0])
        for other, row in ((batch, i), (mixed, j)):
            np.testing.assert_array_equal(alone.valid[0], other.valid[row])
            np.testing.assert_allclose(alone.flux[0], other.flux[row], rtol=1e-6)
            np.testing.assert_allclose(alone.sigma[0], other.sigma[row], rtol=1e-6)
            np.testing.assert_allclose(alone.snr[0], other.snr[row], rtol=1e-6)
            assert alone.flags[0] == other.flags[row]
            assert alone.content_hash[0] == other.content_hash[row]


def test_content_hash_identifies_the_spectrum_not_its_position(data):
    flux, sigma = data
    ref = prepare_spectra(spectrum_2d(flux, sigma), GRID).content_hash
    assert ref.dtype == np.uint64 and ref.shape == (4,) and len(set(ref.tolist())) == 4
    items = spectra_1d(flux, sigma)
    hopeless = spectrum_2d(flux[0], sigma[0], wave=WAVE + 3000.0)
    collection = SpectrumCollection(flux=flux * FLUX_UNIT,
                                    spectral_axis=np.tile(WAVE, (4, 1)) * u.AA,
                                    uncertainty=StdDevUncertainty(sigma))
    decreasing = spectrum_2d(flux[:, ::-1], sigma[:, ::-1], wave=WAVE[::-1])
    axis_first = Spectrum(flux=flux.T * FLUX_UNIT, spectral_axis=WAVE * u.AA,
                          spectral_axis_index=0, uncertainty=StdDevUncertainty(sigma.T))
    no_mask = prepare_spectra(items, GRID).content_hash
    np.testing.assert_array_equal(no_mask, ref)
    np.testing.assert_array_equal(prepare_spectra(items[::-1], GRID).content_hash, ref[::-1])
    np.testing.assert_array_equal(
        prepare_spectra([hopeless, items[2], [items[0]]], GRID).content_hash[1:], ref[[2, 0]])
    in_thz = Spectrum(flux=flux[:, ::-1] * FLUX_UNIT,
                      spectral_axis=(WAVE[::-1] * u.AA).to(u.THz, u.spectral()),
                      uncertainty=StdDevUncertainty(sigma[:, ::-1]))
    for variant in (collection, decreasing, axis_first, in_thz):
        np.testing.assert_array_equal(prepare_spectra(variant, GRID).content_hash, ref)
    # the same values at other radial velocities or S/N arguments: the same spectrum
    np.testing.assert_array_equal(
        prepare_spectra(items, GRID, radial_velocity=30 * u.km / u.s).content_hash, ref)
    # any change of the data changes that row's hash only
    changed = [flux.copy(), sigma.copy(), np.zeros(flux.shape, bool)]
    for k, arr in enumerate(changed):
        arr[1, 2000] = True if arr.dtype == bool else arr[1, 2000] * 1.000001
        s = Spectrum(flux=changed[0] * FLUX_UNIT, spectral_axis=WAVE * u.AA,
                     uncertainty=StdDevUncertainty(changed[1]), mask=changed[2])
        h = prepare_spectra(s, GRID).content_hash
        assert h[1] != ref[1], k
        np.testing.assert_array_equal(h[[0, 2, 3]], ref[[0, 2, 3]])
        arr[1, 2000] = False if arr.dtype == bool else (flux, sigma)[k][1, 2000]
    other_unit = Spectrum(flux=flux * u.Jy, spectral_axis=WAVE * u.AA,
                          uncertainty=StdDevUncertainty(sigma))
    assert not np.any(prepare_spectra(other_unit, GRID).content_hash == ref)


def test_noise_estimated_flag_does_not_depend_on_the_neighbors():
    # found by the fuzz suite: a spectrum just outside the grid got NOISE_ESTIMATED only
    # when a neighbor's radial velocity made the group's window reach the grid
    wave = np.array([5151.0, 5152.0, 5153.0, 5154.0]) * u.AA
    s = Spectrum(flux=np.ones((2, 4)) * FLUX_UNIT, spectral_axis=wave)
    both = prepare_spectra(s, GRID, snr="estimate", radial_velocity=[0.0, 300.0] * u.km / u.s)
    one = Spectrum(flux=np.ones(4) * FLUX_UNIT, spectral_axis=wave)
    alone = prepare_spectra(one, GRID, snr="estimate", radial_velocity=0.0 * u.km / u.s)
    assert alone.flags[0] == both.flags[0] == QualityFlag.NO_OVERLAP | QualityFlag.LOW_COVERAGE \
        | QualityFlag.NOISE_ESTIMATED


def test_a_mostly_missing_segment_is_flagged_even_with_enough_pixels_overall(data):
    """Segment B whole and R to 40 %: 70 % of all pixels are valid, but one segment (one
    4MOST arm) is mostly missing, which the models never saw; LOW_COVERAGE says so."""
    flux, sigma = data
    keep = WAVE < 5120.0  # R (5100-5150 A) covered to 40 %
    p = prepare_spectra(spectrum_2d(flux[:, keep], sigma[:, keep], WAVE[keep]), GRID)
    assert np.all((p.coverage > 0.6) & (p.coverage < 0.8))
    assert np.all(p.flags & QualityFlag.LOW_COVERAGE)
    # R to 60 %: each segment above min_coverage, no flag
    keep = WAVE < 5130.0
    p = prepare_spectra(spectrum_2d(flux[:, keep], sigma[:, keep], WAVE[keep]), GRID)
    assert not np.any(p.flags & QualityFlag.LOW_COVERAGE)
    # the threshold is min_coverage, per segment as overall
    p = prepare_spectra(spectrum_2d(flux[:, keep], sigma[:, keep], WAVE[keep]), GRID,
                        min_coverage=0.7)
    assert np.all(p.flags & QualityFlag.LOW_COVERAGE)
