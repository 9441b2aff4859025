"""The fit check broadens the emulated spectrum by macroturbulence as the model was trained."""

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from model.tiny_models import constant_emulator, tiny_metadata, tiny_network
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.fit_check import emulated_fit, fit_statistics, macroturbulence_range
from specutils_cinn.instruments.rotation import BinnedRotation
from specutils_cinn.model import CINNModel, ParameterSpec
from specutils_cinn.rv import emulated_template
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid((GridSegment("A", 5000.0, 5003.1, 0.1),), "air")  # 32 pixels
WAVE = GRID.wavelength.value
LINES = 1.0 - sum(d * np.exp(-0.5 * ((WAVE - c) / 0.06) ** 2)
                  for c, d in ((5001.0, 0.6), (5001.7, 0.4), (5002.2, 0.7)))
TEFF = ParameterSpec("teff", "K", (4000.0, 7000.0), 5500.0, 800.0)
NUISANCE = {"data": {"macroturbulence": {
    "profile": "radial-tangential (Gray 2005; zeta_R = zeta_T, equal area fractions)",
    "distribution": "uniform", "range": [2.0, 10.0], "role": "nuisance (marginalized)"}}}


def _emulator():
    """An emulator whose spectrum is LINES at every label."""
    return constant_emulator(GRID, LINES)


def _model(second: ParameterSpec, training: dict) -> CINNModel:
    md = tiny_metadata(grid=GRID, parameters=(TEFF, second), training=training)
    return CINNModel(md, tiny_network()).attach_emulator(
        _emulator(), 0.001, chi2_threshold=3.0, continuum_degree=0)


def _broadened(vmacro, vsini=None) -> np.ndarray:
    """LINES broadened by macroturbulence (and rotation), as the training simulator does."""
    n = len(vmacro)
    vsini = np.zeros(n) if vsini is None else np.asarray(vsini, float)
    rot = BinnedRotation(GRID, max_vmacro=20.0)
    return rot(torch.as_tensor(np.tile(LINES, (n, 1))), torch.as_tensor(vsini),
               vmacro=torch.as_tensor(np.asarray(vmacro, float))).numpy()


def _chi2(model: CINNModel, values: np.ndarray, flux: np.ndarray) -> np.ndarray:
    sigma = np.full(flux.shape, 0.002)
    return fit_statistics(model.emulator, model.metadata.parameter_names, values, flux, sigma,
                          np.ones(flux.shape, bool)).chi2


def test_nuisance_macroturbulence_uses_the_midpoint_of_the_training_range():
    logg = ParameterSpec("logg", "dex(cm / s2)", (0.0, 5.0), 3.0, 1.2)
    model = _model(logg, NUISANCE)
    plain = _model(logg, {"seed": 1})
    fe = model.emulator
    values = np.array([[5000.0, 3.0], [6000.0, 4.0]])
    assert fe.vmacro_range == (2.0, 10.0) and fe.rotation.max_vmacro == 10.0
    np.testing.assert_array_equal(fe.macroturbulence(["teff", "logg"], values), [6.0, 6.0])
    flux = _broadened([6.0, 6.0])
    assert np.abs(flux - LINES).max() > 0.05  # macroturbulence matters on this grid
    with_rule, without = _chi2(model, values, flux), _chi2(plain, values, flux)
    assert np.all(with_rule < 0.05) and np.all(without > 20 * with_rule + 1.0)
    # emulated_fit (behind emulated_spectrum and plot_spectrum_fit) uses the same rule
    emulated, used = emulated_fit(fe, ["teff", "logg"], values, flux,
                                  np.full(flux.shape, 0.002), np.ones(flux.shape, bool))
    assert used.all() and np.abs(emulated - flux).max() < 1e-3
    est = CINNParameterEstimator(model, device="cpu")
    spec = Spectrum(flux=flux[0] * u.one, spectral_axis=GRID.wavelength,
                    uncertainty=StdDevUncertainty(np.full(GRID.npix, 0.002)))
    fit = est.emulated_spectrum(spec, {"teff": 5000.0, "logg": 3.0}, normalize=False)
    np.testing.assert_allclose(fit.emulated, emulated[0], atol=1e-9)
    # the RV template is emulated the same way
    np.testing.assert_allclose(emulated_template(model, None)[0], flux[0], atol=1e-3)


def test_a_model_predicting_vmacro_uses_each_rows_value_clipped_to_its_range():
    vmacro = ParameterSpec("vmacro", "km / s", (0.0, 8.0), 4.0, 2.0)
    record = {"data": {"macroturbulence": dict(NUISANCE["data"]["macroturbulence"],
                                               range=[0.0, 8.0], role="label")}}
    for training in (record, {"seed": 1}):  # without a record: the parameter's range
        model = _model(vmacro, training)
        fe = model.emulator
        assert fe.vmacro_range == (0.0, 8.0) == macroturbulence_range(model.metadata)
        values = np.array([[5000.0, 2.0], [5000.0, 6.0], [5000.0, 20.0], [5000.0, -1.0]])
        zeta = fe.macroturbulence(["teff", "vmacro"], values)
        np.testing.assert_array_equal(zeta, [2.0, 6.0, 8.0, 0.0])
        flux = _broadened(zeta)
        right = _chi2(model, values, flux)
        wrong = _chi2(model, values[[1, 0, 3, 2]], flux)  # zeta of another row
        assert np.all(right < 0.05) and np.all(wrong > 20 * right + 1.0)
        # the default RV template is the Sun, with the Sun's macroturbulence
        np.testing.assert_allclose(emulated_template(model, None)[0], _broadened([3.5])[0],
                                   atol=1e-3)


def test_models_without_macroturbulence_are_unchanged():
    vsini = ParameterSpec("vsini", "km / s", (0.0, 50.0), 10.0, 10.0)
    model = _model(vsini, {"seed": 1, "data": {"macroturbulence": None}})
    fe = model.emulator
    assert fe.vmacro_range is None and macroturbulence_range(model.metadata) is None
    values = np.array([[5000.0, 0.0], [5000.0, 7.5], [5000.0, 80.0]])
    assert fe.macroturbulence(["teff", "vsini"], values) is None
    assert fe.rotation.max_vmacro == 0.0
    # bit-identical to the rotation-only emulation from before macroturbulence
    labels, vs = fe.labels(["teff", "vsini"], values)
    with torch.no_grad():
        old = BinnedRotation(GRID, max_shift=0.0)(
            fe.emulator(torch.as_tensor(labels, dtype=torch.float64), clamp=True),
            torch.as_tensor(np.clip(vs, 0.0, 50.0), dtype=torch.float64))
        new = fe.emulate(["teff", "vsini"], values, vsini_max=50.0)
    np.testing.assert_array_equal(new.numpy(), old.numpy())
    with pytest.raises(ValueError, match="vmacro_range"):
        type(fe)(fe.spec, fe.emulator, 0.0, GRID, vmacro_range=(5.0, 1.0))
