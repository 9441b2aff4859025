"""Tests of the batched continuum normalizer."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import legendre

from specutils_cinn.inputs.normalization import (
    Normalization,
    fit_continuum,
    fit_segment_continuum,
    normalize_continuum,
)
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid(
    (
        GridSegment("B", 4000.0, 4300.0, 0.1),  # 3001 pixels: fitted on a stride
        GridSegment("G", 5200.0, 5400.0, 0.25),  # 801 pixels
    )
)


def synthetic(n, seed, noise=0.0):
    """Legendre continua (different per segment) times absorption lines."""
    rng = np.random.default_rng(seed)
    lam = GRID.wavelength.value
    cont = np.empty((n, GRID.npix))
    for sl in GRID.segment_slices:
        x = np.linspace(-1, 1, sl.stop - sl.start)
        c = rng.uniform(-0.15, 0.15, (n, 4))
        c[:, 0] = rng.uniform(1.0, 5.0, n)
        cont[:, sl] = legendre.legval(x, c.T)
    lines = np.ones((n, GRID.npix))
    for center in rng.uniform(lam[0], lam[-1], 150):
        depth = rng.uniform(0.05, 0.7)
        lines *= 1 - depth * np.exp(-0.5 * ((lam - center) / 0.3) ** 2)
    flux = cont * lines * (1 + noise * rng.normal(size=cont.shape))
    return flux, cont, lines


def test_recovers_continuum_noise_free():
    flux, cont, lines = synthetic(6, 0)
    valid = np.ones(flux.shape, bool)
    fitted_cont, fitted = fit_continuum(flux, valid, GRID)
    assert fitted.all()
    np.testing.assert_allclose(fitted_cont, cont, rtol=1e-3)
    flux_n, sigma_n, valid_n = normalize_continuum(flux, 0.01 * flux, valid, GRID)
    assert valid_n.all()
    np.testing.assert_allclose(flux_n, lines, rtol=1e-3)
    np.testing.assert_allclose(sigma_n, 0.01 * lines, rtol=1e-3)


def test_recovers_continuum_with_noise_within_one_percent():
    flux, cont, _ = synthetic(6, 1, noise=0.01)
    fitted_cont, _ = fit_continuum(flux, np.ones(flux.shape, bool), GRID)
    assert np.max(np.abs(fitted_cont / cont - 1)) < 0.01


def test_invalid_pixels_are_ignored():
    flux, cont, _ = synthetic(3, 2)
    valid = np.ones(flux.shape, bool)
    valid[:, 100:400] = False
    garbage = flux.copy()
    garbage[:, 100:400] = np.nan
    garbage[0, 100:400] = 1e30
    c1, _ = fit_continuum(flux, valid, GRID)
    c2, _ = fit_continuum(garbage, valid, GRID)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(c2, cont, rtol=2e-3)
    _, _, valid_n = normalize_continuum(garbage, None, valid, GRID)
    np.testing.assert_array_equal(valid_n, valid)


def test_rows_are_fitted_independently():
    flux, _, _ = synthetic(20, 3, noise=0.02)
    valid = np.ones(flux.shape, bool)
    together, _ = fit_continuum(flux, valid, GRID)
    for i in (0, 7, 19):
        alone, _ = fit_continuum(flux[i : i + 1], valid[i : i + 1], GRID)
        # identical up to the rounding of the matrix products (which depends on block size)
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-12)


def test_too_few_pixels_invalidates_the_segment_only():
    flux, _, _ = synthetic(2, 4)
    valid = np.ones(flux.shape, bool)
    valid[0, GRID.segment_slices[1]] = False
    valid[0, GRID.segment_slices[1].start + 5] = True  # a single valid pixel
    cont, fitted = fit_continuum(flux, valid, GRID)
    np.testing.assert_array_equal(fitted, [[True, False], [True, True]])
    assert np.all(np.isnan(cont[0, GRID.segment_slices[1]]))
    _, _, valid_n = normalize_continuum(flux, None, valid, GRID)
    assert not valid_n[0, GRID.segment_slices[1]].any()
    assert valid_n[0, GRID.segment_slices[0]].all() and valid_n[1].all()


def test_asymmetric_clipping_sits_on_the_upper_envelope():
    # flat continuum with deep, dense absorption: an unclipped fit would sit far below 1
    rng = np.random.default_rng(5)
    x = np.arange(3000)
    flux = np.ones((1, 3000))
    for c in rng.uniform(0, 3000, 120):
        flux[0] *= 1 - 0.8 * np.exp(-0.5 * ((x - c) / 2.0) ** 2)
    valid = np.ones(flux.shape, bool)
    plain, _ = fit_segment_continuum(flux, valid, degree=0, n_iter=0)
    clipped, _ = fit_segment_continuum(flux, valid, degree=0, n_iter=5)
    assert plain[0, 0] < 0.95
    assert abs(clipped[0, 0] - 1) < 0.01


def test_argument_errors():
    flux = np.ones((2, GRID.npix))
    valid = np.ones(flux.shape, bool)
    with pytest.raises(ValueError, match=r"shape \(N, 3802\)"):
        fit_continuum(flux[:, :-1], valid[:, :-1], GRID)
    with pytest.raises(ValueError, match="valid must have the shape"):
        normalize_continuum(flux, None, valid[:1], GRID)
    with pytest.raises(ValueError, match="sigma must have the shape"):
        normalize_continuum(flux, flux[:1], valid, GRID)
    with pytest.raises(ValueError, match="degree"):
        fit_continuum(flux, valid, GRID, degree=-1)
    with pytest.raises(ValueError, match="n_iter"):
        fit_continuum(flux, valid, GRID, n_iter=1.5)
    with pytest.raises(TypeError, match="WavelengthGrid"):
        fit_continuum(flux, valid, "grid")


# ----------------------------------------------------------------------------- Normalization
@pytest.mark.parametrize(
    "d",
    [{"kind": "pseudo-continuum", "degree": 3, "n_iter": 5}, {"kind": "continuum"},
     {"n_iter": 2, "kind": "continuum", "degree": 1}, {"kind": "continuum", "degree": 3}],
)
def test_normalization_round_trip_keeps_the_keys_and_their_order(d):
    n = Normalization.from_dict(d)
    assert n.to_dict() == d and list(n.to_dict()) == list(d)
    assert (n.degree, n.n_iter) == (d.get("degree", 3), d.get("n_iter", 5))
    # the dict-style reads of code written when the metadata held a dict
    assert n["kind"] == d["kind"] and n.get("degree", 3) == d.get("degree", 3)
    with pytest.raises(KeyError):
        Normalization.from_dict({"kind": "continuum"})["degree"]


def test_normalization_defaults_and_equality():
    n = Normalization("pseudo-continuum")
    assert (n.degree, n.n_iter) == (3, 5) and n.fits_continuum
    assert n.to_dict() == {"kind": "pseudo-continuum", "degree": 3, "n_iter": 5}
    # the same convention, whether or not the defaults are written out
    assert Normalization.from_dict({"kind": "pseudo-continuum"}) == n
    assert Normalization("pseudo-continuum", degree=2) != n
    assert not Normalization("continuum").fits_continuum


@pytest.mark.parametrize(
    ("d", "field"),
    [({"degree": 3}, "kind"), ({"kind": ""}, "kind"), ({"kind": 3}, "kind"),
     ({"kind": "pseudo-continuum", "floor": 1.0}, "floor"),
     ({"kind": "pseudo-continuum", "floor": -0.1}, "floor"),
     ({"kind": "pseudo-continuum", "floor": "0.1"}, "floor"),
     ({"kind": "continuum", "degree": -1}, "degree"),
     ({"kind": "continuum", "degree": 2.0}, "degree"),
     ({"kind": "continuum", "n_iter": True}, "n_iter"),
     ({"kind": "continuum", "order": 3}, "order"), ([1, 2], None)],
)
def test_normalization_validation_names_the_field(d, field):
    name = "normalization" if field is None else f"normalization.{field}"
    with pytest.raises(ValueError, match=f"field '{name}'"):
        Normalization.from_dict(d)


def test_normalization_apply_and_prepare_arguments():
    rng = np.random.default_rng(3)
    flux = 1.0 + 0.1 * rng.standard_normal((4, GRID.npix))
    sigma = np.full(flux.shape, 0.05)
    valid = np.ones(flux.shape, dtype=bool)
    pseudo = Normalization("pseudo-continuum", degree=2, n_iter=1)
    got = pseudo.apply(flux, sigma, valid, GRID)
    want = normalize_continuum(flux, sigma, valid, GRID, degree=2, n_iter=1)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    other = Normalization("continuum", degree=2, n_iter=1)
    assert all(a is b for a, b in zip(other.apply(flux, sigma, valid, GRID),
                                      (flux, sigma, valid), strict=True))
    assert pseudo.prepare_arguments() == {"normalize": True, "continuum_degree": 2,
                                          "continuum_iterations": 1, "continuum_floor": 0.0}
    assert pseudo.prepare_arguments(False)["normalize"] is False
    assert other.prepare_arguments()["normalize"] == "auto"


def test_floor_lifts_only_a_continuum_that_falls_below_it():
    # a cubic through a segment whose blue end is a broad, deep wing (Ca II K in a cool
    # star) falls towards zero there; the floor holds it at 10 % of the segment's highest
    rng = np.random.default_rng(5)
    seg = GRID.segment_slices[0]
    x = np.linspace(-1, 1, seg.stop - seg.start)
    envelope = 0.5 + 0.1 * x
    wing = 1 - 0.97 * np.exp(-0.5 * ((x + 1.0) / 0.25) ** 2)
    flux = np.stack([envelope * wing, envelope])  # row 1: no wing, nothing to lift
    flux = flux * (1 + 0.01 * rng.standard_normal(flux.shape))
    valid = np.ones(flux.shape, dtype=bool)
    plain, ok = fit_segment_continuum(flux, valid)
    held, ok2 = fit_segment_continuum(flux, valid, floor=0.1)
    np.testing.assert_array_equal(ok, ok2)
    top = plain.max(axis=1, keepdims=True)
    assert plain[0].min() < 0.1 * top[0, 0]  # the case the floor is for
    np.testing.assert_array_equal(held, np.maximum(plain, 0.1 * top))
    np.testing.assert_array_equal(held[1], plain[1])
    # normalized fluxes stay near the spectrum's own level instead of blowing up
    full = np.ones((2, GRID.npix))
    full[:, seg] = flux
    f_plain, _, v_plain = normalize_continuum(full, None, np.ones_like(full, bool), GRID)
    f_held, _, v_held = normalize_continuum(full, None, np.ones_like(full, bool), GRID,
                                            floor=0.1)
    assert np.abs(f_held[v_held]).max() < 5 < np.abs(f_plain[v_plain]).max()
    with pytest.raises(ValueError, match="floor"):
        fit_segment_continuum(flux, valid, floor=1.5)


def test_normalization_floor_round_trip_and_stated_keys():
    n = Normalization("pseudo-continuum", floor=0.1)
    assert n.to_dict() == {"kind": "pseudo-continuum", "degree": 3, "n_iter": 5, "floor": 0.1}
    assert Normalization.from_dict(n.to_dict()) == n != Normalization("pseudo-continuum")
    assert n.prepare_arguments()["continuum_floor"] == 0.1
    # metadata without a floor (the v1 models) reads as floor 0 and is written back as it was
    old = {"kind": "pseudo-continuum", "degree": 3, "n_iter": 5}
    assert Normalization.from_dict(old).floor == 0.0
    assert Normalization.from_dict(old).to_dict() == old
    zero = {**old, "floor": 0}
    assert Normalization.from_dict(zero).to_dict() == zero
    assert type(Normalization.from_dict(zero).to_dict()["floor"]) is int
    with pytest.raises(ValueError, match="must be stated"):
        Normalization("pseudo-continuum", floor=0.1, stated=("kind", "degree", "n_iter"))
    rng = np.random.default_rng(4)
    flux = 1.0 + 0.1 * rng.standard_normal((3, GRID.npix))
    valid = np.ones(flux.shape, dtype=bool)
    for a, b in zip(n.apply(flux, None, valid, GRID),
                    normalize_continuum(flux, None, valid, GRID, floor=0.1), strict=True):
        np.testing.assert_array_equal(a, b)
