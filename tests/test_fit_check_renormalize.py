"""EmulatorSpec.renormalize: the emulated spectrum gets the model's own input normalization."""

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from model.tiny_models import constant_emulator, tiny_architecture, tiny_metadata, tiny_network
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.inputs import Normalization
from specutils_cinn.model import CINNModel, EmulatorSpec, ParameterSpec
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid((GridSegment("A", 5000.0, 5019.9, 0.1),), "air")  # 200 pixels
WAVE = GRID.wavelength.value
#: A crowded spectrum with a broad depression (a strong-line wing), normalized to its true
#: continuum: its clipped-cubic pseudo-continuum is far from 1 and not a constant.
rng = np.random.default_rng(0)
CENTERS = rng.uniform(5000.0, 5020.0, 120)
DEPTHS = rng.uniform(0.3, 0.9, 120)
TRUE = (1.0 - 0.8 * np.exp(-0.5 * ((WAVE - 5003.0) / 4.0) ** 2)) * np.prod(
    [1.0 - d * np.exp(-0.5 * ((WAVE - c) / 0.08) ** 2) for c, d in zip(CENTERS, DEPTHS,
                                                                        strict=True)], axis=0)
TEFF = ParameterSpec("teff", "K", (4000.0, 7000.0), 5500.0, 800.0)
LOGG = ParameterSpec("logg", "dex(cm / s2)", (0.0, 5.0), 3.0, 1.2)
NORM = {"kind": "pseudo-continuum", "degree": 3, "n_iter": 5}


def _emulator():
    """An emulator whose spectrum is TRUE at every label."""
    return constant_emulator(GRID, TRUE)


def _estimator(renormalize: bool) -> CINNParameterEstimator:
    md = tiny_metadata(grid=GRID, parameters=(TEFF, LOGG), normalization=NORM,
                       training={"seed": 1}, architecture=tiny_architecture(npix=GRID.npix))
    model = CINNModel(md, tiny_network(npix=GRID.npix)).attach_emulator(
        _emulator(), 0.001, chi2_threshold=3.0, continuum_degree=3, renormalize=renormalize)
    return CINNParameterEstimator(model, device="cpu")


def _observed(sigma: float = 0.002) -> Spectrum:
    """The emulated star in raw counts, as an observed spectrum."""
    flux = 1.7 * TRUE + sigma * rng.standard_normal(GRID.npix)
    return Spectrum(flux=flux * u.one, spectral_axis=GRID.wavelength,
                    uncertainty=StdDevUncertainty(np.full(GRID.npix, sigma)))


def test_the_spec_records_renormalize_only_when_set():
    spec = _estimator(True).model.metadata.emulator
    assert spec.renormalize and spec.to_dict()["renormalize"] is True
    assert EmulatorSpec.from_dict(spec.to_dict()).renormalize
    plain = _estimator(False).model.metadata.emulator
    assert not plain.renormalize and "renormalize" not in plain.to_dict()
    with pytest.raises(ValueError, match="emulator.renormalize"):
        plain.replace(renormalize="yes")


def test_the_emulated_spectrum_gets_the_inputs_pseudo_continuum():
    obs = _observed()
    labels = {"teff": 5500.0, "logg": 3.0}
    before, after = (_estimator(r) for r in (False, True))
    # the pseudo-continuum of this spectrum is not a constant: compared with the true-continuum
    # spectrum the fit is poor at the true labels, compared like with like it is not
    chi2_before = before.fit_statistics(before.prepare(obs), [[5500.0, 3.0]]).chi2[0]
    chi2_after = after.fit_statistics(after.prepare(obs), [[5500.0, 3.0]]).chi2[0]
    assert chi2_before > 50.0 and chi2_after < 3.0
    fit = after.emulated_spectrum(obs, labels)
    used = ~fit.mask
    assert used.sum() > 150
    resid = (fit.flux - fit.emulated)[used]
    assert np.sqrt(np.mean(resid**2)) < 0.01
    # the emulated side is exactly the model's normalization applied to the emulated spectrum
    fe = after.model.emulator
    valid = np.isfinite(fit.flux)[None]
    got = fe.renormalized(torch.as_tensor(TRUE[None], dtype=torch.float64), valid).numpy()[0]
    want, _, ok = Normalization.from_dict(NORM).apply(TRUE[None], None, valid, GRID)
    np.testing.assert_allclose(got[ok[0]], want[0][ok[0]], rtol=1e-12)
    # rows whose input was not normalized are left as they are
    same = fe.renormalized(torch.as_tensor(TRUE[None]), valid, np.array([False])).numpy()[0]
    np.testing.assert_array_equal(same, TRUE)
