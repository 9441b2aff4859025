"""Tests of specutils_cinn.instruments.noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre

from specutils_cinn.grid import GridSegment, WavelengthGrid
from specutils_cinn.instruments import (
    add_noise,
    continuum_distortion,
    random_masks,
    snr_per_pixel,
)


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
    np.testing.assert_allclose(sigma[0], [1 / 50, 0.5 / 50, 1e-2 / 50], rtol=1e-6)
    np.testing.assert_allclose((noisy - flux).std(axis=0), sigma[0], rtol=0.1)
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


@pytest.mark.parametrize(
    ("fraction_range", "n_gaps_range", "max_gap"),
    [((0.05, 0.2), (1, 4), 300), ((0.0, 0.02), (0, 2), 50), ((0.3, 0.3), (2, 2), 1000)],
)
def test_random_masks_fraction_in_range(fraction_range, n_gaps_range, max_gap):
    n, m = 200, 5000
    valid = random_masks(n, m, fraction_range, n_gaps_range, max_gap, generator=3)
    assert valid.shape == (n, m) and valid.dtype == torch.bool
    frac = 1.0 - valid.double().mean(dim=1)
    lo, hi = fraction_range
    assert bool((frac >= lo - 0.5 / m).all()) and bool((frac <= hi + 0.5 / m).all())
    if hi > lo:
        assert float(frac.std()) > 0.2 * (hi - lo) / np.sqrt(12)  # really drawn over the range
    # contiguous gaps: runs of masked pixels longer than chance would give
    bad = (~valid).numpy().astype(np.int8)
    starts = np.diff(np.concatenate([np.zeros((n, 1), np.int8), bad], axis=1), axis=1) == 1
    runs = bad.sum(axis=1) / np.maximum(starts.sum(axis=1), 1)
    if n_gaps_range[0] > 0 and lo > 0.01:
        assert np.median(runs) > 2.0
    torch.testing.assert_close(
        valid, random_masks(n, m, fraction_range, n_gaps_range, max_gap, generator=3)
    )


def test_random_masks_edge_cases():
    assert bool(random_masks(3, 100, (0.0, 0.0), (0, 0), 10, generator=0).all())
    assert not bool(random_masks(2, 100, (1.0, 1.0), (0, 3), 10, generator=0).any())
    assert random_masks(0, 10, generator=0).shape == (0, 10)
    with pytest.raises(ValueError, match="fraction_range"):
        random_masks(2, 10, (0.5, 0.1))
    with pytest.raises(ValueError, match="n_gaps_range"):
        random_masks(2, 10, (0.0, 0.1), (3, 1))
    with pytest.raises(ValueError, match="max_gap_pixels"):
        random_masks(2, 10, (0.0, 0.1), (0, 1), 0)


def test_continuum_distortion_coefficients_and_segments():
    wave = np.linspace(5000.0, 5500.0, 501)
    d = continuum_distortion(
        wave, 3000, amplitude=0.03, degree=3, generator=11, dtype=torch.float64
    )
    assert d.shape == (3000, 501) and d.dtype == torch.float64
    x = np.linspace(-1, 1, 501)
    coeff = legendre.legfit(x, d.numpy().T - 1.0, 3)  # [4, n]
    np.testing.assert_allclose(coeff.std(axis=1), 0.03, rtol=0.06)
    np.testing.assert_allclose(coeff.mean(axis=1), 0.0, atol=0.003)
    # no constant term: the Legendre P0 coefficient vanishes
    d1 = continuum_distortion(wave, 50, 0.03, 2, generator=1, include_constant=False)
    assert d1.dtype == torch.float32
    c1 = legendre.legfit(x, d1.double().numpy().T - 1.0, 2)
    np.testing.assert_allclose(c1[0], 0.0, atol=1e-6)
    # one independent polynomial per grid segment
    grid = WavelengthGrid(
        (GridSegment("A", 4000.0, 4100.0, 0.5), GridSegment("B", 6000.0, 6100.0, 0.5))
    )
    dg = continuum_distortion(grid, 400, 0.05, 0, generator=2, dtype=torch.float64).numpy()
    a, b = (dg[:, sl] for sl in grid.segment_slices)
    np.testing.assert_allclose(a, a[:, :1].repeat(a.shape[1], axis=1))  # degree 0: constant
    assert abs(np.corrcoef(a[:, 0], b[:, 0])[0, 1]) < 0.2
    np.testing.assert_array_equal(
        dg, continuum_distortion(grid, 400, 0.05, 0, generator=2, dtype=torch.float64).numpy()
    )
    assert bool((continuum_distortion(wave, 10, 5.0, 3, generator=0) >= 0.05).all())
    with pytest.raises(ValueError, match="amplitude"):
        continuum_distortion(wave, 2, -0.1)
    with pytest.raises(ValueError, match="degree"):
        continuum_distortion(wave, 2, 0.1, 1.5)
