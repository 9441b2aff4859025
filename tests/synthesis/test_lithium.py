"""3D NLTE lithium from breidablik: wavelengths, coverage, profiles, provenance, Li-free runs."""

import sys

import astropy.units as u
import numpy as np
import pytest

from specutils_cinn.synthesis import lithium
from specutils_cinn.synthesis.lithium import (
    LI_FREE_A_LI,
    apply_3d_nlte_lithium,
    breidablik_coverage,
    li_free_labels,
    lithium_abundance,
    lithium_profile,
    lithium_windows,
)

SUN = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0, "a_li": 1.05}
LI_CORE = np.arange(6706.0, 6710.0, 0.001)

INSIDE = [
    (5772, 4.44, 0.0, 1.05),      # Sun
    (4750, 2.0, -2.5, 1.0),       # metal-poor giant, between the -3 and -2 nodes
    (4500, 2.0, 0.0, 2.5),        # Li-rich giant
    (6300, 4.2, -2.5, 2.2),       # Spite-plateau dwarf
    (4600, 2.0, -3.5, 0.8),       # very metal-poor giant
    (6900, 4.5, 0.0, 2.0),        # hot dwarf (a 6918 K model at log g 4.5)
    (5000, 4.0, -4.0, -0.5),      # edges of [Fe/H] and A(Li) are inside
    (5000, 4.0, 0.5, 4.0),
]
OUTSIDE = [
    (5600, 2.5, -2.0, 2.0),       # giant hotter than the 5454/5517 K models at log g 2.5
    (6000, 2.0, 0.0, 2.0),        # giant above 5500 K
    (6500, 2.0, -1.0, 1.0),
    (7000, 4.0, -3.0, 1.0),       # Teff > 6500 K at log g 4 ([Fe/H] = -3 ends at 6504 K)
    (5772, 4.44, -4.5, 1.0),      # [Fe/H] below -4 (breidablik's own check does not warn)
    (5772, 4.44, 0.6, 1.0),
    (5772, 4.44, 0.0, 4.5),       # A(Li) above 4.0
    (5772, 4.44, 0.0, -0.6),      # A(Li) below -0.5
    (4200, 1.5, 0.3, 1.0),        # no log g 1.5 models at +0.5
    (4600, 1.5, -3.5, 0.8),       # log g 1.5: 3999-4539 K at -3, only 4584 K at -4
    (5000, 5.2, 0.0, 1.0),        # log g above 5
    (3800, 2.5, 0.0, 1.0),        # cooler than every model
    (np.nan, 4.44, 0.0, 1.0),
]


def _parabola_vertex(x, y):
    i = int(np.argmin(y))
    (a, b, c), h = y[i - 1:i + 2], x[i] - x[i - 1]
    return x[i] + 0.5 * h * (a - c) / (a - 2 * b + c)


def test_three_windows_in_air():
    windows = lithium_windows()
    assert len(windows) == 3
    for (start, stop), line in zip(windows, (6103.6, 6707.8, 8126.3), strict=True):
        assert start < line < stop
    # vacuum nm 669.1448-672.7972 -> air A; the shift is about 1.85 A at 6708
    assert windows[1][0] == pytest.approx(6691.448 - 1.848, abs=0.01)
    assert windows[1][1] == pytest.approx(6727.972 - 1.853, abs=0.01)


def test_resonance_line_minimum_at_its_air_wavelength():
    (wave, flux), = (w for w in lithium._native_profile(5772.0, 4.44, 0.0, 1.05)
                     if w[0][0] < 6708 < w[0][-1])
    assert 6707.76 <= _parabola_vertex(wave, flux) <= 6707.77
    assert wave[np.argmin(flux)] == pytest.approx(6707.765, abs=0.01)
    prof = lithium_profile(LI_CORE, 5772, 4.44, 0.0, 1.05)
    assert 6707.76 <= LI_CORE[np.argmin(prof)] <= 6707.775


def test_sun_depth_as_in_the_notes():
    prof = lithium_profile(LI_CORE, 5772, 4.44, 0.0, 1.05)
    assert prof.min() == pytest.approx(0.9855, abs=0.002)


def test_profile_is_one_outside_the_windows_and_at_most_one_inside():
    outside = np.array([4602.9, 6000.0, 6500.0, 6689.0, 6727.0, 7000.0, 8150.0, 9000.0])
    np.testing.assert_array_equal(lithium_profile(outside, 4500, 2.0, 0.0, 4.0), 1.0)
    for start, stop in lithium_windows():
        wave = np.linspace(start, stop, 4001)
        prof = lithium_profile(wave, 4500, 2.0, 0.0, 4.0)
        assert np.all(prof <= 1.0) and np.all(prof > 0.0)
        assert prof.min() < 0.8                 # all three lines are strong here
        assert prof[0] == pytest.approx(1.0, abs=1e-6) and prof[-1] == pytest.approx(1.0,
                                                                                   abs=1e-6)


