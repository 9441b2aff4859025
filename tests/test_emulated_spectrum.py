"""CINNParameterEstimator.emulated_spectrum: the comparison behind fit_chi2."""

from importlib import resources

import numpy as np
import pytest
from astropy import units as u
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator


@pytest.fixture(scope="module")
def sun_and_estimator():
    est = CINNParameterEstimator.from_pretrained(device="cpu")
    path = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(path) as p:
        sun = Spectrum.read(p, format="tabular-fits")
    table = est.predict(sun, n_samples=200, seed=1, progress=False)
    return est, sun, table


def test_emulated_spectrum_reproduces_fit_chi2(sun_and_estimator):
    est, sun, table = sun_and_estimator
    fit = est.emulated_spectrum(sun, table[0])
    grid = est.model.metadata.grid.wavelength
    assert fit.wavelength.shape == grid.shape and np.all(fit.wavelength == grid)
    used = ~fit.mask
    assert used.sum() > 0.9 * used.size
    assert np.all(np.isfinite(fit.flux[used])) and np.all(np.isfinite(fit.emulated[used]))
    chi2 = np.mean((fit.flux[used] - fit.emulated[used]) ** 2
                   / (fit.uncertainty[used] ** 2 + fit.error_floor[used] ** 2))
    np.testing.assert_allclose(chi2, table["fit_chi2"][0], rtol=1e-6)
    # the masked HARPS chip gap is masked here too
    gap = (fit.wavelength > 5310 * u.AA) & (fit.wavelength < 5330 * u.AA)
    assert np.all(fit.mask[gap]) and np.all(np.isnan(fit.flux[gap]))


def test_emulated_spectrum_takes_mappings_and_sequences(sun_and_estimator):
    est, sun, table = sun_and_estimator
    row = table[0]
    by_row = est.emulated_spectrum(sun, row)
    mapping = {p: row[p] for p in est.parameters}
    mapping["teff"] = row["teff"].to(u.K).value  # plain numbers are in the model's units
    by_map = est.emulated_spectrum(sun, mapping)
    by_seq = est.emulated_spectrum(sun, [row[p].value for p in est.parameters])
    np.testing.assert_allclose(by_map.emulated, by_row.emulated, equal_nan=True)
    np.testing.assert_allclose(by_seq.emulated, by_row.emulated, equal_nan=True)
    hotter = dict(mapping, teff=6500.0)
    assert not np.allclose(est.emulated_spectrum(sun, hotter).emulated, by_row.emulated,
                           equal_nan=True)


def test_emulated_spectrum_refuses_bad_input(sun_and_estimator):
    est, sun, table = sun_and_estimator
    with pytest.raises(ValueError, match="no value for parameter 'logg'"):
        est.emulated_spectrum(sun, {"teff": 5772})
    with pytest.raises(ValueError, match="expected 11 parameter values"):
        est.emulated_spectrum(sun, [5772, 4.4])
    with pytest.raises(ValueError, match="finite"):
        est.emulated_spectrum(sun, dict({p: table[0][p] for p in est.parameters}, teff=np.nan))
    two = Spectrum(flux=np.vstack([sun.flux.value] * 2) * sun.flux.unit,
                   spectral_axis=sun.spectral_axis)
    with pytest.raises(ValueError, match="one spectrum, got 2"):
        est.emulated_spectrum(two, table[0], snr=100.0)


def test_fit_check_uses_the_predicted_lithium(sun_and_estimator):
    # the bundled models predict [Li/Fe] and also carry a default li_fe for their emulator:
    # the emulated spectrum must use the prediction, not the default
    est, _, _ = sun_and_estimator
    emulator = est.model.emulator
    names = est.model.metadata.parameter_names
    assert "li_fe" in names and "li_fe" in emulator.spec.label_defaults
    values = np.zeros((2, len(names)))
    values[:, names.index("fe_h")] = [-1.0, 0.2]
    values[:, names.index("li_fe")] = [1.5, -0.3]
    labels, _ = emulator.labels(names, values)
    a_li = labels[:, list(emulator.spec.label_names).index("a_li")]
    np.testing.assert_allclose(a_li, [1.5 + 1.05 - 1.0, -0.3 + 1.05 + 0.2])


def test_public_prepare_and_fit_statistics_reproduce_predict(sun_and_estimator):
    est, sun, table = sun_and_estimator
    prepared = est.prepare(sun)
    assert prepared.n_rows == 1
    assert prepared.flux.shape == (1, est.model.metadata.grid.npix)
    medians = np.array([[table[p][0].value if hasattr(table[p][0], "value") else table[p][0]
                         for p in est.parameters]])
    fit = est.fit_statistics(prepared, medians)
    np.testing.assert_allclose(fit.chi2, table["fit_chi2"], rtol=1e-6)
    np.testing.assert_allclose(fit.feature_sigma, table["feature_sigma"], rtol=1e-6)
    with pytest.raises(ValueError, match="one row per spectrum"):
        est.fit_statistics(prepared, medians[:, :-1])
    with pytest.raises(ValueError, match="medium"):
        est.prepare(sun, medium="water")


def test_bundled_model_without_macroturbulence_emulates_as_before(sun_and_estimator):
    # a model trained without macroturbulence: no macroturbulence, and the emulated spectra are
    # bit-identical to the rotation-only emulation from before the macroturbulence rule
    import torch

    from specutils_cinn.instruments.rotation import BinnedRotation

    est, _, table = sun_and_estimator
    fe = est.model.emulator
    names = est.parameters
    values = np.array([[table[p][0].value for p in names]], dtype=float)
    values = np.vstack([values, values])
    values[1, names.index("vsini")] = 12.0
    assert fe.vmacro_range is None and fe.macroturbulence(names, values) is None
    labels, vsini = fe.labels(names, values)
    top = est.model.metadata.ranges[names.index("vsini")][1]
    with torch.no_grad():
        old = BinnedRotation(fe.spec.grid, max_shift=0.0)(
            fe.emulator(torch.as_tensor(labels, dtype=torch.float64), clamp=True),
            torch.as_tensor(np.clip(vsini, 0.0, top), dtype=torch.float64))
        new = fe.emulate(names, values, vsini_max=top)
    np.testing.assert_array_equal(new.numpy(), old.numpy())
