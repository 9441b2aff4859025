"""Validation metrics on analytic posteriors whose calibration is known."""

import numpy as np
import pytest
from astropy import units as u

from specutils_cinn.parameters import parameter_unit
from specutils_cinn.results import samples_table, summary_table
from specutils_cinn.validation import (
    coverage_curve,
    interval_coverage,
    level_name,
    posterior_rank_fraction,
    rank_statistics,
    summary_statistics,
)

PARAMS = ["teff", "logg"]
SCALE = np.array([100.0, 0.2])  # posterior widths, K and dex
CENTER = np.array([5500.0, 3.0])


def gaussian_posteriors(n=3000, s=199, width_factor=1.0, shift=0.0, seed=1):
    """Truth, and draws from Gaussian posteriors N(truth + e, SCALE^2 (width_factor)^2) where
    e ~ N(0, SCALE^2): with width_factor 1 and no shift the posterior is exactly calibrated
    (truth - center ~ N(0, SCALE^2)); smaller factors are over-confident."""
    rng = np.random.default_rng(seed)
    truth = CENTER + SCALE * rng.uniform(-5, 5, size=(n, 2))
    center = truth + SCALE * (rng.standard_normal((n, 2)) + shift)
    draws = center[:, None, :] + width_factor * SCALE * rng.standard_normal((n, s, 2))
    return truth, draws


def as_tables(draws, quantiles=(0.025, 0.16, 0.84, 0.975)):
    """The predict and sample_posterior tables for these draws (real column layout and units)."""
    n = draws.shape[0]
    units = [parameter_unit(p) for p in PARAMS]
    med = np.median(draws, axis=1)
    qs = np.quantile(draws, quantiles, axis=1).transpose(1, 0, 2)
    common = (np.full(n, 50.0), np.ones(n), np.zeros(n, dtype=int))
    summary = summary_table(PARAMS, units, med, qs, quantiles, draws.std(axis=1), *common)
    samples = samples_table(PARAMS, units, draws.astype(np.float32), *common)
    return summary, samples


def test_summary_statistics_known_residuals():
    rng = np.random.default_rng(0)
    truth = CENTER + SCALE * rng.uniform(-1, 1, size=(20001, 2))
    resid = rng.standard_normal((20001, 2)) * [50.0, 0.1] + [20.0, -0.05]
    stats = summary_statistics(truth, truth + resid, PARAMS)
    assert list(stats["parameter"]) == PARAMS
    assert abs(stats["bias"][0] - 20.0) < 1.5 and abs(stats["bias"][1] + 0.05) < 0.003
    np.testing.assert_allclose(stats["scatter"], [50.0, 0.1], rtol=0.03)
    np.testing.assert_allclose(stats["robust_scatter"], [50.0, 0.1], rtol=0.04)
    np.testing.assert_allclose(stats["rms"], np.hypot([50.0, 0.1], [20.0, 0.05]), rtol=0.03)


def test_summary_statistics_robust_to_outliers_and_nan():
    truth = np.zeros((101, 1))
    est = np.linspace(-1, 1, 101)[:, None]
    est[:5] = 1e4  # outliers
    est[5] = np.nan  # a row without data
    stats = summary_statistics(truth, est, ["fe_h"])
    assert stats["n"][0] == 100
    assert stats["scatter"][0] > 1000  # the std sees the outliers
    assert stats["robust_scatter"][0] < 1.0  # the robust scatter does not


def test_summary_statistics_reads_predict_table_with_units():
    truth, draws = gaussian_posteriors(n=400, s=101)
    summary, _ = as_tables(draws)
    truth_tab = {"teff": truth[:, 0] * u.K, "logg": truth[:, 1] * u.dex(u.cm / u.s**2)}
    stats = summary_statistics(truth_tab, summary)
    assert list(stats["unit"]) == ["K", "dex"]
    direct = summary_statistics(truth, np.median(draws, axis=1), PARAMS)
    np.testing.assert_allclose(stats["bias"], direct["bias"], rtol=1e-6)
    # posterior width reported next to the scatter: calibrated, so they agree
    np.testing.assert_allclose(stats["median_std"], SCALE, rtol=0.05)
    np.testing.assert_allclose(stats["scatter"], SCALE, rtol=0.12)


def test_calibrated_posterior_has_nominal_coverage():
    truth, draws = gaussian_posteriors()
    summary, samples = as_tables(draws)
    for post in (draws, samples, summary):
        cov = interval_coverage(truth, post, parameters=PARAMS)
        assert list(cov.colnames) == ["parameter", "n", "coverage_68", "coverage_95"]
        np.testing.assert_allclose(cov["coverage_68"], 0.68, atol=0.03)
        np.testing.assert_allclose(cov["coverage_95"], 0.95, atol=0.015)


