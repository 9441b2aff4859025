"""Tests of the Gaussian-process emulator (``kind = "gp"``, `specutils_cinn.emulator.gp`)."""

import json
import math

import numpy as np
import pytest
import torch

from specutils_cinn.emulator import (
    EmulatorConfig,
    SpectrumEmulator,
    load_emulator,
    save_emulator,
    train_emulator,
)
from specutils_cinn.emulator.gp import (
    GaussianProcessCoefficients,
    correlation,
    fit_gaussian_process,
)
from specutils_cinn.fit_check import trim_emulator
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

NAMES = ["teff", "logg", "fe_h"]
GRID = WavelengthGrid((GridSegment("A", 5000.0, 5012.0, 0.05),))


def line_flux(labels: np.ndarray) -> np.ndarray:
    """Two lines whose depths and widths vary smoothly (and non-linearly) with the labels."""
    w = GRID.wavelength.value[None, :]
    t = (labels[:, 0:1] - 5500.0) / 1500.0
    g = (labels[:, 1:2] - 3.0) / 2.0
    z = labels[:, 2:3]
    out = np.ones((labels.shape[0], w.shape[1]))
    for lam, s in ((5004.0, 0.6), (5008.5, 0.4)):
        depth = s / (1.0 + np.exp(-(1.5 * z + 0.5 - 1.5 * t)))
        sigma = 0.12 + 0.04 * (1.0 - g) + 0.02 * np.sin(2.0 * t)
        out *= 1.0 - depth * np.exp(-0.5 * ((w - lam) / sigma) ** 2)
    return out.astype(np.float32)


def labels_of(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = np.array([4000.0, 1.0, -2.0]), np.array([7000.0, 5.0, 0.5])
    return lo + (hi - lo) * rng.uniform(size=(n, 3))


@pytest.fixture(scope="module")
def gp_emulator():
    lab = labels_of(300, 1)
    cfg = EmulatorConfig(kind="gp", n_components=16, gp_groups=(4,), gp_steps=150, seed=0)
    return train_emulator(lab, line_flux(lab), NAMES, GRID, cfg, log=None)


def test_correlation_values_and_gradient():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    ell = torch.tensor([1.0, 2.0], dtype=torch.float64)
    k = correlation(a, a, ell)
    assert torch.allclose(torch.diagonal(k), torch.ones(2, dtype=torch.float64))
    s5 = math.sqrt(5.0)
    assert float(k[0, 1].detach()) == pytest.approx((1 + s5 + 5.0 / 3.0) * math.exp(-s5), rel=1e-12)
    assert float(correlation(a, a, ell, "rbf")[0, 1].detach()) == pytest.approx(math.exp(-0.5))
    # coinciding points: the Matérn gradient there is zero, not NaN
    k.sum().backward()
    assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match="kernel"):
        correlation(a, a, ell, "cubic")


def test_fit_interpolates_and_predicts_a_smooth_function():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(80, 2, generator=gen, dtype=torch.float64) - 0.5

    def f(v):
        return torch.stack([torch.sin(3 * v[:, 0]) + v[:, 1] ** 2, v[:, 0] * v[:, 1]], 1)

    gp, hist = fit_gaussian_process(x, f(x), (0, 1, 2), steps=200, generator=gen)
    assert hist["groups"] == [0, 1, 2] and len(hist["lengthscales"]) == 2
    with torch.no_grad():
        np.testing.assert_allclose(gp(x.float()).numpy(), f(x).numpy(), atol=1e-3)
        xt = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 0.8 - 0.4
        err = (gp(xt.float()).double() - f(xt)).abs()
    spread = f(xt).std(0)
    assert torch.all(err.max(0).values < 0.02 * spread)


def test_fit_subset_and_validation():
    x = torch.rand(50, 2, dtype=torch.float64)
    y = torch.randn(50, 3, dtype=torch.float64)
    gp, _ = fit_gaussian_process(x, y, (0, 3), steps=5, max_fit_rows=20)
    assert gp.inputs.shape == (50, 2) and gp.weights.shape == (50, 3)   # conditioned on all
    with pytest.raises(ValueError, match="groups"):
        fit_gaussian_process(x, y, (0, 2), steps=1)
    with pytest.raises(ValueError, match="rows"):
        fit_gaussian_process(x, y[:10], (0, 3), steps=1)
    with pytest.raises(ValueError, match="kernel"):
        GaussianProcessCoefficients(2, 5, 3, (0, 3), "cubic")


