"""Training with a mask of poorly modeled pixels: masked in every spectrum, stored in the model."""

import numpy as np
import pytest
import torch
from linear_gaussian import LinearGaussianProblem
from test_loop import _toml

from specutils_cinn.flows.conditioning import encode_inputs
from specutils_cinn.inputs import PixelMask
from specutils_cinn.model import CINNModel
from specutils_cinn.training import TrainingConfig, augment_batch, save_training_set, train_model
from specutils_cinn.training import loop as training_loop

MASK = PixelMask([(5002.5, 5005.5), (5019.5, 5020.5)], {"method": "test"})


def test_augment_batch_masks_the_pixels_without_changing_the_other_draws():
    npix = 40
    flux = torch.ones(64, npix)
    pw = torch.ones(npix)
    seg = torch.zeros(npix, dtype=torch.long)
    cfg = TrainingConfig(masked_fraction=0.2, max_gaps=2, max_gap_fraction=0.1)
    masked = torch.zeros(npix, dtype=torch.bool)
    masked[[3, 4, 17]] = True
    a = augment_batch(flux, pw, seg, cfg, torch.Generator().manual_seed(2))
    b = augment_batch(flux, pw, seg, cfg, torch.Generator().manual_seed(2), masked)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not b[2][:, masked].any()
    assert torch.equal(a[2][:, ~masked], b[2][:, ~masked])
    assert a[2][:, masked].any()  # without the mask these pixels are mostly valid


def _capture_inputs(monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        x = encode_inputs(*args, **kwargs)
        seen.append(x.detach().clone())
        return x

    monkeypatch.setattr(training_loop, "encode_inputs", spy)
    return seen


def _train(prob, ts, mask, **kw):
    cfg = TrainingConfig(steps=3, eval_every=1, batch_size=16, snr_range=(100.0, 100.0),
                         photon_noise=False, device="cpu", threads=1, seed=4,
                         continuum_error=0.01)
    return train_model(ts, prob.architecture, cfg, name="lg-mask", version="0.0.1",
                       normalization={"kind": "pseudo-continuum", "degree": 1, "n_iter": 2},
                       pixel_mask=mask, log=None, **kw)


def test_a_masked_pixel_never_reaches_the_network(monkeypatch):
    prob = LinearGaussianProblem()
    on = MASK.on_grid(prob.grid)
    assert on.sum() == 4
    ts = prob.training_set(n=200)
    seen = _capture_inputs(monkeypatch)
    model, _ = _train(prob, ts, MASK, holdout=prob.training_set(n=20, seed=5))
    clean = list(seen)
    # training batches, validation and held-out sets all pass through encode_inputs
    assert len(clean) >= 3 + 2
    for x in clean:
        assert torch.all(x[:, 2, on] == 0)  # the validity channel
        assert torch.all(x[:, 0, on] == 0)  # flux: the fill value, never the data
        assert x[:, 2, ~on].any()
    assert model.metadata.pixel_mask == MASK
    # garbage in the masked pixels changes no network input at all (nor the continuum fit)
    seen.clear()
    ts.flux[:, on] = 25.0
    _train(prob, ts, MASK, holdout=prob.training_set(n=20, seed=5))
    assert len(seen) == len(clean)
    for x, y in zip(seen, clean, strict=True):
        assert torch.equal(x, y)


def test_without_a_mask_the_pixels_reach_the_network(monkeypatch):
    prob = LinearGaussianProblem()
    on = MASK.on_grid(prob.grid)
    seen = _capture_inputs(monkeypatch)
    model, _ = _train(prob, prob.training_set(n=200), None)
    assert model.metadata.pixel_mask is None
    assert all(x[:, 2, on].any() for x in seen)


def test_train_from_config_reads_the_mask_relative_to_the_file(tmp_path):
    prob = LinearGaussianProblem()
    save_training_set(tmp_path / "data.npz", prob.training_set(n=100))
    (tmp_path / "masks").mkdir()
    MASK.write(tmp_path / "masks" / "mask.ecsv")
    config = (
        '[model]\nname = "lg-test"\nversion = "0.0.1"\noutput = "out"\n'
        'pixel_mask = "masks/mask.ecsv"\n'
        '[data]\npath = "data.npz"\n'
        f"[architecture]\n{_toml(prob.architecture)}\n"
        "[training]\nsteps = 2\neval_every = 1\nbatch_size = 8\nsnr_range = [100.0, 100.0]\n"
        'photon_noise = false\ndevice = "cpu"\nthreads = 1\n'
    )
    (tmp_path / "cfg.toml").write_text(config)
    out = training_loop.train_from_config(tmp_path / "cfg.toml", log=None)
    model = CINNModel.load(out)
    assert model.metadata.pixel_mask == MASK
    assert np.array_equal(model.metadata.masked_pixels, MASK.on_grid(prob.grid))
    (tmp_path / "bad.toml").write_text(config.replace('"masks/mask.ecsv"', "3"))
    with pytest.raises(ValueError, match="pixel_mask must be a file name"):
        training_loop.train_from_config(tmp_path / "bad.toml", log=None)
    (tmp_path / "missing.toml").write_text(config.replace("masks/mask", "masks/none"))
    with pytest.raises(FileNotFoundError, match="none.ecsv"):
        training_loop.train_from_config(tmp_path / "missing.toml", log=None)
