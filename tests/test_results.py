"""The records that results tables are built from, and the 0.1 call forms kept for one release."""

import numpy as np
import pytest

from specutils_cinn.parameters import parameter_unit
from specutils_cinn.results import (
    PosteriorSummary,
    SpectrumDiagnostics,
    samples_table,
    summary_table,
)

PARAMS = ["teff", "logg", "fe_h", "mg_fe"]
UNITS = [parameter_unit(p) for p in PARAMS]
LEVELS = (0.025, 0.16, 0.84, 0.975)


def _arrays(n=3, s=40, seed=2):
    rng = np.random.default_rng(seed)
    draws = (rng.normal(size=(n, s, len(PARAMS))) * [60.0, 0.1, 0.05, 0.03]
             + [5700.0, 4.4, 0.0, 0.1])
    median = np.median(draws, axis=1)
    quantiles = np.quantile(draws, LEVELS, axis=1).transpose(1, 0, 2)
    return draws, median, quantiles, draws.std(axis=1)


def _per_spectrum(n=3):
    return dict(snr=np.array([50.0, 20.0, 5.0]), coverage=np.array([1.0, 0.9, 0.4])[:n],
                flags=np.array([0, 16, 33])[:n], fit_chi2=np.array([1.1, np.nan, 4.0])[:n],
                feature_sigma=np.array([30.0, 12.0, 2.0])[:n],
                fit_mismatch=np.array([0.0, 0.01, np.nan])[:n])


def _assert_same_table(a, b):
    assert a.colnames == b.colnames
    assert a.meta == b.meta
    for name in a.colnames:
        ca, cb = a[name], b[name]
        assert type(ca) is type(cb), name
        assert getattr(ca, "unit", None) == getattr(cb, "unit", None), name
        assert ca.info.description == cb.info.description, name
        assert ca.info.format == cb.info.format, name
        assert np.array_equal(np.asarray(getattr(ca, "mask", False)),
                              np.asarray(getattr(cb, "mask", False))), name
        va = np.asarray(getattr(ca, "unmasked", ca))
        vb = np.asarray(getattr(cb, "unmasked", cb))
        assert va.dtype == vb.dtype and np.array_equal(va, vb, equal_nan=True), name


def test_summary_table_from_records_equals_the_old_call_form():
    _, median, quantiles, std = _arrays()
    d = _per_spectrum()
    meta = {"MODEL": "test", "QUANTILE": list(LEVELS)}
    new = summary_table(PARAMS, UNITS, PosteriorSummary(median, quantiles, LEVELS, std),
                        SpectrumDiagnostics(**d), meta=meta, unconstrained=["mg_fe"])
    old_positional = summary_table(
        PARAMS, UNITS, median, quantiles, LEVELS, std, d["snr"], d["coverage"], d["flags"],
        meta, d["fit_chi2"], d["feature_sigma"], d["fit_mismatch"], ["mg_fe"])
    old_keywords = summary_table(
        PARAMS, UNITS, median, quantiles, LEVELS, std, d["snr"], d["coverage"], d["flags"],
        meta=meta, fit_chi2=d["fit_chi2"], feature_sigma=d["feature_sigma"],
        fit_mismatch=d["fit_mismatch"], unconstrained=["mg_fe"])
    _assert_same_table(new, old_positional)
    _assert_same_table(new, old_keywords)
    assert new.colnames[:6] == ["teff", "teff_p2_5", "teff_p16", "teff_p84", "teff_p97_5",
                                "teff_std"]
    assert np.all(new["mg_fe"].mask) and not np.any(getattr(new["teff"], "mask", False))
    assert np.array_equal(new["flags"], d["flags"]) and new["flags"].dtype == np.int32
    assert new.meta["MODEL"] == "test" and "FLAGBITS" in new.meta


def test_samples_table_from_records_equals_the_old_call_form():
    draws, *_ = _arrays()
    draws = draws.astype(np.float32)
    d = _per_spectrum()
    new = samples_table(PARAMS, UNITS, draws, SpectrumDiagnostics(**d), meta={"SEED": 4},
                        unconstrained=["mg_fe"])
    old = samples_table(PARAMS, UNITS, draws, d["snr"], d["coverage"], d["flags"], {"SEED": 4},
                        fit_chi2=d["fit_chi2"], feature_sigma=d["feature_sigma"],
                        fit_mismatch=d["fit_mismatch"], unconstrained=["mg_fe"])
    _assert_same_table(new, old)
    assert new["teff"].shape == (3, 40) and new["teff"].dtype == np.float32


def test_diagnostics_fill_unknown_fit_columns_with_nan():
    d = SpectrumDiagnostics(snr=[10, 20], coverage=[1, 1], flags=[0, 8])
    assert d.snr.dtype == np.float64 and d.flags.dtype == np.int32 and len(d) == 2
    for name in ("fit_chi2", "feature_sigma", "fit_mismatch"):
        assert np.all(np.isnan(getattr(d, name))) and getattr(d, name).shape == (2,)


@pytest.mark.parametrize(
    ("change", "match"),
    [({"coverage": [1.0, 1.0]}, "coverage must be of length 3"),
     ({"flags": np.zeros((3, 1))}, "flags must be of length 3"),
     ({"fit_chi2": [1.0]}, "fit_chi2 must be of length 3"),
     ({"snr": 5.0}, "snr must be one-dimensional"),
     ({"snr": None}, "snr is required"),
     ({"flags": None}, "flags is required")],
)
def test_diagnostics_refuse_fields_that_do_not_fit(change, match):
    with pytest.raises(ValueError, match=match):
        SpectrumDiagnostics(**{**_per_spectrum(), **change})


def test_posterior_summary_checks_shapes_and_levels():
    _, median, quantiles, std = _arrays()
    p = PosteriorSummary(median, quantiles, list(LEVELS), std)
    assert p.quantile_levels == LEVELS
    with pytest.raises(ValueError, match="quantiles must have shape"):
        PosteriorSummary(median, quantiles[:, :2], LEVELS, std)
    with pytest.raises(ValueError, match="std must have shape"):
        PosteriorSummary(median, quantiles, LEVELS, std[:2])
    with pytest.raises(ValueError, match="median must have shape"):
        PosteriorSummary(median[0], quantiles, LEVELS, std)
    with pytest.raises(ValueError, match="quantiles must be numbers in"):
        PosteriorSummary(median, quantiles, (0.0, 0.16, 0.84, 1.0), std)


def test_the_new_form_takes_no_extra_arguments():
    draws, median, quantiles, std = _arrays()
    post = PosteriorSummary(median, quantiles, LEVELS, std)
    diag = SpectrumDiagnostics(**_per_spectrum())
    with pytest.raises(TypeError, match="1 positional"):
        summary_table(PARAMS, UNITS, post, diag, {"MODEL": "x"})
    with pytest.raises(TypeError, match="fit_chi2"):
        samples_table(PARAMS, UNITS, draws, diag, fit_chi2=np.ones(3))
    with pytest.raises(TypeError):  # the 0.1 form, with an argument missing
        summary_table(PARAMS, UNITS, median, quantiles, LEVELS, std, np.ones(3))
