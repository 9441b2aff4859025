"""Tests of the spectrum emulator on an analytic problem: Gaussian absorption lines whose depths
and widths depend smoothly on three labels."""

import json

import numpy as np
import pytest
import torch

from specutils_cinn.emulator import (
    EmulatorConfig,
    SpectrumEmulator,
    a_li_from_li_fe,
    emulate_spectra,
    load_emulator,
    residual_statistics,
    save_emulator,
    train_emulator,
)
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

NAMES = ["teff", "logg", "fe_h"]
RANGES = np.array([[4000.0, 7000.0], [1.0, 5.0], [-2.0, 0.5]])
GRID = WavelengthGrid(
    (GridSegment("A", 5000.0, 5030.0, 0.05), GridSegment("B", 6000.0, 6030.0, 0.05))
)
LINES = np.array([5005.0, 5012.0, 5020.0, 5026.0, 6004.0, 6011.0, 6019.0, 6025.0])


def analytic_flux(labels: np.ndarray) -> np.ndarray:
    """Product of Gaussian lines; depth grows with [Fe/H] and falls with Teff, width with logg."""
    t = (labels[:, 0:1] - 5500.0) / 1500.0
    g = (labels[:, 1:2] - 3.0) / 2.0
    z = labels[:, 2:3]
    w = GRID.wavelength.value[None, :]
    out = np.ones((labels.shape[0], w.shape[1]))
    for i, lam in enumerate(LINES):
        strength = 0.5 + 0.1 * (i % 3)
        depth = strength / (1.0 + np.exp(-(1.5 * z + 0.8 - 1.2 * t + 0.2 * i * t)))
        sigma = 0.15 + 0.05 * (1.0 - g) + 0.02 * z
        out *= 1.0 - depth * np.exp(-0.5 * ((w - lam) / sigma) ** 2)
    # a broad band in each segment, so that no pixel is pure continuum
    for center in (5015.0, 6015.0):
        out *= 1.0 - 0.03 * (1.0 - t) * np.exp(-0.5 * ((w - center) / 10.0) ** 2)
    return out.astype(np.float32)


