"""Tests of specutils_cinn.instruments.broadening against analytic line profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from astropy import units as u
from scipy import optimize, special

from specutils_cinn.instruments import (
    FOURMOST_LR_RESOLVING_POWER,
    from_log_lambda_grid,
    gaussian_lsf_broaden,
    macroturbulence_broaden,
    rotational_broaden,
    to_log_lambda_grid,
)
from specutils_cinn.instruments._utils import apply_rows, bin_matrix, interp_matrix
from specutils_cinn.instruments.broadening import _macro_kernel, _rotation_kernel

C = 299792.458
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def gaussian_line(wave, center, sigma, depth=0.5):
    return 1.0 - depth * np.exp(-0.5 * ((wave - center) / sigma) ** 2)


def fwhm(wave, flux):
    """FWHM of an absorption line (single minimum), half-maximum crossings interpolated."""
    d = 1.0 - np.asarray(flux, dtype=np.float64)
    i = int(np.argmax(d))
    half = 0.5 * d[i]
    left = i - np.argmax(d[i::-1] < half)
    right = i + np.argmax(d[i:] < half)
    xl = np.interp(half, [d[left], d[left + 1]], [wave[left], wave[left + 1]])
    xr = np.interp(half, [d[right], d[right - 1]], [wave[right], wave[right - 1]])
    return xr - xl


def ew(wave, flux):
    return np.trapezoid(1.0 - np.asarray(flux, dtype=np.float64), wave)


def variance(wave, flux):
    d = 1.0 - np.asarray(flux, dtype=np.float64)
    m = np.trapezoid(d * wave, wave) / np.trapezoid(d, wave)
    return np.trapezoid(d * (wave - m) ** 2, wave) / np.trapezoid(d, wave)


# ---------------------------------------------------------------------------------------------
# Gaussian line-spread function
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("resolving_power", [5000.0, 20000.0])
def test_gaussian_lsf_fwhm_and_equivalent_width(dtype, resolving_power):
    wave = np.arange(4990.0, 5010.0, 0.005)
    sigma0 = 0.008
    flux = gaussian_line(wave, 5000.0, sigma0).astype(dtype)
    out = gaussian_lsf_broaden(wave, flux[None], resolving_power)
    assert out.shape == (1, wave.size) and out.dtype == dtype
    expected = math.hypot(sigma0 * FWHM_PER_SIGMA, 5000.0 / resolving_power)
    assert fwhm(wave, out[0]) == pytest.approx(expected, rel=0.02)
    assert ew(wave, out[0]) == pytest.approx(ew(wave, flux), rel=0.005)


def test_gaussian_lsf_nonuniform_input_wavelengths():
    # log-uniform sampling (constant velocity step) is as valid an input as a linear one
    wave = 4990.0 * np.exp(np.arange(0, math.log(5010 / 4990), 0.2 / C))
    flux = gaussian_line(wave, 5000.0, 0.005)
    out = gaussian_lsf_broaden(wave, flux, 10000.0)
    expected = math.hypot(0.005 * FWHM_PER_SIGMA, 0.5)
    assert fwhm(wave, out) == pytest.approx(expected, rel=0.02)
    assert ew(wave, out) == pytest.approx(ew(wave, flux), rel=0.005)


def test_gaussian_lsf_wavelength_dependent_resolving_power():
    wave = np.arange(3700.0, 9500.0, 0.02)
    centers = [3800.0, 5000.0, 6600.0, 8500.0, 9400.0]
    sigma0 = 0.05  # the input must resolve its lines (a few pixels per sigma)
    flux = np.ones_like(wave)
    for c in centers:
        flux *= gaussian_line(wave, c, sigma0, depth=0.4)
    out = gaussian_lsf_broaden(wave, torch.from_numpy(flux), FOURMOST_LR_RESOLVING_POWER)
    assert isinstance(out, torch.Tensor) and out.shape == (wave.size,)
    out = out.numpy()
    for c in centers:
        sel = np.abs(wave - c) < 5.0
        r = float(FOURMOST_LR_RESOLVING_POWER(c))
        expected = math.hypot(sigma0 * FWHM_PER_SIGMA, c / r)
        assert fwhm(wave[sel], out[sel]) == pytest.approx(expected, rel=0.02), c
        assert ew(wave[sel], out[sel]) == pytest.approx(ew(wave[sel], flux[sel]), rel=0.005), c
    # a callable returning a constant agrees with the constant
    const = gaussian_lsf_broaden(wave[:20000], flux[:20000], lambda w: np.full_like(w, 6000.0))
    np.testing.assert_allclose(
        const, gaussian_lsf_broaden(wave[:20000], flux[:20000], 6000.0), atol=2e-4
    )


@pytest.mark.parametrize("edge", ["nearest", "reflect"])
def test_gaussian_lsf_keeps_a_flat_continuum_up_to_the_edges(edge):
    wave = np.linspace(6000.0, 6010.0, 501)
    out = gaussian_lsf_broaden(wave, np.full((3, wave.size), 1.0), 4000.0, edge=edge)
    np.testing.assert_allclose(out, 1.0, atol=1e-12)


def test_gaussian_lsf_edge_modes_differ_on_a_slope():
    wave = np.linspace(6000.0, 6010.0, 501)
    slope = 1.0 + 0.01 * (wave - 6000.0)
    near = gaussian_lsf_broaden(wave, slope, 4000.0, edge="nearest")
    refl = gaussian_lsf_broaden(wave, slope, 4000.0, edge="reflect")
    # the interior is a straight line, unchanged by a symmetric kernel
    np.testing.assert_allclose(near[100:-100], slope[100:-100], atol=1e-5)
    np.testing.assert_allclose(refl[100:-100], slope[100:-100], atol=1e-5)
    # at the blue end, "nearest" pads with the lowest value and "reflect" with higher ones
    assert refl[0] > near[0] + 1e-4 > slope[0] + 2e-4


def test_gaussian_lsf_batch_matches_loop_and_numpy_matches_torch():
    rng = np.random.default_rng(1)
    wave = np.arange(5000.0, 5020.0, 0.01)
    flux = np.stack([gaussian_line(wave, c, 0.02) for c in rng.uniform(5002, 5018, 5)])
    batch = gaussian_lsf_broaden(wave, flux, 8000.0)
    for i in range(flux.shape[0]):
        np.testing.assert_allclose(
            batch[i], gaussian_lsf_broaden(wave, flux[i], 8000.0), atol=1e-12
        )
    t = gaussian_lsf_broaden(torch.from_numpy(wave), torch.from_numpy(flux), 8000.0)
    np.testing.assert_allclose(t.numpy(), batch, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# rotation
# ---------------------------------------------------------------------------------------------
def gray_rotation(x, eps):
    g = 2 * (1 - eps) * np.sqrt(np.clip(1 - x * x, 0, None)) + 0.5 * np.pi * eps * np.clip(
        1 - x * x, 0, None
    )
    return g / (np.pi * (1 - eps / 3))


@pytest.mark.parametrize("eps", [0.0, 0.6, 1.0])
def test_rotation_kernel_is_normalized_with_the_analytic_variance(eps):
    vsini = np.array([3.0, 40.0, 250.0])
    dv = 0.5
    k = _rotation_kernel(vsini, dv, eps)
    np.testing.assert_allclose(k.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(k >= 0)
    np.testing.assert_allclose(k, k[:, ::-1], atol=1e-15)
    v = (np.arange(k.shape[1]) - k.shape[1] // 2) * dv
    var = (k * v**2).sum(axis=1)
    analytic = vsini**2 * ((1 - eps) / 4 + 2 * eps / 15) / (1 - eps / 3) + dv**2 / 12
    # dv**2 / 12 (Sheppard's correction) is exact only for kernels much wider than a pixel
    for got, want, rtol in zip(var, analytic, [5e-3, 1e-4, 1e-6], strict=True):
        assert got == pytest.approx(want, rel=rtol)
    # away from the edges the pixel-integrated kernel equals the profile times the pixel size
    big = k[2]
    inside = np.abs(v) < 0.9 * vsini[2]
    np.testing.assert_allclose(
        big[inside], gray_rotation(v[inside] / vsini[2], eps) * dv / vsini[2], rtol=1e-3
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.6])
def test_rotational_broadening_of_a_narrow_line_matches_the_rotation_profile(dtype, eps):
    step = 0.01
    wave = np.arange(4990.0, 5010.0, step)
    line = gaussian_line(wave, 5000.0, 0.004, depth=0.6).astype(dtype)
    vsini = 50.0
    out = rotational_broaden(wave, line, vsini, limb_darkening=eps)
    assert out.dtype == dtype
    dl = 5000.0 * vsini / C
    # half-width at zero intensity = lambda vsini / c, within a pixel
    depth = 1.0 - out.astype(np.float64)
    above = wave[depth > 1e-3 * depth.max()]
    hwzi = 0.5 * (above[-1] - above[0])
    assert abs(hwzi - dl) <= step
    # FWHM of the analytic profile G(x) = G(0)/2
    x_half = optimize.brentq(lambda x: gray_rotation(x, eps) - 0.5 * gray_rotation(0.0, eps), 0, 1)
    assert fwhm(wave, out) == pytest.approx(2 * x_half * dl, rel=0.02)
    assert ew(wave, out) == pytest.approx(ew(wave, line), rel=0.005)


def test_rotation_with_zero_vsini_is_the_identity():
    rng = np.random.default_rng(2)
    wave = np.linspace(6500.0, 6600.0, 2001)
    flux = 1.0 - 0.3 * rng.random((3, wave.size))
    out = rotational_broaden(wave, flux, [0.0, 20.0, 0.0])
    np.testing.assert_array_equal(out[0], flux[0])
    np.testing.assert_array_equal(out[2], flux[2])
    assert not np.allclose(out[1], flux[1])
    np.testing.assert_array_equal(rotational_broaden(wave, flux, 0.0), flux)


def test_rotation_batch_matches_loop():
    rng = np.random.default_rng(3)
    wave = np.arange(6000.0, 6030.0, 0.02)
    flux = np.stack([gaussian_line(wave, c, 0.03) for c in rng.uniform(6005, 6025, 6)])
    vsini = np.array([0.0, 1.0, 7.5, 30.0, 120.0, 300.0])
    batch = rotational_broaden(wave, torch.from_numpy(flux), torch.from_numpy(vsini))
    assert isinstance(batch, torch.Tensor)
    for i in range(flux.shape[0]):
        single = rotational_broaden(wave, flux[i], vsini[i])
        np.testing.assert_allclose(batch[i].numpy(), single, atol=1e-10)
    f32 = rotational_broaden(wave, flux.astype(np.float32), vsini)
    np.testing.assert_allclose(f32, batch.numpy(), atol=2e-5)


# ---------------------------------------------------------------------------------------------
# macroturbulence
# ---------------------------------------------------------------------------------------------
def rt_profile(x):
    x = np.abs(x)
    return np.exp(-x * x) - math.sqrt(math.pi) * x * special.erfc(x)


@pytest.mark.parametrize(("kind", "var_factor"), [("radial-tangential", 0.25), ("gaussian", 0.5)])
def test_macroturbulence_matches_the_analytic_profile(kind, var_factor):
    step = 0.002
    wave = np.arange(5990.0, 6010.0, step)
    sigma0 = 0.008
    line = gaussian_line(wave, 6000.0, sigma0, depth=0.6)
    zeta = 8.0
    out = macroturbulence_broaden(wave, line, zeta, kind=kind)
    scale = 6000.0 * zeta / C  # zeta in Angstrom
    # variance adds zeta**2 / 4 (radial-tangential) or zeta**2 / 2 (Gaussian)
    added = variance(wave, out) - variance(wave, line)
    assert added == pytest.approx(var_factor * scale**2, rel=0.02)
    assert ew(wave, out) == pytest.approx(ew(wave, line), rel=0.005)
    # reference: the analytic profile convolved with the input line by brute force on a fine grid
    fine = 0.0002
    x = np.arange(-5 * scale, 5 * scale + fine / 2, fine)
    prof = rt_profile(x / scale) if kind == "radial-tangential" else np.exp(-((x / scale) ** 2))
    prof /= prof.sum()
    wf = np.arange(5995.0, 6005.0, fine)
    ref = 1.0 - np.convolve(1.0 - gaussian_line(wf, 6000.0, sigma0, depth=0.6), prof, "same")
    sel = np.abs(wave - 6000.0) < 1.0
    np.testing.assert_allclose(out[sel], np.interp(wave[sel], wf, ref), atol=2e-3)
    assert fwhm(wave, out) == pytest.approx(fwhm(wf, ref), rel=0.01)
    if kind == "radial-tangential":  # the profile's own FWHM, for scale: a cusp, 2 x 0.41 zeta
        x_half = optimize.brentq(lambda x: rt_profile(x) - 0.5, 0, 3)
        assert 2 * x_half * scale < fwhm(wave, out) < 1.1 * 2 * x_half * scale


def test_macroturbulence_kernels_normalized_zero_identity_and_batch():
    k = _macro_kernel(np.array([0.0, 2.0, 15.0]), 0.7, "radial-tangential")
    np.testing.assert_allclose(k.sum(axis=1), 1.0, atol=1e-12)
    assert k[0, k.shape[1] // 2] == 1.0 and k[0].sum() == 1.0
    wave = np.arange(6000.0, 6030.0, 0.02)
    flux = np.stack([gaussian_line(wave, 6010.0 + i, 0.03) for i in range(4)])
    zeta = np.array([0.0, 3.0, 6.0, 12.0])
    batch = macroturbulence_broaden(wave, flux, zeta)
    np.testing.assert_array_equal(batch[0], flux[0])
    for i in range(1, 4):
        np.testing.assert_allclose(
            batch[i], macroturbulence_broaden(wave, flux[i], zeta[i]), atol=1e-10
        )


# ---------------------------------------------------------------------------------------------
# log-lambda helpers and input checking
# ---------------------------------------------------------------------------------------------
def test_log_lambda_grid_round_trip():
    wave = np.linspace(4000.0, 4100.0, 5001)
    flux = np.stack([1 + 0.1 * np.sin(wave / 3.0), 1 - 0.2 * np.cos(wave / 5.0)])
    lw, lf = to_log_lambda_grid(wave, flux, velocity_step=0.5)
    steps = np.diff(np.log(lw)) * C
    np.testing.assert_allclose(steps, 0.5, rtol=1e-9)
    assert lw[0] == pytest.approx(wave[0]) and lw[-1] >= wave[-1] and lw[-2] < wave[-1]
    assert lf.shape == (2, lw.size)
    back = from_log_lambda_grid(lw, lf, wave)
    np.testing.assert_allclose(back, flux, atol=1e-5)
    # the default step is the finest input pixel in velocity
    lw2, _ = to_log_lambda_grid(wave, flux[0])
    assert np.diff(np.log(lw2))[0] == pytest.approx(np.log(wave[-1] / wave[-2]), rel=1e-9)


def test_bad_inputs_raise_clear_errors():
    wave = np.linspace(5000.0, 5010.0, 101)
    flux = np.ones((2, 101))
    with pytest.raises(ValueError, match="strictly increasing"):
        gaussian_lsf_broaden(wave[::-1], flux, 5000.0)
    with pytest.raises(ValueError, match="pixels"):
        gaussian_lsf_broaden(wave, flux[:, :50], 5000.0)
    with pytest.raises(ValueError, match="resolving_power"):
        gaussian_lsf_broaden(wave, flux, -1.0)
    with pytest.raises(ValueError, match="resolving_power"):
        gaussian_lsf_broaden(wave, flux, lambda w: np.zeros_like(w))
    with pytest.raises(TypeError, match="resolving_power"):
        gaussian_lsf_broaden(wave, flux, "high")
    with pytest.raises(ValueError, match="edge"):
        gaussian_lsf_broaden(wave, flux, 5000.0, edge="wrap")
    with pytest.raises(ValueError, match="vsini"):
        rotational_broaden(wave, flux, [-1.0, 2.0])
    with pytest.raises(ValueError, match="vsini"):
        rotational_broaden(wave, flux, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="limb_darkening"):
        rotational_broaden(wave, flux, 10.0, limb_darkening=1.5)
    with pytest.raises(ValueError, match="kind"):
        macroturbulence_broaden(wave, flux, 3.0, kind="lorentzian")
    with pytest.raises(TypeError, match="float32 or float64"):
        rotational_broaden(wave, torch.ones((2, 101), dtype=torch.int64), 10.0)
    with pytest.raises(ValueError, match="shape"):
        rotational_broaden(wave, np.ones((2, 2, 101)), 10.0)
    with pytest.raises(ValueError, match="velocity_step"):
        to_log_lambda_grid(wave, flux, velocity_step=0.0)
    nan = flux.copy()
    nan[1, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gaussian_lsf_broaden(wave, nan, 5000.0)
    with pytest.raises(ValueError, match="spectral unit"):
        gaussian_lsf_broaden(wave * u.s, flux, 5000.0)


def test_empty_batches():
    wave = np.linspace(5000.0, 5010.0, 101)
    empty = np.ones((0, 101), dtype=np.float32)
    assert gaussian_lsf_broaden(wave, empty, 5000.0).shape == (0, 101)
    assert rotational_broaden(wave, empty, np.zeros(0)).shape == (0, 101)
    assert macroturbulence_broaden(wave, torch.from_numpy(empty), []).shape == (0, 101)


def test_quantity_wavelengths_are_converted():
    wave = np.linspace(5000.0, 5010.0, 1001)
    flux = gaussian_line(wave, 5005.0, 0.02)
    a = rotational_broaden(wave, flux, 15.0)
    b = rotational_broaden((wave * u.AA).to(u.nm), flux, 15.0 * u.km / u.s)
    np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_resampling_paths_agree(dtype):
    # CPU tensors use scipy, other devices torch.sparse: both must give the same numbers
    rng = np.random.default_rng(4)
    x = np.sort(rng.uniform(0.0, 10.0, 300))
    f = torch.from_numpy(rng.normal(size=(5, 300))).to(dtype)
    for mat in (interp_matrix(np.linspace(0.5, 9.5, 400), x), bin_matrix(x, np.linspace(1, 9, 50))):
        a = apply_rows(mat, f, use_scipy=True)
        b = apply_rows(mat, f, use_scipy=False)
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a, b)
    # rows of the bin matrix sum to one (averages), and interpolation reproduces a straight line
    np.testing.assert_allclose(bin_matrix(x, np.linspace(1, 9, 50)).sum(axis=1), 1.0)
    line = torch.from_numpy(2.0 + 0.5 * x)[None]
    torch.testing.assert_close(
        apply_rows(interp_matrix(np.array([0.7, 3.3, 8.8]), x), line)[0],
        torch.tensor([2.35, 3.65, 6.4], dtype=torch.float64),
    )
