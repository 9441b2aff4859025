"""The POOR_FIT calibration's summaries of fit_chi2 (the driver itself runs on real grids)."""

import numpy as np

from specutils_cinn.calibration.fit_flag import CANDIDATES, describe_chi2, flagged_fractions


def test_flagged_fractions_ignore_nan():
    chi2 = np.array([1.0, 2.2, 3.5, np.nan, 12.0])
    fr = flagged_fractions(chi2, (2.0, 3.0, 10.0))
    assert fr == {"2": 0.75, "3": 0.5, "10": 0.25}
    assert np.isnan(flagged_fractions(np.array([np.nan]), (2.0,))["2"])
    assert list(flagged_fractions(chi2, CANDIDATES)) == [f"{c:g}" for c in CANDIDATES]


def test_describe_chi2():
    d = describe_chi2(np.array([np.nan, 1.0, 3.0, 2.0]))
    assert d["n"] == 3 and d["min"] == 1.0 and d["median"] == 2.0 and d["max"] == 3.0
    assert describe_chi2(np.array([np.nan])) == {"n": 0}


def test_chi2_at_the_posterior_median_is_the_fit_chi2_of_predict():
    """The calibration recomputes fit_chi2 through the estimator's own preparation."""
    from importlib import resources

    from specutils import Spectrum

    from specutils_cinn import CINNParameterEstimator
    from specutils_cinn.calibration import fit_flag

    est = CINNParameterEstimator.from_pretrained(device="cpu")
    path = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(path) as p:
        sun = Spectrum.read(p, format="tabular-fits")
    table = est.predict(sun, n_samples=100, seed=1, progress=False)
    median = np.column_stack([np.asarray(getattr(table[p], "unmasked", table[p]).value)
                              for p in est.parameters])
    chi2 = fit_flag._chi2_at(est, sun, median)
    np.testing.assert_allclose(chi2, np.asarray(table["fit_chi2"]), rtol=1e-6)


def test_the_calibration_info_says_how_the_floor_treats_macroturbulence():
    from types import SimpleNamespace

    from specutils_cinn.calibration.fit_flag import _macroturbulence_note

    assert _macroturbulence_note(SimpleNamespace(vmacro_range=None), ["teff"], False) == ""
    nuisance = _macroturbulence_note(SimpleNamespace(vmacro_range=(2.0, 10.0)), ["teff"], True)
    assert "nuisance" in nuisance and "zeta = 6 km/s" in nuisance
    label = _macroturbulence_note(SimpleNamespace(vmacro_range=(0.0, 8.0)), ["vmacro"], True)
    assert "true zeta" in label and "0-8 km/s" in label
