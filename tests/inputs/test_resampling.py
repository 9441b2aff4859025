"""Tests of the vectorized flux-conserving resampler."""

from __future__ import annotations

import numpy as np
import pytest

from specutils_cinn.inputs.resampling import (
    EdgeLocator,
    find_gaps,
    flux_conserving_resample,
    gap_edges,
    insert_gaps,
    pixel_edges,
)


def brute_force(wave, flux, var, weight, edges, b=None):
    """Reference: explicit overlaps of every input pixel with every output bin.

    ``b`` gives the input pixels as ``(lo, hi)`` pairs (default: the midpoint edges of
    ``wave``); the space between pixels is not covered by data.
    """
    if b is None:
        e = pixel_edges(wave)
        b = list(zip(e[:-1], e[1:], strict=True))
    k = len(edges) - 1
    f_out = np.full(k, np.nan)
    v_out = np.full(k, np.nan)
    frac = np.zeros(k)
    for j in range(k):
        lo, hi = edges[j], edges[j + 1]
        if lo < b[0][0] or hi > b[-1][1]:
            continue
        f_sum = w_sum = v_sum = 0.0
        for i in range(len(flux)):
            o = max(0.0, min(hi, b[i][1]) - max(lo, b[i][0]))
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
    else:  # irregular spacings (a factor of up to 2.5 between neighbors), no gaps
        wave = 10.0 + np.cumsum(rng.uniform(0.12, 0.28, (n, m)), axis=1)
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
    # a position on a pixel edge may be assigned to either neighbor (rounding)
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
    from specutils_cinn.inputs.resampling import resample_block

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


# ------------------------------------------------------------------ locator regression


def test_edge_locator_table_last_cell_regression():
    # The table of a non-uniform axis whose span is a whole number of table cells has a
    # last cell starting exactly at the last edge; locating that edge used to look up
    # a pixel beyond the end (IndexError in EdgeLocator.locate).
    b = np.array([0.0, 1.0, 2.0, 4.0])
    loc = EdgeLocator(b)
    assert loc._mode == "table"
    e, k, left = loc.locate(np.array([0.0, 1.5, 3.9, 4.0, 7.0]))
    np.testing.assert_array_equal(k, [0, 1, 2, 2, 2])
    np.testing.assert_allclose(left, [0.0, 0.5, 1.9, 2.0, 2.0])


def test_resample_ending_inside_a_half_pixel_table_axis():
    # the setting of the report: a 0.5 A axis with a pixel missing (table mode), ending
    # inside the output grid
    wave = np.r_[np.arange(4400.5, 4500.0, 0.5), np.arange(4500.5, 4600.0, 0.5)]
    flux = np.ones((2, wave.size))
    edges = np.arange(4400.25, 4700.0, 0.5)
    f, _, frac = flux_conserving_resample(wave, flux, flux, None, edges)
    inside = edges[1:] <= wave[-1] + 0.25
    assert np.all(frac[:, inside] > 0.99) and np.all(frac[:, ~inside] == 0)
    np.testing.assert_allclose(f[:, inside], 1.0)


# ------------------------------------------------------------------------------ gaps


def test_find_gaps_has_no_false_positives():
    rng = np.random.default_rng(21)
    n = 5000
    axes = {
        "uniform": np.linspace(4000.0, 9000.0, n),
        "log-uniform R=20000": 4000.0 * np.exp(np.arange(n) / 20000.0),
        "log-uniform, 3x range": np.geomspace(3000.0, 9000.0, 300),
        "slowly varying": 4000.0 + np.cumsum(0.05 + 0.2 * np.linspace(0, 1, n) ** 2),
        "jittered": 4000.0 + np.cumsum(rng.uniform(0.8, 1.2, n)),
        # two arms with 5x different dispersions joined end to end
        "dispersion step": np.r_[np.arange(4000.0, 4100.0, 0.1), np.arange(4100.4, 4400, 0.5)],
        "float32 axis": np.arange(4000.0, 4500.0, 0.02).astype(np.float32).astype(float),
    }
    for name, wave in axes.items():
        assert not find_gaps(wave).any(), name
        b, cols = gap_edges(wave)
        assert cols is None, name
        np.testing.assert_array_equal(b, pixel_edges(wave))