def test_gp_emulator_is_accurate_on_unseen_labels(gp_emulator):
    emu, hist = gp_emulator
    assert emu.architecture["kind"] == "gp" and "hidden" not in emu.architecture
    assert emu.architecture["gp"] == {"n_train": hist["n_train"], "groups": [0, 4, 16],
                                      "kernel": "matern52"}
    assert hist["n_train"] + hist["n_validation"] == 300
    test = np.clip(labels_of(200, 2), emu.label_ranges[:, 0], emu.label_ranges[:, 1])
    ref = line_flux(test)
    res = np.abs(emu(test) - ref)
    baseline = np.abs(ref - ref.mean(0))
    assert np.percentile(res, 99) < 2e-3
    assert np.percentile(res, 99) < 0.02 * np.percentile(baseline, 99)
    assert hist["validation_p99_abs"] < 2e-3


def test_gp_emulator_round_trip_trim_and_gradient(gp_emulator, tmp_path):
    emu, hist = gp_emulator
    save_emulator(tmp_path, emu, {"history": hist})
    back = load_emulator(tmp_path)
    assert back.architecture == emu.architecture and back.gp.weights.dtype == torch.float64
    lab = np.clip(labels_of(5, 3), emu.label_ranges[:, 0], emu.label_ranges[:, 1])
    np.testing.assert_array_equal(back(lab), emu(lab))
    # a file whose n_train disagrees with its tensors is refused
    meta = tmp_path / "metadata.json"
    doc = json.loads(meta.read_text())
    doc["architecture"]["gp"]["n_train"] += 1
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="inputs"):
        load_emulator(tmp_path)
    # restricted to part of the grid, the same flux there
    part = trim_emulator(emu, WavelengthGrid((GridSegment("A", 5003.0, 5006.0, 0.05),)))
    np.testing.assert_array_equal(part(lab), emu(lab)[:, 60:121])
    # differentiable in the labels, also at a training star
    x = torch.tensor(lab, requires_grad=True)
    emu(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gp_configuration_errors():
    with pytest.raises(ValueError, match="gp_groups"):
        EmulatorConfig(kind="gp", gp_groups=(16, 8))
    with pytest.raises(ValueError, match="gp_kernel"):
        EmulatorConfig(kind="gp", gp_kernel="cubic")
    with pytest.raises(ValueError, match="kind"):
        EmulatorConfig(kind="kriging")
    with pytest.raises(ValueError, match="'gp' argument"):
        SpectrumEmulator(NAMES, [[4000, 7000], [1, 5], [-2, 0.5]], GRID, kind="gp")
    with pytest.raises(ValueError, match="n_train"):
        SpectrumEmulator(NAMES, [[4000, 7000], [1, 5], [-2, 0.5]], GRID, kind="gp",
                         n_components=4, gp={"groups": [0, 4], "kernel": "rbf"})
    lab = labels_of(30, 4)
    with pytest.raises(ValueError, match="checkpoint"):
        train_emulator(lab, line_flux(lab), NAMES, GRID, EmulatorConfig(kind="gp"),
                       checkpoint="x.safetensors", log=None)


def test_windows_get_components_and_length_scales_of_their_own():
    lab = labels_of(120, 5)
    cfg = EmulatorConfig(kind="gp", n_components=8, gp_groups=(4,), gp_steps=60,
                         gp_windows=((5003.5, 5004.5),), gp_window_components=3)
    emu, hist = train_emulator(lab, line_flux(lab), NAMES, GRID, cfg, log=None)
    assert emu.architecture["gp"]["groups"] == [0, 4, 8, 11]
    assert hist["gp"]["windows"] == [{"window": [5003.5, 5004.5], "pixels": 21,
                                      "components": 3}]
    wave = GRID.wavelength.value
    inside = (wave >= 5003.5) & (wave <= 5004.5)
    basis = emu.basis.numpy()
    assert not basis[:8, inside].any() and not basis[8:, ~inside].any()
    np.testing.assert_allclose(basis @ basis.T, np.eye(11), atol=1e-5)
    test = np.clip(labels_of(50, 6), emu.label_ranges[:, 0], emu.label_ranges[:, 1])
    assert np.percentile(np.abs(emu(test) - line_flux(test)), 99) < 5e-3
    with pytest.raises(ValueError, match="holds no pixel"):
        train_emulator(lab, line_flux(lab), NAMES, GRID,
                       EmulatorConfig(kind="gp", gp_windows=((4000.0, 4001.0),)), log=None)
    with pytest.raises(ValueError, match="overlaps"):
        train_emulator(lab, line_flux(lab), NAMES, GRID,
                       EmulatorConfig(kind="gp", gp_windows=((5003.0, 5004.0), (5003.5, 5005.0))),
                       log=None)
    with pytest.raises(ValueError, match="stop > start"):
        EmulatorConfig(kind="gp", gp_windows=((5004.0, 5003.0),))