def test_profile_shape_and_units():
    wave = np.linspace(6705, 6710, 12).reshape(3, 4)
    prof = lithium_profile(wave, 5772, 4.44, 0.0, 1.05)
    assert prof.shape == (3, 4)
    np.testing.assert_allclose(lithium_profile((wave * u.AA).to(u.nm), 5772, 4.44, 0.0, 1.05),
                               prof)


def test_higher_lithium_deeper_line():
    a_li = [-0.5, 0.5, 1.5, 2.5, 3.5]
    depth = [1 - lithium_profile(LI_CORE, 4750, 2.0, -2.5, a).min() for a in a_li]
    ew = [np.trapezoid(1 - lithium_profile(LI_CORE, 4750, 2.0, -2.5, a), LI_CORE) for a in a_li]
    assert np.all(np.diff(depth) > 0) and np.all(np.diff(ew) > 0)


def test_interpolated_not_rebinned():
    (wave, flux), = (w for w in lithium._native_profile(4500.0, 2.0, 0.0, 2.5)
                     if w[0][0] < 6708 < w[0][-1])
    core = wave[(wave > 6707) & (wave < 6709)]
    np.testing.assert_allclose(lithium_profile(core, 4500, 2.0, 0.0, 2.5),
                               np.interp(core, wave, flux), rtol=0, atol=1e-12)


def test_exactly_on_a_grid_node():
    # 5510.26/4.5/0/2.0 is an RBF node; there breidablik's kernel r^2 log r is 0 * -inf
    node = (5510.26, 4.5, 0.0, 2.0)
    with np.errstate(all="ignore"):
        assert np.isnan(lithium._spectra().predict_flux(*node)).all()
    prof = lithium_profile(LI_CORE, *node)
    assert np.all(np.isfinite(prof))
    near = [lithium_profile(LI_CORE, node[0] + dt, *node[1:]) for dt in (-0.01, 0.01)]
    np.testing.assert_allclose(prof, 0.5 * (near[0] + near[1]), rtol=0, atol=1e-5)


def test_coverage_tolerates_rounding():
    assert breidablik_coverage(5000, 4.0, 0.5000000000000002, 4.0000000000000001)
    assert not breidablik_coverage(5000, 4.0, 0.5001, 2.0)


@pytest.mark.parametrize("star", INSIDE)
def test_coverage_inside(star):
    assert breidablik_coverage(*star) is True


@pytest.mark.parametrize("star", OUTSIDE)
def test_coverage_outside(star):
    assert breidablik_coverage(*star) is False


def test_coverage_vectorized():
    stars = np.array(INSIDE + OUTSIDE, dtype=float)
    got = breidablik_coverage(*stars.T)
    assert got.dtype == bool and got.shape == (len(stars),)
    np.testing.assert_array_equal(got, [True] * len(INSIDE) + [False] * len(OUTSIDE))
    grid = breidablik_coverage(np.array([[4800.0], [6000.0]]), [2.0, 4.0], 0.0, 1.0)
    np.testing.assert_array_equal(grid, [[True, True], [False, True]])


def test_coverage_follows_the_stagger_rows():
    rows, tmin, tmax = lithium._coverage_table()[0.0]
    # log g 2.0 at solar [Fe/H]: models from 4053 to 4932 K
    assert breidablik_coverage(tmax[1] - 1, 2.0, 0.0, 1.0)
    assert not breidablik_coverage(tmax[1] + 1, 2.0, 0.0, 1.0)
    # halfway between the log g 2.0 and 2.5 rows the limit is halfway
    mid = 0.5 * (tmax[1] + tmax[2])
    assert breidablik_coverage(mid - 1, 2.25, 0.0, 1.0)
    assert not breidablik_coverage(mid + 1, 2.25, 0.0, 1.0)
    # between [Fe/H] nodes both must cover the star: 6900 K at log g 4.5 exists at 0 and -1
    # (6918, 7041 K) but not at +0.5 (6445 K)
    assert breidablik_coverage(6900, 4.5, -0.5, 1.0)
    assert not breidablik_coverage(6900, 4.5, 0.25, 1.0)


def test_profile_refuses_stars_outside():
    with pytest.raises(ValueError, match="outside breidablik's grid"):
        lithium_profile(LI_CORE, 6000, 2.0, 0.0, 2.0)


def test_lithium_abundance_from_labels():
    assert lithium_abundance({"fe_h": -1.0, "a_li": 2.2, "li_fe": 0.5}) == 2.2
    assert lithium_abundance({"fe_h": -1.0, "li_fe": 0.5}) == pytest.approx(1.05 - 1.0 + 0.5)
    assert lithium_abundance({"fe_h": -1.0, "a_li": float("nan")}) == pytest.approx(0.05)


