"""Training: augmentation, configuration, and a cINN that recovers an exact posterior."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from linear_gaussian import (
    MODEL_DIR,
    MODEL_NAME,
    MODEL_VERSION,
    LinearGaussianProblem,
    train_test_model,
    training_config,
)

from specutils_cinn.grid import GridSegment, WavelengthGrid
from specutils_cinn.model import CINNModel, ModelIntegrityError
from specutils_cinn.training import (
    TrainingConfig,
    TrainingSet,
    augment_batch,
    load_training_set,
    save_training_set,
    train_from_config,
    train_model,
)


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown training option"):
        TrainingConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="snr_range"):
        TrainingConfig(snr_range=(50.0, 10.0))
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainingConfig(validation_fraction=1.5)


def _grid(npix=2000, step=0.25):
    return WavelengthGrid((GridSegment("A", 5000.0, 5000.0 + (npix - 1) * step, step),))


@pytest.mark.parametrize("photon_noise", [False, True])
def test_augment_noise_matches_snr_per_angstrom(photon_noise):
    grid = _grid()
    flux = torch.ones(400, grid.npix)
    cfg = TrainingConfig(snr_range=(50.0, 50.0), masked_fraction=0.0, max_gaps=0,
                         photon_noise=photon_noise)
    gen = torch.Generator().manual_seed(0)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    seg = torch.zeros(grid.npix, dtype=torch.long)
    noisy, sigma, valid = augment_batch(flux, pw, seg, cfg, gen)
    # S/N 50 per Angstrom at 0.25 A pixels is S/N 25 per pixel.
    assert valid.all()
    assert float((noisy - 1).std()) == pytest.approx(1 / 25, rel=0.02)
    assert float(sigma.median()) == pytest.approx(1 / 25, rel=0.02)


def test_augment_sigma_does_not_leak_noise_free_flux():
    # With photon noise the reported sigma comes from the noisy flux: two spectra with the
    # same noisy flux but different noise-free flux cannot be told apart from sigma.
    grid = _grid(npix=50)
    flux = torch.full((2000, grid.npix), 0.5)
    cfg = TrainingConfig(snr_range=(100.0, 100.0), masked_fraction=0.0, max_gaps=0)
    gen = torch.Generator().manual_seed(1)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    noisy, sigma, _ = augment_batch(flux, pw, torch.zeros(grid.npix, dtype=torch.long), cfg, gen)
    snr_pix = 100.0 * 0.5
    assert torch.allclose(sigma, torch.sqrt(noisy) / snr_pix)


def test_augment_masks_and_gaps():
    grid = _grid()
    cfg = TrainingConfig(masked_fraction=0.1, max_gaps=2, max_gap_fraction=0.05)
    gen = torch.Generator().manual_seed(2)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    _, _, valid = augment_batch(torch.ones(500, grid.npix), pw,
                                torch.zeros(grid.npix, dtype=torch.long), cfg, gen)
    lost = 1 - valid.float().mean(dim=1)
    assert 0 < float(lost.mean()) < 0.1 + 2 * 0.05
    assert float(lost.max()) <= 0.1 * 1.2 + 2 * 0.05 + 0.01
    assert float(lost.min()) < 0.02  # some spectra are nearly untouched


def test_training_set_round_trip_and_validation(tmp_path):
    grid = _grid(npix=10)
    ts = TrainingSet(np.ones((4, 10), np.float32), np.zeros((4, 2)), ["teff", "logg"], grid,
                     20000.0, {"source": "test"}, groups=np.array([0, 0, 1, 1]))
    save_training_set(tmp_path / "ts.npz", ts)
    back = load_training_set(tmp_path / "ts.npz", ["logg"])
    assert back.parameters == ["logg"] and back.labels.shape == (4, 1)
    assert back.grid == grid and back.provenance == {"source": "test"}
    np.testing.assert_array_equal(back.groups, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="no labels"):
        load_training_set(tmp_path / "ts.npz", ["vsini"])
    with pytest.raises(ValueError, match="shape"):
        TrainingSet(np.ones((4, 9), np.float32), np.zeros((4, 2)), ["teff", "logg"], grid, 1.0)
    with pytest.raises(ValueError, match="finite"):
        TrainingSet(np.full((4, 10), np.nan, np.float32), np.zeros((4, 2)), ["teff", "logg"],
                    grid, 1.0)


def test_validation_split_keeps_groups_together():
    prob = LinearGaussianProblem()
    ts = prob.training_set(n=300)
    ts.groups = np.repeat(np.arange(100), 3)
    model, _ = train_model(ts, prob.architecture, TrainingConfig(steps=2, eval_every=1,
                           batch_size=16, snr_range=(100.0, 100.0), device="cpu"),
                           name="split-test", version="0.0.1", log=None)
    val_groups = set(model.metadata.training["validation_groups"])
    assert len(val_groups) == 10
    n_val = model.metadata.training["n_validation"]
    assert n_val == 30


def _assert_exact_posterior_recovered(prob, model):
    """The cINN's draws match the exact Gaussian posterior of the linear-Gaussian problem."""
    y, x_true = prob.observations(n=200, seed=11)
    mean, cov = prob.exact_posterior(y)
    net = model.network
    md = model.metadata
    inputs = prob.encode(y)
    gen = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        draws = net.sample(net.condition(inputs), 4000, generator=gen)
    draws = md.destandardize(draws).numpy()
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    # Medians within 0.15 posterior sigma (RMS over stars); spreads within 10 %.
    z = (np.median(draws, axis=1) - mean) / sd
    assert np.sqrt(np.mean(z**2)) < 0.15
    ratio = np.std(draws, axis=1) / sd
    assert abs(np.median(ratio) - 1) < 0.10
    # The 16/84 % quantiles match the exact ones within 0.2 posterior sigma (RMS).
    for q, k in ((0.16, -0.9945), (0.84, 0.9945)):
        err = (np.quantile(draws, q, axis=1) - (mean + k * sd)) / sd
        assert np.sqrt(np.mean(err**2)) < 0.2
    # Calibration against the true parameters: ~68 % inside the central 68 % interval.
    lo, hi = np.quantile(draws, [0.16, 0.84], axis=1)
    inside = np.mean((x_true > lo) & (x_true < hi))
    assert 0.58 < inside < 0.78