def test_overconfident_posterior_undercovers():
    truth, draws = gaussian_posteriors(width_factor=0.5)
    summary, _ = as_tables(draws)
    for post in (draws, summary):
        cov = interval_coverage(truth, post, parameters=PARAMS)
        # N(0, 1) truth inside +-0.5 sigma: 38 %; inside +-0.98 sigma: 67 %
        np.testing.assert_allclose(cov["coverage_68"], 0.38, atol=0.04)
        assert np.all(cov["coverage_95"] < 0.75)


def test_interval_coverage_needs_the_quantile_columns():
    truth, draws = gaussian_posteriors(n=50, s=21)
    summary, _ = as_tables(draws, quantiles=(0.16, 0.84))
    interval_coverage(truth, summary, levels=(0.68,), parameters=PARAMS)
    with pytest.raises(ValueError, match="p2_5"):
        interval_coverage(truth, summary, levels=(0.95,), parameters=PARAMS)
    with pytest.raises(ValueError, match="levels"):
        interval_coverage(truth, draws, levels=(1.2,), parameters=PARAMS)
    with pytest.raises(ValueError, match="parameters must be given"):
        interval_coverage(truth, draws)


def test_coverage_curve_follows_diagonal_only_when_calibrated():
    truth, draws = gaussian_posteriors()
    good = coverage_curve(truth, draws, parameters=PARAMS)
    assert good.colnames == ["nominal", "teff", "logg"]
    assert good.meta["n"] == {"teff": 3000, "logg": 3000}
    for p in PARAMS:
        assert np.max(np.abs(good[p] - good["nominal"])) < 0.04
        assert np.all(np.diff(good[p]) >= 0)
    _, over = gaussian_posteriors(width_factor=0.5)
    bad = coverage_curve(truth, over, levels=[0.5, 0.68, 0.9], parameters=PARAMS)
    for p in PARAMS:
        assert np.all(bad[p] < bad["nominal"] - 0.15)
    _, under = gaussian_posteriors(width_factor=2.0)
    wide = coverage_curve(truth, under, levels=[0.5, 0.68], parameters=PARAMS)
    assert np.all(wide["teff"] > wide["nominal"] + 0.15)


def test_rank_statistics_flat_when_calibrated_and_not_otherwise():
    truth, draws = gaussian_posteriors()
    good = rank_statistics(truth, draws, n_bins=20, parameters=PARAMS)
    assert good.ranks.shape == (3000, 2)
    assert good.ranks.min() >= 0 and good.ranks.max() <= 199
    assert good.histogram.sum(axis=0).tolist() == [3000, 3000]
    np.testing.assert_allclose(good.expected.sum(axis=0), 3000)
    assert np.all(good.p_value > 1e-3)
    np.testing.assert_allclose(good.mean_fraction, 0.5, atol=0.02)
    np.testing.assert_allclose(good.std_fraction, 1 / np.sqrt(12), atol=0.01)

    _, over = gaussian_posteriors(width_factor=0.5)
    bad = rank_statistics(truth, over, n_bins=20, parameters=PARAMS)
    assert np.all(bad.p_value < 1e-10)
    assert np.all(bad.std_fraction > 0.35)  # U-shaped
    # the outer bins hold far more than their share
    assert np.all(bad.histogram[[0, -1]] > 3 * bad.expected[[0, -1]])

    _, biased = gaussian_posteriors(shift=1.0)
    skew = rank_statistics(truth, biased, n_bins=10, parameters=PARAMS)
    assert np.all(skew.p_value < 1e-10)
    assert np.all(skew.mean_fraction < 0.4)  # posterior above the truth: low ranks

    s = good.summary()
    assert s.colnames == ["parameter", "n", "chi2", "dof", "p_value", "mean_fraction",
                          "std_fraction"]
    assert list(s["dof"]) == [19, 19]


def test_rank_statistics_uneven_bins_and_missing_rows():
    truth, draws = gaussian_posteriors(n=400, s=100)
    draws[0, 3, 1] = np.nan  # one posterior without usable draws for logg
    rs = rank_statistics(truth, draws, n_bins=7, parameters=PARAMS)
    assert rs.ranks[0, 1] == -1 and rs.ranks[0, 0] >= 0
    assert rs.histogram[:, 0].sum() == 400 and rs.histogram[:, 1].sum() == 399
    # 101 possible ranks into 7 bins: widths 15 or 14, expected counts proportional
    widths = np.diff(rs.bin_edges)
    assert widths.sum() == 101 and set(widths) <= {14.0, 15.0}
    np.testing.assert_allclose(rs.expected[:, 0], 400 * widths / 101)
    with pytest.raises(ValueError, match="n_bins"):
        rank_statistics(truth, draws, n_bins=1, parameters=PARAMS)


def test_rank_fraction_and_level_names():
    truth = np.array([[0.0], [10.0]])
    samples = np.array([[[-1.0], [0.0], [1.0], [2.0]], [[1.0], [2.0], [3.0], [np.nan]]])
    frac = posterior_rank_fraction(truth, samples)
    assert frac[0, 0] == pytest.approx(1.5 / 4)
    assert np.isnan(frac[1, 0])
    assert level_name(0.68) == "coverage_68"
    assert level_name(0.955) == "coverage_95_5"
