"""degrade_spectrum: a specutils Spectrum to an instrument setup's grid."""

import astropy.units as u
import numpy as np
import pytest
from specutils import Spectrum

from specutils_cinn.instruments import InstrumentSetup, degrade, degrade_spectrum, fourmost_setup
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid


def _line_spectrum(lo=5100.0, hi=6850.0, step=0.01, centers=(5500.0, 6500.0)):
    wave = np.arange(lo, hi, step)
    flux = np.ones_like(wave)
    for c in centers:
        flux -= 0.6 * np.exp(-0.5 * ((wave - c) / 0.04) ** 2)
    return wave, flux


def test_matches_array_degrade_where_covered():
    wave, flux = _line_spectrum()
    setup = fourmost_setup("hr", step=0.1)
    out = degrade_spectrum(Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA), setup,
                           input_resolving_power=100000.0)
    assert out.flux.shape == (setup.grid.npix,)
    assert out.meta["medium"] == "air"
    assert out.meta["resolving_power"]["HG"] == 20000.0
    hb, hg, hr = setup.grid.segment_slices
    assert np.all(np.isnan(out.flux.value[hb]))  # the blue arm is not covered
    one = InstrumentSetup("x", WavelengthGrid((setup.grid.segments[1],), "air"), 20000.0)
    ref = degrade(wave, flux, one, input_resolving_power=100000.0)
    np.testing.assert_allclose(out.flux.value[hg], ref, atol=1e-10)


def test_gaps_and_bad_pixels_become_nan_not_bridged():
    wave, flux = _line_spectrum()
    flux[(wave > 5400) & (wave < 5410)] = 0.0  # a chip gap stored as zeros
    keep = (wave < 6200) | (wave > 6300)  # a stretch missing from the file
    spec = Spectrum(flux=flux[keep] * u.one, spectral_axis=wave[keep] * u.AA)
    out = degrade_spectrum(spec, fourmost_setup("hr", step=0.1))
    w, f = out.spectral_axis.value, out.flux.value
    assert np.all(np.isnan(f[(w > 5400) & (w < 5410)]))
    assert np.all(np.isnan(f[(w > 6200) & (w < 6300)]))
    assert np.all(np.isfinite(f[(w > 5420) & (w < 5700)]))
    assert np.all(np.isfinite(f[(w > 6310) & (w < 6780)]))


def test_mask_is_honored():
    wave, flux = _line_spectrum()
    mask = (wave > 6000) & (wave < 6400)
    spec = Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA, mask=mask)
    out = degrade_spectrum(spec, fourmost_setup("hr", step=0.1))
    w, f = out.spectral_axis.value, out.flux.value
    assert np.all(np.isnan(f[(w > 6100) & (w < 6400)]))


def test_line_is_broadened_to_the_setup_resolution():
    wave, flux = _line_spectrum()
    seg = GridSegment("r", 6400.0, 6600.0, 0.05)
    for r in (20000.0, 6500.0):
        out = degrade_spectrum(Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA),
                               InstrumentSetup("x", WavelengthGrid((seg,), "air"), r))
        f = out.flux.value
        depth = 1 - np.nanmin(f)
        # equivalent width is conserved, the depth follows the width of the LSF
        ew = np.nansum(1 - f) * 0.05
        assert ew == pytest.approx(0.6 * 0.04 * np.sqrt(2 * np.pi), rel=0.02)
        sigma = np.hypot(0.04, 6500.0 / r / 2.3548)
        assert depth == pytest.approx(0.6 * 0.04 / sigma, rel=0.05)


@pytest.mark.parametrize("bad, match", [
    ("not a spectrum", "specutils Spectrum"),
    ("frequency", "wavelength"),
    ("no overlap", "does not cover"),
    ("2d", "1-D"),
])
def test_errors(bad, match):
    wave, flux = _line_spectrum()
    setup = fourmost_setup("hr", step=0.1)
    if bad == "not a spectrum":
        arg = flux
    elif bad == "frequency":
        arg = Spectrum(flux=flux * u.one, spectral_axis=(wave * u.AA).to(u.THz,
                                                                        u.spectral())[::-1])
    elif bad == "no overlap":
        arg = Spectrum(flux=np.ones(100) * u.one, spectral_axis=np.linspace(8000, 8100, 100)
                       * u.AA)
    else:
        arg = Spectrum(flux=np.ones((2, 100)) * u.one,
                       spectral_axis=np.linspace(6000, 6100, 100) * u.AA)
    with pytest.raises((TypeError, ValueError), match=match):
        degrade_spectrum(arg, setup)


def test_input_resolving_power_below_setup_is_rejected():
    wave, flux = _line_spectrum()
    with pytest.raises(ValueError, match="must exceed"):
        degrade_spectrum(Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA),
                         fourmost_setup("hr"), input_resolving_power=10000.0)
