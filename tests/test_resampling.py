"""Tests of the vectorised flux-conserving resampler."""

from __future__ import annotations

import numpy as np
import pytest

from specutils_cinn.resampling import EdgeLocator, flux_conserving_resample, pixel_edges


def brute_force(wave, flux, var, weight, edges):
    """Reference: explicit overlaps of every input pixel with every output bin."""
    b = pixel_edges(wave)
    k = len(edges) - 1
    f_out = np.full(k, np.nan)
    v_out = np.full(k, np.nan)
    frac = np.zeros(k)
    for j in range(k):
        lo, hi = edges[j], edges[j + 1]
        if lo < b[0] or hi > b[-1]:
            continue
        f_sum = w_sum = v_sum = 0.0
        for i in range(len(flux)):
            o = max(0.0, min(hi, b[i + 1]) - max(lo, b[i]))
            if o == 0.0 or not (np.isfinite(flux[i]) and np.isfinite(var[i])):
                continue
            f_sum += flux[i] * weight[i] * o
            w_sum += weight[i] * o
            v_sum += (weight[i] * o) ** 2 * var[i]
        frac[j] = w_sum / (hi - lo)
        if w_sum > 0:
            f_out[j] = f_sum / w_sum
            v_out[j] = v_sum / w_sum**2
    return f_out, v_out, frac


def random_problem(rng, n=4, m=50, k=30, uniform=False):
    if uniform:
        wave = np.tile(np.linspace(10.0, 20.0, m), (n, 1))
    else:
        wave = np.sort(rng.uniform(10.0, 20.0, (n, m)), axis=1)
    flux = rng.normal(size=(n, m))
    var = rng.uniform(0.5, 2.0, (n, m))
    weight = (rng.uniform(size=(n, m)) > 0.2) * rng.uniform(0.5, 1.0, (n, m))
    flux[0, 5] = np.nan
    var[1, 7] = np.inf
    edges = np.sort(rng.uniform(9.0, 21.0, (n, k + 1)), axis=1)
    return wave, flux, var, weight, edges


