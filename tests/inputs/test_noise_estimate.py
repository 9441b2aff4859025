"""Tests of DER_SNR and the masked row quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from specutils_cinn.inputs.noise_estimate import der_snr, masked_quantile


@pytest.mark.parametrize("m", [1, 2, 7, 64, 301])
@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_masked_quantile_matches_numpy(m, q):
    rng = np.random.default_rng(m)
    values = rng.normal(size=(60, m))
    valid = rng.uniform(size=(60, m)) > rng.uniform(size=(60, 1))
    valid[0] = True
    valid[1] = False
    values[2, 0] = np.nan  # non-finite values count as invalid
    result = masked_quantile(values, valid, q)
    for i in range(60):
        ok = valid[i] & np.isfinite(values[i])
        expected = np.quantile(values[i][ok], q) if ok.any() else np.nan
        assert result[i] == pytest.approx(expected, abs=1e-14, nan_ok=True)


def test_masked_quantile_large_block_chunks():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 5000))  # several internal chunks
    valid = rng.uniform(size=values.shape) > 0.3
    result = masked_quantile(values, valid, 0.5)
    expected = [np.median(v[ok]) for v, ok in zip(values, valid, strict=True)]
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-14)


def test_masked_quantile_errors():
    with pytest.raises(ValueError, match="same shape"):
        masked_quantile(np.ones((2, 3)), np.ones((2, 4), bool), 0.5)
    with pytest.raises(ValueError, match="q must be"):
        masked_quantile(np.ones((2, 3)), np.ones((2, 3), bool), 1.5)


def test_der_snr_recovers_gaussian_noise():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 20000)
    level = 100.0 * (1 + 0.2 * np.sin(6 * x))  # smooth on the scale of a few pixels
    sigma = np.array([1.0, 5.0, 20.0])[:, None]
    flux = level + rng.normal(size=(3, x.size)) * sigma
    snr, noise, signal = der_snr(flux)
    np.testing.assert_allclose(noise, sigma[:, 0], rtol=0.03)
    np.testing.assert_allclose(signal, np.median(flux, axis=1), rtol=1e-12)
    np.testing.assert_allclose(snr, signal / noise)


def test_der_snr_masks_zeros_and_gaps():
    rng = np.random.default_rng(2)
    flux = 10.0 + rng.normal(0, 0.5, (2, 4000))
    clean_snr, clean_noise, _ = der_snr(flux)
    bad = flux.copy()
    bad[:, 1000:1100] = 0.0  # padding zeros are ignored
    bad[:, 2000:2003] = 1e6  # a cosmic ray, masked below
    valid = np.ones(bad.shape, bool)
    valid[:, 2000:2003] = False
    _, noise, _ = der_snr(bad, valid)
    np.testing.assert_allclose(noise, clean_noise, rtol=0.05)
    # no difference spans the gap: an unmasked step between two masked pieces
    step = np.where(np.arange(4000) < 2000, 1.0, 1000.0) + rng.normal(0, 0.01, 4000)
    gap = np.ones(4000, bool)
    gap[1999:2001] = False
    _, noise_gap, _ = der_snr(step, gap)
    assert noise_gap[0] < 0.05


def test_der_snr_undefined_cases():
    snr, noise, _ = der_snr(np.ones((1, 3)))
    assert np.isnan(snr[0]) and np.isnan(noise[0])
    snr, noise, _ = der_snr(np.full((1, 50), 2.0))  # noise-free
    assert noise[0] == 0 and np.isnan(snr[0])
    snr, _, _ = der_snr(np.full((1, 50), np.nan))
    assert np.isnan(snr[0])
    with pytest.raises(ValueError, match="valid must have the shape"):
        der_snr(np.ones((2, 10)), np.ones((2, 9), bool))
