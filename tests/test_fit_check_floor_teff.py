"""A Teff-dependent error floor of the fit check (ModelEmulator ``floor_teff``)."""

import hashlib
import json

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from model.tiny_models import constant_emulator, tiny_metadata, tiny_network
from safetensors.torch import save_file
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.calibration.fit_flag import calibrate_fit_flag
from specutils_cinn.fit_check import ModelEmulator, emulated_fit, fit_statistics
from specutils_cinn.model import EMULATOR_FILENAME, CINNModel, ModelLoadError, ParameterSpec
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid((GridSegment("A", 5000.0, 5003.1, 0.1),), "air")  # 32 pixels
WAVE = GRID.wavelength.value
LINES = 1.0 - sum(d * np.exp(-0.5 * ((WAVE - c) / 0.06) ** 2)
                  for c, d in ((5001.0, 0.6), (5001.7, 0.4), (5002.2, 0.7)))
TEFF = ParameterSpec("teff", "K", (4000.0, 7000.0), 5500.0, 800.0)
LOGG = ParameterSpec("logg", "dex(cm / s2)", (0.0, 5.0), 3.0, 1.2)
NODES = [5000.0, 6000.0]
#: Floor rows at the two nodes: 0.01 and 0.03 everywhere but a larger value at pixel 5.
FLOORS = np.array([np.full(GRID.npix, 0.01), np.full(GRID.npix, 0.03)], np.float32)
FLOORS[:, 5] = [0.02, 0.05]


def _emulator():
    """An emulator whose spectrum is LINES at every label."""
    return constant_emulator(GRID, LINES)


def _model(floor, floor_teff=None) -> CINNModel:
    md = tiny_metadata(grid=GRID, parameters=(TEFF, LOGG), training={"seed": 1})
    return CINNModel(md, tiny_network()).attach_emulator(
        _emulator(), floor, chi2_threshold=3.0, continuum_degree=0, floor_teff=floor_teff)


def _interpolated(teff: float) -> np.ndarray:
    """The floor a spectrum at ``teff`` should get: the variance interpolated linearly."""
    x = np.clip((teff - NODES[0]) / (NODES[1] - NODES[0]), 0.0, 1.0)
    return np.sqrt((1 - x) * FLOORS[0].astype(float) ** 2 + x * FLOORS[1].astype(float) ** 2)


def test_the_floor_variance_is_interpolated_in_each_rows_teff():
    fe = _model(FLOORS, NODES).emulator
    values = np.array([[4000.0, 3.0], [5000.0, 3.0], [5250.0, 4.0], [5500.0, 1.0],
                       [6000.0, 2.0], [6900.0, 2.0]])
    var = fe.floor_variance(["teff", "logg"], values).numpy()
    assert var.shape == (len(values), GRID.npix)
    for row, teff in zip(var, values[:, 0], strict=True):
        np.testing.assert_allclose(np.sqrt(row), _interpolated(teff), rtol=1e-6)
    np.testing.assert_allclose(fe.floor_at(["teff", "logg"], values), np.sqrt(var))
    # one floor: the same variance for every row, as before
    plain = _model(FLOORS[0]).emulator
    assert plain.floor_teff is None
    np.testing.assert_allclose(plain.floor_variance(["teff", "logg"], values).numpy(),
                               FLOORS[0].astype(float) ** 2)
    with pytest.raises(ValueError, match="Teff"):
        fe.floor_variance(["logg"], values[:, 1:])


def test_chi2_uses_the_floor_at_each_spectrums_teff():
    fe = _model(FLOORS, NODES).emulator
    rng = np.random.default_rng(3)
    teff = np.array([4500.0, 5000.0, 5400.0, 5800.0, 6500.0])
    values = np.column_stack([teff, np.full(teff.size, 3.0)])
    flux = LINES + 0.02 * rng.standard_normal((teff.size, GRID.npix))
    sigma = np.full(flux.shape, 0.002)
    valid = np.ones(flux.shape, bool)
    got = fit_statistics(fe, ["teff", "logg"], values, flux, sigma, valid)
    for i, t in enumerate(teff):
        one = _model(_interpolated(t)).emulator  # a fixed floor equal to the interpolated one
        want = fit_statistics(one, ["teff", "logg"], values[i:i + 1], flux[i:i + 1],
                              sigma[i:i + 1], valid[i:i + 1])
        np.testing.assert_allclose(got.chi2[i], want.chi2[0], rtol=1e-5)
        np.testing.assert_allclose(got.mismatch[i], want.mismatch[0], rtol=1e-5, atol=1e-9)
    # a cool spectrum with the same residuals gets a smaller chi-square than at the cool node
    assert got.chi2[-1] < got.chi2[0]
    # emulated_fit (behind emulated_spectrum) weights the continuum fit with the same floor
    em, used = emulated_fit(fe, ["teff", "logg"], values, flux, sigma, valid)
    assert used.all() and np.isfinite(em).all()