@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize("layout", ["per_row", "shared_axis", "shared_all"])
def test_matches_brute_force(uniform, layout):
    rng = np.random.default_rng(11)
    wave, flux, var, weight, edges = random_problem(rng, uniform=uniform)
    if layout == "shared_axis":
        wave = wave[0]
    elif layout == "shared_all":
        wave, edges = wave[0], edges[0]
    f, v, frac = flux_conserving_resample(wave, flux, var, weight, edges)
    for i in range(len(flux)):
        w_i = wave if wave.ndim == 1 else wave[i]
        e_i = edges if edges.ndim == 1 else edges[i]
        rf, rv, rfrac = brute_force(w_i, flux[i], var[i], weight[i], e_i)
        np.testing.assert_array_equal(np.isnan(f[i]), np.isnan(rf))
        np.testing.assert_allclose(f[i], rf, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v[i], rv, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(frac[i], rfrac, rtol=1e-10, atol=1e-12)


def test_upsampling_bins_inside_one_pixel_match_brute_force():
    rng = np.random.default_rng(3)
    wave = np.linspace(100.0, 110.0, 11)
    flux = rng.normal(size=(2, 11))
    var = rng.uniform(1, 2, (2, 11))
    edges = np.linspace(100.0, 110.0, 97)  # many bins inside single input pixels
    f, v, frac = flux_conserving_resample(wave, flux, var, None, edges)
    for i in range(2):
        rf, rv, rfrac = brute_force(wave, flux[i], var[i], np.ones(11), edges)
        np.testing.assert_allclose(f[i], rf, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v[i], rv, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(frac[i], rfrac, rtol=1e-10)


def test_flux_integral_is_conserved():
    rng = np.random.default_rng(5)
    wave = np.cumsum(rng.uniform(0.5, 1.5, 400)) + 1000.0
    b = pixel_edges(wave)
    flux = rng.uniform(0.0, 10.0, (3, 400))
    # output edges: a sub-range of the input, with input edges at both ends
    edges = np.sort(np.concatenate([[b[20], b[380]], rng.uniform(b[20], b[380], 57)]))
    f, _, frac = flux_conserving_resample(wave, flux, None, None, edges)
    assert np.all(frac > 1 - 1e-12)
    out_integral = (f * np.diff(edges)).sum(axis=1)
    in_integral = (flux[:, 20:380] * np.diff(b)[20:380]).sum(axis=1)
    np.testing.assert_allclose(out_integral, in_integral, rtol=1e-12)


def test_coverage_and_masks():
    wave = np.arange(100.0, 200.0, 1.0)  # edges 99.5 ... 199.5
    flux = np.ones((1, 100))
    weight = np.ones((1, 100))
    weight[0, 40:60] = 0.0  # pixels 140..159 masked: 139.5 .. 159.5
    edges = np.array([90.0, 99.0, 99.5, 100.5, 139.0, 141.0, 150.0, 152.0, 199.5, 205.0])
    f, v, frac = flux_conserving_resample(wave, flux, flux, weight, edges)
    # bin partly outside the coverage and bins outside are invalid
    assert np.isnan(f[0, 0]) and frac[0, 0] == 0
    assert np.isnan(f[0, 1]) and frac[0, 1] == 0
    assert np.isnan(f[0, -1]) and frac[0, -1] == 0
    # a bin fully inside, 1 pixel wide
    assert f[0, 2] == pytest.approx(1.0) and frac[0, 2] == pytest.approx(1.0)
    # half-masked bin 139..141: 0.5 of 2 units of weight
    assert frac[0, 4] == pytest.approx(0.25) and f[0, 4] == pytest.approx(1.0)
    # entirely masked bin 150..152
    assert np.isnan(f[0, 6]) and frac[0, 6] == 0 and np.isnan(v[0, 6])
    # masked pixels do not leak: huge values under the mask are ignored
    flux2 = flux.copy()
    flux2[0, 40:60] = 1e30
    f2, _, _ = flux_conserving_resample(wave, flux2, None, weight, edges)
    np.testing.assert_array_equal(f2, f)


def test_white_noise_propagation():
    rng = np.random.default_rng(42)
    n, m, sigma = 4000, 60, 0.3
    wave = np.linspace(0.0, 59.0, m)
    flux = rng.normal(0.0, sigma, (n, m))
    var = np.full((n, m), sigma**2)
    # misaligned output bins, some narrower and some wider than the input pixels
    edges = np.array([3.2, 4.0, 5.7, 6.1, 9.9, 14.05, 20.0, 20.3, 31.7])
    f, v, _ = flux_conserving_resample(wave, flux, var, None, edges)
    empirical = f.std(axis=0)
    propagated = np.sqrt(v[0])
    np.testing.assert_allclose(empirical, propagated, rtol=0.1)
    assert np.ptp(v, axis=0).max() < 1e-12  # same variance in every row


def test_one_dimensional_input():
    wave = np.arange(10.0)
    flux = np.arange(10.0) ** 2
    f, v, frac = flux_conserving_resample(wave, flux, None, None, np.array([1.5, 3.5, 5.5]))
    assert f.shape == (2,)
    np.testing.assert_allclose(f, [(4 + 9) / 2, (16 + 25) / 2])
    assert np.all(np.isnan(v))


@pytest.mark.parametrize("kind", ["uniform", "table", "search"])
def test_edge_locator_modes(kind):
    rng = np.random.default_rng(7)
    if kind == "uniform":
        b = np.linspace(0.0, 10.0, 101)
    elif kind == "table":
        b = np.cumsum(np.r_[0.0, rng.uniform(0.05, 0.2, 100)])
    else:  # widths spanning many decades: too large a table, falls back to searchsorted
        b = np.cumsum(np.r_[0.0, 10.0 ** rng.uniform(-5, 1, 100)])
    loc = EdgeLocator(b)
    assert loc._mode == kind
    e = np.concatenate([b, rng.uniform(b[0] - 1, b[-1] + 1, (3, 200)).ravel()])
    e_clip, k, left = loc.locate(e)
    ref = np.clip(np.searchsorted(b, e_clip, side="right") - 1, 0, len(b) - 2)
    # a position on a pixel edge may be assigned to either neighbour (rounding)
    recon = b[k] + left
    np.testing.assert_allclose(recon, e_clip, rtol=0, atol=1e-12 * b[-1])
    assert np.all(np.abs(k - ref) <= 1)
    off = k != ref  # only allowed for positions on a pixel edge
    assert np.all(np.abs(e_clip[off][:, None] - b[None, :]).min(axis=1) < 1e-9)


def test_pixel_edges():
    np.testing.assert_allclose(pixel_edges([1.0, 2.0, 4.0]), [0.5, 1.5, 3.0, 5.0])
    with pytest.raises(ValueError, match="at least two"):
        pixel_edges([1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        pixel_edges([1.0, 1.0, 2.0])


def test_input_errors():
    wave = np.arange(5.0)
    flux = np.ones((2, 5))
    edges = np.array([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="weights must be non-negative"):
        flux_conserving_resample(wave, flux, None, -flux, edges)
    with pytest.raises(ValueError, match="var must have the shape"):
        flux_conserving_resample(wave, flux, np.ones((3, 5)), None, edges)
    with pytest.raises(ValueError, match="wave_in must have shape"):
        flux_conserving_resample(np.arange(4.0), flux, None, None, edges)
    with pytest.raises(ValueError, match="strictly increasing"):
        flux_conserving_resample(wave, flux, None, None, edges[::-1])
    with pytest.raises(ValueError, match="edges_out must have shape"):
        flux_conserving_resample(wave, flux, None, None, np.ones((3, 4)))


@pytest.mark.parametrize("uniform", [True, False])
def test_resample_block_scale_matches_explicit_edges(uniform):
    from specutils_cinn.resampling import resample_block

    rng = np.random.default_rng(8)
    m = 300
    wave = np.linspace(100.0, 130.0, m) if uniform else np.sort(rng.uniform(100, 130, m))
    loc = EdgeLocator(pixel_edges(wave))
    fw = rng.normal(size=(5, m))
    w = (rng.uniform(size=(5, m)) > 0.1).astype(float)
    fw *= w
    u = rng.uniform(0.5, 1.5, (5, m)) * w
    edges = np.linspace(99.0, 131.0, 201)  # straddles both ends of the coverage
    scale = 1 + np.array([-3e-3, -1e-4, 0.0, 2e-4, 4e-3])
    a = resample_block(loc, fw, w, u, edges, scale=scale)
    b = resample_block(loc, fw, w, u, np.multiply.outer(scale, edges))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    assert np.isnan(a[0]).any() and (a[2] == 0).any()