def test_linear_gaussian_posterior_is_recovered(linear_gaussian_model):
    """The committed test model (trained by train_model) matches the exact Gaussian posterior."""
    prob, model = linear_gaussian_model
    _assert_exact_posterior_recovered(prob, model)


def test_committed_test_model_is_intact_and_follows_the_recipe():
    """tests/data/linear-gaussian-model: the files scripts/make_test_model.py wrote, unchanged,
    loaded by the safe loader, and trained with the recipe of tests/linear_gaussian.py (if
    this fails after changing the recipe: run ``python scripts/make_test_model.py``)."""
    hashes = json.loads((MODEL_DIR / "sha256.json").read_text())
    files = sorted(p.name for p in MODEL_DIR.iterdir())
    assert files == ["metadata.json", "sha256.json", "weights.safetensors"]
    assert sum((MODEL_DIR / f).stat().st_size for f in files) < 300_000  # small test data
    assert (MODEL_DIR / "metadata.json").read_bytes().startswith(b"{")  # JSON, no pickle
    model = CINNModel.load(MODEL_DIR, expected_sha256={"metadata": hashes["metadata"],
                                                       "weights": hashes["weights"]})
    assert model.digest == hashes["digest"] and model.sha256 == hashes["weights"]
    md = model.metadata
    prob = LinearGaussianProblem()
    assert (md.name, md.version) == (MODEL_NAME, MODEL_VERSION)
    assert [p.name for p in md.parameters] == list(prob.parameters)
    assert md.architecture == {**prob.architecture, "n_params": 2, "npix": prob.npix}
    assert md.grid == prob.grid
    assert md.normalization.to_dict() == {"kind": "continuum"}
    assert md.training["config"] == json.loads(json.dumps(asdict(training_config(prob))))
    assert md.training["data"] == prob.training_set(n=1).provenance
    assert md.training["n_train"] + md.training["n_validation"] == 8000
    # a changed weights file is refused before anything is parsed
    with pytest.raises(ModelIntegrityError, match="weights"):
        CINNModel.load(MODEL_DIR, expected_sha256={"metadata": hashes["metadata"],
                                                   "weights": "0" * 64})


@pytest.mark.slow
def test_training_recovers_the_exact_posterior_end_to_end(tmp_path):
    """train_model on the test recipe, save, load: the exact posterior (about 25 s)."""
    prob = LinearGaussianProblem()
    model = train_test_model(prob)
    model.save(tmp_path)
    loaded = CINNModel.load(tmp_path)
    assert loaded.metadata.training["config"] == json.loads(json.dumps(asdict(
        training_config(prob))))
    _assert_exact_posterior_recovered(prob, loaded)


def test_train_from_config(tmp_path):
    prob = LinearGaussianProblem()
    save_training_set(tmp_path / "data.npz", prob.training_set(n=200))
    (tmp_path / "cfg.toml").write_text(
        '[model]\nname = "lg-test"\nversion = "0.0.1"\noutput = "out"\n'
        '[data]\npath = "data.npz"\n'
        f"[architecture]\n{_toml(prob.architecture)}\n"
        "[training]\nsteps = 3\neval_every = 1\nbatch_size = 8\nsnr_range = [100.0, 100.0]\n"
        'photon_noise = false\ndevice = "cpu"\n'
    )
    out = train_from_config(tmp_path / "cfg.toml", log=None)
    model = CINNModel.load(out)
    assert model.metadata.full_name == "lg-test-v0.0.1"
    assert model.metadata.training["config"]["steps"] == 3
    (tmp_path / "bad.toml").write_text("[model]\n")
    with pytest.raises(ValueError, match=r"missing \[data\]"):
        train_from_config(tmp_path / "bad.toml")


def _toml(arch):
    lines = []
    for k, v in arch.items():
        if isinstance(v, dict):
            continue
        lines.append(f"{k} = {json.dumps(v)}")
    cond = arch["conditioner"]
    lines.append("[architecture.conditioner]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in cond.items()]
    return "\n".join(lines)


def test_renormalize_batch_applies_the_model_convention():
    from specutils_cinn.training import renormalize_batch

    grid = _grid(npix=400)
    x = torch.linspace(-1, 1, grid.npix)
    flux = (2.0 + 0.5 * x)[None, :].repeat(8, 1)  # a sloped, unnormalised continuum
    sigma = torch.full_like(flux, 0.01)
    valid = torch.ones_like(flux, dtype=torch.bool)
    same = renormalize_batch(flux, sigma, valid, grid, {"kind": "continuum"})
    assert same[0] is flux
    f, s, v = renormalize_batch(flux, sigma, valid, grid,
                                {"kind": "pseudo-continuum", "degree": 3, "n_iter": 5})
    assert v.all()
    torch.testing.assert_close(f, torch.ones_like(f), atol=1e-6, rtol=0)
    torch.testing.assert_close(s, sigma / flux, atol=1e-7, rtol=1e-5)