def test_find_gaps_finds_gaps():
    wave = np.arange(100.0, 200.0, 0.5)
    keep = np.ones(wave.size, bool)
    keep[[3, 4, 5]] = False  # three missing pixels, close to the start
    keep[40:80] = False  # a chip gap
    keep[81:90] = False  # ... and another one, with a single pixel between them
    keep[150:152] = False  # two missing pixels: only 3x the spacing, bridged
    w = wave[keep]
    gaps = np.flatnonzero(find_gaps(w))
    np.testing.assert_array_equal(w[gaps], [101.0, 119.5, 140.0])
    np.testing.assert_array_equal(w[gaps + 1], [103.0, 140.0, 145.0])
    # the same per row (2-D input)
    np.testing.assert_array_equal(find_gaps(np.stack([w, w + 1.0]))[1], find_gaps(w))
    assert not find_gaps(np.array([1.0, 2.0, 10.0])).any()  # too short to tell
    with pytest.raises(ValueError, match="factor"):
        find_gaps(w, factor=1.0)


def test_gap_edges_keep_natural_pixel_widths():
    wave = np.r_[np.arange(10.0, 20.0, 1.0), np.arange(30.0, 40.0, 1.0)]
    b, cols = gap_edges(wave)
    expected = np.r_[np.arange(9.5, 20.0, 1.0), np.arange(29.5, 40.0, 1.0)]
    np.testing.assert_allclose(b, expected)  # the gap pixel is 19.5 .. 29.5
    np.testing.assert_array_equal(cols, np.r_[0:10, 11:21])
    assert gap_edges(wave, factor=None)[1] is None
    # a gap next to the first pixel: its outer edge uses the local spacing, not the gap
    b, cols = gap_edges(np.r_[0.0, 10.0, 11.0, 12.0, 13.0])
    np.testing.assert_allclose(b, [-0.5, 0.5, 9.5, 10.5, 11.5, 12.5, 13.5])
    np.testing.assert_array_equal(cols, [0, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="same number of gaps"):
        gap_edges(np.stack([wave, np.arange(10.0, 30.0, 1.0)]))
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(insert_gaps(a, np.array([0, 2, 3]), 4, -1.0)[1], [3, -1, 4, 5])


def gappy_axis():
    """0.1 A pixels from 100 to 200 A without 140.0 .. 149.9 (centers)."""
    wave = np.round(np.arange(100.0, 200.0, 0.1), 6)
    return wave[(wave < 140.0 - 1e-9) | (wave > 149.9 + 1e-9)]


def test_coverage_with_a_gap_is_the_covered_fraction():
    wave = gappy_axis()  # data: 99.95 .. 139.95 and 149.95 .. 199.95
    flux = np.ones((1, wave.size))
    edges = np.linspace(100.0, 199.0, 199)  # 0.5 A bins
    f, v, frac = flux_conserving_resample(wave, flux, flux, None, edges)
    center = 0.5 * (edges[1:] + edges[:-1])
    in_gap = (edges[:-1] >= 139.95) & (edges[1:] <= 149.95)
    assert in_gap.sum() == 19
    assert np.all(frac[0, in_gap] == 0) and np.all(np.isnan(f[0, in_gap] + v[0, in_gap]))
    covered = (np.minimum(edges[1:], 139.95) - edges[:-1]).clip(0) + (
        edges[1:] - np.maximum(edges[:-1], 149.95)
    ).clip(0)
    np.testing.assert_allclose(frac[0], covered / np.diff(edges), atol=1e-9)
    valid = frac[0] >= 0.5
    # covered fraction of the output range: 89 of 99 A
    assert valid.mean() == pytest.approx(89.0 / 99.0, abs=0.5 / 198)
    assert not valid[(center > 140.2) & (center < 149.7)].any()
    np.testing.assert_allclose(f[0, valid], 1.0)
    # bridging (the old behavior) pretends the gap is covered
    assert np.all(flux_conserving_resample(wave, flux, None, None, edges, None)[2] > 0.99)


def test_flux_is_conserved_around_a_gap():
    rng = np.random.default_rng(9)
    wave = gappy_axis()
    flux = rng.uniform(0.5, 2.0, (3, wave.size))
    var = rng.uniform(0.01, 0.02, flux.shape)
    edges = np.sort(np.r_[99.95, 199.95, rng.uniform(99.95, 199.95, 300)])
    f, v, frac = flux_conserving_resample(wave, flux, var, None, edges)
    # integral over the output = integral over the input pixels at their natural width
    out_integral = np.nansum(f * frac * np.diff(edges), axis=1)
    np.testing.assert_allclose(out_integral, (flux * 0.1).sum(axis=1), rtol=1e-10)
    # and every bin matches explicit overlaps with pixels that stop 0.05 A from the gap
    pixels = [(c - 0.05, c + 0.05) for c in wave]
    for i in range(len(flux)):
        rf, rv, rfrac = brute_force(wave, flux[i], var[i], np.ones(wave.size), edges, pixels)
        np.testing.assert_array_equal(np.isnan(f[i]), np.isnan(rf))
        np.testing.assert_allclose(f[i], rf, rtol=1e-9)
        np.testing.assert_allclose(v[i], rv, rtol=1e-8)
        np.testing.assert_allclose(frac[i], rfrac, rtol=1e-9, atol=1e-12)


def test_per_row_axes_with_different_gaps_match_row_by_row():
    rng = np.random.default_rng(4)
    base = np.arange(100.0, 150.0, 0.25)
    keeps = [np.ones(base.size, bool) for _ in range(4)]
    keeps[1][50:70] = False
    keeps[2][20:30] = keeps[2][120:140] = False
    keeps[3][60:75] = False
    m = min(k.sum() for k in keeps)
    wave = np.stack([base[k][:m] + 0.01 * i for i, k in enumerate(keeps)])
    flux = rng.normal(1.0, 0.1, wave.shape)
    edges = np.linspace(101.0, 140.0, 80)
    f, v, frac = flux_conserving_resample(wave, flux, flux**2, None, edges)
    for i in range(len(wave)):
        ref = flux_conserving_resample(wave[i], flux[i], flux[i] ** 2, None, edges)
        for x, y in zip((f[i], v[i], frac[i]), ref, strict=True):
            np.testing.assert_array_equal(x, y)
    assert (frac[1:] == 0).any(axis=1).all() and not (frac[0] == 0).any()


@pytest.mark.parametrize("huge", [1e30, -1e30, 1e200])
def test_a_huge_value_spoils_only_the_bins_it_reaches(huge):
    # a bad-pixel sentinel (1e30 with a valid weight) used to wipe out every later bin of
    # the row: bin integrals were differences of a running sum, 1e30 + 0.9 - 1e30 = 0
    wave = np.arange(5000.0, 5100.0, 0.25)
    rng = np.random.default_rng(3)
    flux = 1.0 + 0.01 * rng.normal(size=(2, wave.size))
    var = np.full(flux.shape, 1e-4)
    edges = np.arange(5001.0, 5099.0, 1.0)
    ref, ref_var, _ = flux_conserving_resample(wave, flux, var, None, edges)
    bad_flux, bad_var = flux.copy(), var.copy()
    bad_flux[0, 42], bad_var[1, 42] = huge, abs(huge)  # 5010.375-5010.625 A
    out, out_var, _ = flux_conserving_resample(wave, bad_flux, bad_var, None, edges)
    reached = (edges[:-1] < 5010.625) & (edges[1:] > 5010.375)
    assert reached.sum() == 1
    np.testing.assert_allclose(out[0, ~reached], ref[0, ~reached], rtol=1e-12)
    np.testing.assert_allclose(out_var[1, ~reached], ref_var[1, ~reached], rtol=1e-12)
    np.testing.assert_array_equal(out[1], ref[1])  # the other row is untouched
    assert abs(out[0, reached][0]) > 1e20 and out_var[1, reached][0] > 1e20