def draw(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return RANGES[:, 0] + (RANGES[:, 1] - RANGES[:, 0]) * rng.uniform(size=(n, 3))


#: The tests of the emulator trained here (1500 steps, about 2 s): in the full run only.
_TRAINS = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    labels = draw(600, 1)
    # the six extreme-Teff rows are "held out": they must not widen the label ranges
    labels[:6, 0] = 7500.0
    holdout = np.zeros(600, bool)
    holdout[:6] = True
    cfg = EmulatorConfig(n_components=24, hidden=(64, 64), steps=1500, batch_size=128, threads=1,
                         learning_rate=5e-3, warmup_steps=50, eval_every=250, patience=100,
                         seed=0)
    emu, hist = train_emulator(labels, analytic_flux(labels), NAMES, GRID, cfg,
                               star_id=np.arange(600), holdout=holdout, device="cpu", log=None)
    return emu, hist


@_TRAINS
def test_fits_analytic_problem(trained):
    emu, hist = trained
    test = np.clip(draw(200, 2), emu.label_ranges[:, 0], emu.label_ranges[:, 1])
    ref = analytic_flux(test)
    stats = residual_statistics(emu, test, ref, clamp=False)
    baseline = np.abs(ref - ref.mean(0)).ravel()
    # stated accuracy on unseen labels: median <= 1e-3, p99 <= 1e-2 of the continuum, and far
    # better than predicting the mean spectrum
    assert stats["all"]["median_abs"] < 1e-3
    assert stats["all"]["p99_abs"] < 1e-2
    assert stats["all"]["p99_abs"] < 0.1 * np.percentile(baseline, 99)
    assert stats["all"]["median_abs"] < 0.1 * np.median(baseline)
    assert set(stats["segments"]) == {"A", "B"}
    assert hist["n_train"] + hist["n_validation"] == 594
    assert hist["best_step"]


@_TRAINS
def test_holdout_rows_never_used(trained):
    emu, _ = trained
    assert emu.label_ranges[0, 1] < 7000.0 + 1e-9
    with pytest.raises(ValueError, match="teff"):
        emu(np.array([[7500.0, 3.0, 0.0]]))


@_TRAINS
def test_range_checking_and_clamp(trained):
    emu, _ = trained
    lo, hi = emu.label_ranges[:, 0], emu.label_ranges[:, 1]
    inside = 0.5 * (lo + hi)
    bad = inside.copy()
    bad[2] = hi[2] + 0.5
    with pytest.raises(ValueError, match="fe_h.*outside"):
        emu(bad[None])
    with pytest.raises(ValueError, match="finite"):
        emu(np.array([[np.nan, 3.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        emu(np.zeros((2, 4)))
    edge = inside.copy()
    edge[2] = hi[2]
    np.testing.assert_array_equal(emu(bad[None], clamp=True), emu(edge[None]))
    one = emu(inside)
    assert one.shape == (GRID.npix,) and one.dtype == np.float32


@_TRAINS
def test_numpy_and_tensor_batches_agree(trained):
    emu, _ = trained
    lab = draw(10, 3)
    lab = np.clip(lab, emu.label_ranges[:, 0], emu.label_ranges[:, 1])
    a = emu(lab)
    b = emu(torch.from_numpy(lab), batch_size=3)
    assert isinstance(b, torch.Tensor)
    np.testing.assert_allclose(a, b.detach().numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("storage", ["float32", "float16"])
@_TRAINS
def test_save_load_round_trip(trained, tmp_path, storage):
    emu, hist = trained
    if storage == "float16":
        from specutils_cinn.emulator.training import _restore_dtype

        emu = _restore_dtype(emu, "float16")
    save_emulator(tmp_path, emu, {"instrument_setup": "test", "history": hist})
    back = load_emulator(tmp_path)
    assert back.architecture == emu.architecture
    assert back.basis.dtype == getattr(torch, storage)
    assert back.metadata["instrument_setup"] == "test"
    assert len(back.metadata["weights_sha256"]) == 64
    lab = np.clip(draw(5, 4), emu.label_ranges[:, 0], emu.label_ranges[:, 1])
    with torch.no_grad():
        np.testing.assert_array_equal(back(lab), emu(lab))
    for k, v in emu.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


@_TRAINS
def test_tampered_weights_rejected(trained, tmp_path):
    emu, _ = trained
    save_emulator(tmp_path, emu)
    w = tmp_path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_emulator(tmp_path)


@_TRAINS
def test_bad_metadata_rejected(trained, tmp_path):
    emu, _ = trained
    save_emulator(tmp_path, emu)
    meta = tmp_path / "metadata.json"
    doc = json.loads(meta.read_text())
    doc["format"] = "something-else"
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="emulator"):
        load_emulator(tmp_path)
    with pytest.raises(ValueError, match="JSON"):
        save_emulator(tmp_path / "x", emu, {"bad": object()})
    with pytest.raises(FileNotFoundError):
        load_emulator(tmp_path / "missing")


@_TRAINS
def test_devices(trained, tmp_path):
    emu, _ = trained
    save_emulator(tmp_path, emu)
    with pytest.raises(ValueError, match="device"):
        load_emulator(tmp_path, device="tpu")
    lab = torch.tensor([[5500.0, 3.0, -0.5]], dtype=torch.float64)
    cpu = load_emulator(tmp_path, device="cpu")(lab).detach()
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    gpu_emu = load_emulator(tmp_path, device="cuda")
    out = gpu_emu(lab.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu().detach(), cpu, rtol=0, atol=1e-5)


@_TRAINS
def test_emulate_spectra_rotation(trained):
    emu, _ = trained
    lab = np.array([[5000.0, 4.0, 0.0], [5000.0, 4.0, 0.0]])
    flat = emulate_spectra(emu, lab)
    rot = emulate_spectra(emu, lab, vsini=[0.0, 40.0])
    np.testing.assert_array_equal(rot[0], flat[0])
    seg = GRID.segment_slices[0]
    step = GRID.segments[0].step
    # isolated lines 5012 and 5020 A: equivalent width conserved, line made shallower
    w = GRID.wavelength.value[seg]
    win = (w > 5008.0) & (w < 5016.5)
    ew0 = np.sum(1 - flat[0, seg][win]) * step
    ew1 = np.sum(1 - rot[1, seg][win]) * step
    assert ew0 > 0.05
    assert abs(ew1 - ew0) < 0.02 * ew0
    assert rot[1, seg][win].min() > flat[0, seg][win].min() + 0.05
    t = emulate_spectra(emu, torch.from_numpy(lab), vsini=40.0)
    np.testing.assert_allclose(t[1].numpy(), rot[1], atol=1e-6)


def test_rotation_of_binned_pixels_matches_fine_rotation():
    """Rotating the pixel samples (spline upsampling) ~ rotating a finely sampled spectrum."""
    from specutils_cinn.emulator.spectra import _rotate_binned
    from specutils_cinn.instruments import rotational_broaden

    fine = np.linspace(5000.0, 5030.0, 6001)
    coarse = GRID.segments[0].centers

    def flux_on(w):
        out = np.ones((1, w.size))
        for lam in LINES[:4]:
            out *= 1.0 - 0.6 * np.exp(-0.5 * ((w - lam) / 0.12) ** 2)
        return out

    ref = np.interp(coarse, fine, rotational_broaden(fine, flux_on(fine), 15.0)[0])
    got = _rotate_binned(coarse, flux_on(coarse).astype(np.float32), np.array([15.0]), 0.05,
                         0.6, 8.0)[0]
    inner = (coarse > 5001.0) & (coarse < 5029.0)
    assert np.abs(got - ref)[inner].max() < 2e-3
    assert np.abs(flux_on(coarse)[0] - ref)[inner].max() > 0.05  # rotation did something


def test_direct_kind_and_config_validation():
    labels = draw(80, 5)
    cfg = EmulatorConfig(kind="direct", n_components=16, hidden=(32,), steps=60, eval_every=20,
                         storage_dtype="float16", threads=1)
    threads = torch.get_num_threads()
    emu, hist = train_emulator(labels, analytic_flux(labels), NAMES, GRID, cfg, log=None)
    assert torch.get_num_threads() == threads  # the caller's setting is restored
    assert emu.basis.dtype == torch.float16 and emu.architecture["kind"] == "direct"
    assert hist["val_mse"][-1] < hist["val_mse"][0] * 1.5
    with pytest.raises(ValueError, match="unknown emulator option"):
        EmulatorConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="kind"):
        EmulatorConfig(kind="kriging")
    with pytest.raises(KeyError):
        SpectrumEmulator(["nonsense"], [[0, 1]], GRID)
    with pytest.raises(ValueError, match="pixels"):
        train_emulator(labels, analytic_flux(labels)[:, :10], NAMES, GRID, cfg, log=None)


def test_a_li_from_li_fe():
    assert a_li_from_li_fe(0.5, -1.0) == pytest.approx(0.55)
