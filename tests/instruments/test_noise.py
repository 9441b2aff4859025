"""Tests of specutils_cinn.instruments.noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from specutils_cinn.instruments import NOISE_FLOOR, add_noise, draw_noise, snr_per_pixel
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid


def test_snr_per_pixel_conversion():
    assert snr_per_pixel(100.0, 0.25) == pytest.approx(50.0)
    assert snr_per_pixel(100.0, 4.0) == pytest.approx(200.0)
    np.testing.assert_allclose(snr_per_pixel([10.0, 40.0], 0.04), [2.0, 8.0])
    t = snr_per_pixel(torch.tensor([100.0, 30.0]), 0.01)
    assert isinstance(t, torch.Tensor)
    torch.testing.assert_close(t, torch.tensor([10.0, 3.0]))
    with pytest.raises(ValueError, match="positive"):
        snr_per_pixel(50.0, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        snr_per_pixel(-1.0, 0.1)


def test_add_noise_matches_the_per_angstrom_snr():
    # two segments with different pixel widths: the per-pixel noise must follow each width
    grid = WavelengthGrid(
        (GridSegment("A", 5000.0, 5005.0, 0.05), GridSegment("B", 6000.0, 6025.0, 0.25))
    )
    n = 4000
    snr = np.array([20.0, 100.0])
    flux = torch.ones((n, grid.npix), dtype=torch.float64)
    snr_rows = np.repeat(snr, n // 2)
    noisy, sigma = add_noise(flux, snr_rows, grid, generator=123)
    assert noisy.shape == flux.shape and sigma.shape == flux.shape
    width = grid.pixel_width
    for j, s in enumerate(snr):
        rows = slice(j * n // 2, (j + 1) * n // 2)
        expected = 1.0 / (s * np.sqrt(width))
        torch.testing.assert_close(sigma[rows], torch.from_numpy(expected).expand(n // 2, -1))
        for sl in grid.segment_slices:
            emp = (noisy[rows, sl] - 1.0).std(dim=0).numpy()  # per pixel, over 2000 draws
            np.testing.assert_allclose(emp, expected[sl], rtol=0.07)  # single pixel: 5 sigma
            np.testing.assert_allclose(emp.mean(), expected[sl].mean(), rtol=0.03)
            assert abs(float((noisy[rows, sl] - 1.0).mean())) < 3 * expected[sl][0] / np.sqrt(
                (n // 2) * (sl.stop - sl.start)
            )


def test_add_noise_photon_scaling_dtype_and_reproducibility():
    flux = np.tile(np.array([1.0, 0.25, 0.0], dtype=np.float32), (3000, 1))
    noisy, sigma = add_noise(flux, 50.0, 1.0, generator=7, photon_noise=True)
    assert isinstance(noisy, np.ndarray) and noisy.dtype == np.float32
    # the noise follows the noise-free flux (floored at 0.01: sqrt 0.1) ...
    np.testing.assert_allclose((noisy - flux).std(axis=0), [1 / 50, 0.5 / 50, 0.1 / 50],
                               rtol=0.1)
    # ... the reported sigma is computed from the noisy flux, with the same floor
    np.testing.assert_allclose(sigma, np.sqrt(np.maximum(noisy, 0.01)) / 50, rtol=1e-6)
    assert not np.allclose(sigma[:, 1], 0.5 / 50, rtol=1e-3)
    again, _ = add_noise(flux, 50.0, 1.0, generator=7, photon_noise=True)
    np.testing.assert_array_equal(noisy, again)
    other, _ = add_noise(flux, 50.0, 1.0, generator=8, photon_noise=True)
    assert not np.array_equal(noisy, other)
    g = torch.Generator().manual_seed(7)
    viagen, _ = add_noise(torch.from_numpy(flux), 50.0, 1.0, generator=g, photon_noise=True)
    np.testing.assert_array_equal(viagen.numpy(), noisy)
    # a higher continuum level scales sigma
    _, s2 = add_noise(np.full((1, 3), 2.0), 10.0, 1.0, continuum=2.0, generator=0)
    np.testing.assert_allclose(s2, 0.2)
    noisy2, s2 = add_noise(np.full((1, 3), 2.0), 10.0, 1.0, continuum=2.0, generator=0,
                           photon_noise=True)
    np.testing.assert_allclose(s2, np.sqrt(2.0 * np.maximum(noisy2, 0.02)) / 10, rtol=1e-12)


@pytest.mark.parametrize("photon_noise", [True, False])
def test_add_noise_is_draw_noise_at_a_snr_per_angstrom(photon_noise):
    """The validation pages' noise (add_noise) is the training noise (draw_noise)."""
    grid = WavelengthGrid((GridSegment("A", 5000.0, 5004.95, 0.05),))
    flux = torch.linspace(-0.05, 1.1, grid.npix, dtype=torch.float64).repeat(3, 1)
    noisy, sigma = add_noise(flux, [20.0, 80.0, 300.0], grid, generator=3,
                             photon_noise=photon_noise)
    snr_pix = torch.tensor([[20.0], [80.0], [300.0]], dtype=torch.float64) * torch.sqrt(
        torch.as_tensor(grid.pixel_width))
    ref = draw_noise(flux, snr_pix, torch.Generator().manual_seed(3), photon_noise=photon_noise)
    torch.testing.assert_close(noisy, ref[0], rtol=1e-14, atol=0)
    torch.testing.assert_close(sigma, ref[1], rtol=1e-14, atol=0)


def test_draw_noise_rule():
    flux = torch.tensor([[1.0, 0.5, 0.0, -0.2]]).repeat(20000, 1)
    snr = torch.full((20000, 1), 40.0)
    noisy, sigma = draw_noise(flux, snr, torch.Generator().manual_seed(0))
    true = torch.sqrt(flux[0].clamp(min=NOISE_FLOOR)) / 40.0
    torch.testing.assert_close((noisy - flux).std(dim=0), true, rtol=0.03, atol=0)
    torch.testing.assert_close(sigma, torch.sqrt(noisy.clamp(min=NOISE_FLOOR)) / snr)
    assert float(sigma.min()) == pytest.approx(math.sqrt(NOISE_FLOOR) / 40.0)
    const, sig_c = draw_noise(flux, snr, torch.Generator().manual_seed(0), photon_noise=False)
    assert sig_c.shape == flux.shape and bool((sig_c == 1 / 40.0).all())
    # the same draw: constant noise is the photon noise of a flat continuum
    flat, _ = draw_noise(torch.ones_like(flux), snr, torch.Generator().manual_seed(0))
    torch.testing.assert_close(const - flux, flat - 1.0, rtol=0, atol=1e-6)


def test_add_noise_rejects_bad_input():
    flux = np.ones((2, 5))
    with pytest.raises(ValueError, match="snr_per_angstrom"):
        add_noise(flux, [10.0, 0.0], 0.1)
    with pytest.raises(ValueError, match="snr_per_angstrom"):
        add_noise(flux, [10.0, 20.0, 30.0], 0.1)
    with pytest.raises(ValueError, match="pixel_width"):
        add_noise(flux, 10.0, np.ones(4))
    with pytest.raises(ValueError, match="positive"):
        add_noise(flux, 10.0, -0.1)
    with pytest.raises(TypeError, match="generator"):
        add_noise(flux, 10.0, 0.1, generator=np.random.default_rng(0))