def test_emulated_spectrum_reports_the_floor_at_the_given_teff():
    est = CINNParameterEstimator(_model(FLOORS, NODES), device="cpu")
    spec = Spectrum(flux=LINES * u.one, spectral_axis=GRID.wavelength,
                    uncertainty=StdDevUncertainty(np.full(GRID.npix, 0.002)))
    for t in (4800.0, 5600.0):
        fit = est.emulated_spectrum(spec, {"teff": t, "logg": 3.0}, normalize=False)
        np.testing.assert_allclose(fit.error_floor, _interpolated(t), rtol=1e-6)


def test_a_teff_floor_survives_save_and_load(tmp_path):
    model = _model(FLOORS, NODES)
    model.save(tmp_path / "m")
    loaded = CINNModel.load(tmp_path / "m").emulator
    np.testing.assert_array_equal(loaded.floor_teff, NODES)
    np.testing.assert_array_equal(loaded.error_floor, FLOORS)
    values = np.array([[5300.0, 3.0]])
    np.testing.assert_array_equal(loaded.floor_variance(["teff", "logg"], values).numpy(),
                                  model.emulator.floor_variance(["teff", "logg"], values).numpy())
    # a model with one floor writes no node tensor and loads as before
    _model(FLOORS[0]).save(tmp_path / "one")
    assert CINNModel.load(tmp_path / "one").emulator.floor_teff is None


def test_bad_teff_floors_are_refused():
    fe = _model(FLOORS, NODES).emulator
    with pytest.raises(ValueError, match="strictly increasing"):
        ModelEmulator(fe.spec, fe.emulator, FLOORS, GRID, floor_teff=[6000.0, 5000.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        ModelEmulator(fe.spec, fe.emulator, FLOORS[:1], GRID, floor_teff=[5000.0])
    with pytest.raises(ValueError, match=r"error_floor must be \(3, 32\)"):
        ModelEmulator(fe.spec, fe.emulator, FLOORS, GRID, floor_teff=[4000.0, 5000.0, 6000.0])
    with pytest.raises(ValueError, match="non-negative"):
        ModelEmulator(fe.spec, fe.emulator, -FLOORS, GRID, floor_teff=NODES)
    with pytest.raises(ValueError, match=r"error_floor must be \(2, 32\)"):
        ModelEmulator(fe.spec, fe.emulator, FLOORS[0], GRID, floor_teff=NODES)  # one row


def test_a_file_whose_floor_and_nodes_disagree_is_refused(tmp_path):
    model = _model(FLOORS, NODES)
    model.save(tmp_path / "m")
    path = tmp_path / "m" / EMULATOR_FILENAME
    tensors = model.emulator.state_tensors()
    tensors["error_floor_teff"] = torch.tensor([4000.0, 5000.0, 6000.0], dtype=torch.float64)
    save_file(tensors, str(path))
    meta_path = next((tmp_path / "m").glob("*.json"))
    meta = json.loads(meta_path.read_text())
    meta["emulator"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="error_floor_teff"):
        _ = CINNModel.load(tmp_path / "m").emulator


def test_calibrate_fit_flag_checks_the_teff_nodes_before_any_work(tmp_path):
    _model(FLOORS[0]).save(tmp_path / "m")
    # the emulator and grid do not exist: a node error must come before they are read
    with pytest.raises(ValueError, match="strictly increasing"):
        calibrate_fit_flag(tmp_path / "m", tmp_path / "no-emulator", tmp_path / "no-grid",
                           "1.0.1", tmp_path / "out", floor_teff_nodes=[6000.0, 5000.0])
    assert not (tmp_path / "out").exists()