def test_li_free_labels():
    labels = {**SUN, "mg_fe": 0.1}
    free = li_free_labels(labels)
    assert free == {**labels, "a_li": LI_FREE_A_LI} and labels["a_li"] == 1.05
    rel = li_free_labels({"teff": 5772, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0, "li_fe": 0.0})
    assert rel["a_li"] == LI_FREE_A_LI and "li_fe" not in rel
    hot_giant = {**SUN, "teff": 6000.0, "logg": 2.0}
    assert li_free_labels(hot_giant) == hot_giant
    with pytest.raises(KeyError, match="teff"):
        li_free_labels({"logg": 4.4, "fe_h": 0.0})


def test_apply_inside_and_provenance():
    waves = [np.arange(6100.0, 6110.0, 0.01), np.arange(6690.0, 6725.0, 0.01),
             np.arange(5000.0, 5010.0, 0.01)]
    fluxes = [np.full(w.size, 0.9) for w in waves]
    out, prov = apply_3d_nlte_lithium(waves, fluxes, SUN)
    assert prov == {"li_physics": "3D NLTE (breidablik 1.5.1)", "physics": "1D LTE, 3D NLTE Li",
                    "li_3d_nlte": True, "a_li": 1.05}
    for w, f, o in zip(waves, fluxes, out, strict=True):
        np.testing.assert_allclose(o, f * lithium_profile(w, 5772, 4.44, 0.0, 1.05))
    np.testing.assert_array_equal(out[2], 0.9)
    assert out[1].min() == pytest.approx(0.9 * 0.9855, abs=0.002)


def test_apply_outside_keeps_1d_lte():
    star = {**SUN, "a_li": 4.5}
    waves = [np.arange(6690.0, 6725.0, 0.01)]
    fluxes = [np.linspace(0.5, 1.0, waves[0].size)]
    out, prov = apply_3d_nlte_lithium(waves, fluxes, star)
    assert prov["li_physics"] == "1D LTE (outside breidablik range)"
    assert prov["physics"] == "1D LTE" and prov["li_3d_nlte"] is False
    np.testing.assert_array_equal(out[0], fluxes[0])
    assert out[0] is not fluxes[0]


def test_apply_checks_shapes():
    with pytest.raises(ValueError, match="flux arrays"):
        apply_3d_nlte_lithium([np.arange(3.0)], [], SUN)
    with pytest.raises(ValueError, match="shape"):
        apply_3d_nlte_lithium([np.arange(3.0)], [np.ones(4)], SUN)


def test_trapz_shim_is_local_to_breidablik():
    import breidablik.analysis.tools as tools
    from breidablik.analysis import read

    had_trapz = hasattr(np, "trapz")
    lithium._import_breidablik()
    assert hasattr(np, "trapz") == had_trapz        # numpy itself is not patched
    flux = lithium._spectra().predict_flux(5772, 4.44, 0.0, 1.05)
    assert tools.rew(read.get_wavelengths(), flux) == pytest.approx(-6.26, abs=0.02)


def test_missing_breidablik_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "breidablik" or m.startswith("breidablik.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "breidablik", None)
    for call in (lambda: lithium._import_breidablik(),
                 lambda: breidablik_coverage(5772, 4.44, 0.0, 1.05),
                 lambda: lithium_profile(LI_CORE, 5772, 4.44, 0.0, 1.05),
                 lambda: li_free_labels(SUN)):
        with pytest.raises(ImportError, match=r"breidablik.*specutils-cinn\[synthesis\]"):
            call()


def _window_lists(install, tmp_path):
    from specutils_cinn.synthesis.linelists import (
        read_turbospectrum_linelist,
        write_turbospectrum_linelist,
    )

    lines = read_turbospectrum_linelist(install.ges_linelist)
    near = (lines["wavelength"] > 6702) & (lines["wavelength"] < 6714)
    with_li, no_li = tmp_path / "with_li.ts", tmp_path / "no_li.ts"
    write_turbospectrum_linelist(lines[near], with_li, comment="test")
    write_turbospectrum_linelist(lines[near & (lines["element"] != 3)], no_li, comment="test")
    return with_li, no_li


@pytest.mark.slow  # several Turbospectrum runs
def test_turbospectrum_li_lines_vanish(synthesis_install, tmp_path):
    from specutils_cinn.synthesis.turbospectrum import synthesize

    with_li, no_li = _window_lists(synthesis_install, tmp_path)
    star = {"teff": 4500.0, "logg": 2.0, "fe_h": 0.0, "vmic": 1.5, "a_li": 4.0}
    window = [(6704.0, 6712.0, 0.01)]
    full = synthesize(star, window, install=synthesis_install, line_lists=[with_li])
    free = synthesize(li_free_labels(star), window, install=synthesis_install,
                      line_lists=[with_li])
    none = synthesize(star, window, install=synthesis_install, line_lists=[no_li])
    assert free.abundances["Li"] == LI_FREE_A_LI
    assert np.max(1 - full.flux[0] / none.flux[0]) > 0.5        # a strong line to remove
    assert np.max(np.abs(free.flux[0] - none.flux[0])) < 1e-4
