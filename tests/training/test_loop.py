"""The training loop: the validation split, a cINN that recovers an exact posterior, TOML runs."""

import json

import numpy as np
import pytest
import torch
from linear_gaussian import (
    MODEL_DIR,
    MODEL_NAME,
    MODEL_VERSION,
    LinearGaussianProblem,
    recorded_recipe,
    train_test_model,
)

from specutils_cinn.model import CINNModel, ModelIntegrityError
from specutils_cinn.training import (
    TrainingConfig,
    save_training_set,
    train_from_config,
    train_model,
)


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
    # checkpoints and prefetching do not change the result and are not in the settings;
    # settings added since the model was made (segment_dropout, init_weights) are at the
    # defaults that draw and change nothing (feature_regression is not recorded at 0)
    recorded, recipe = md.training["config"], recorded_recipe(prob)
    assert recorded == {k: v for k, v in recipe.items() if k in recorded}
    added = {k: v for k, v in recipe.items() if k not in recorded}
    assert added == {"segment_dropout": 0.0, "init_weights": None}
    assert all(getattr(TrainingConfig(), k) == v for k, v in added.items())
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
    assert loaded.metadata.training["config"] == recorded_recipe(prob)
    _assert_exact_posterior_recovered(prob, loaded)


def write_config(folder, training: str) -> None:
    """A linear-Gaussian training set and a TOML run of it (``training``: the [training] lines)
    in ``folder`` (cfg.toml, data.npz; the model goes to out/)."""
    prob = LinearGaussianProblem()
    save_training_set(folder / "data.npz", prob.training_set(n=200))
    (folder / "cfg.toml").write_text(
        '[model]\nname = "lg-test"\nversion = "0.0.1"\noutput = "out"\n'
        '[data]\npath = "data.npz"\n'
        f"[architecture]\n{_toml(prob.architecture)}\n[training]\n{training}"
    )


def test_train_from_config(tmp_path):
    write_config(tmp_path, "steps = 3\neval_every = 1\nbatch_size = 8\nsnr_range = [100.0, 100.0]\n"
                 'photon_noise = false\ndevice = "cpu"\nthreads = 1\n')
    threads = torch.get_num_threads()
    out = train_from_config(tmp_path / "cfg.toml", log=None)
    assert torch.get_num_threads() == threads  # train_model restores the caller's setting
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


def test_the_british_spelling_stays_for_one_release():
    from specutils_cinn import training

    assert training.SELECTION_REALISATIONS == training.SELECTION_REALIZATIONS == 8


def test_init_weights_continues_a_model_with_new_line_windows(tmp_path):
    """A run that starts from another model's weights (``init_weights``): with a learning
    rate of 0 it returns that model's network exactly, the new line-window branch at zero;
    the metadata names the start; a model of other parameters is refused."""
    steps = "steps = 2\neval_every = 1\nbatch_size = 8\nsnr_range = [100.0, 100.0]\n"
    write_config(tmp_path, steps + 'device = "cpu"\n')
    base = CINNModel.load(train_from_config(tmp_path / "cfg.toml", log=None))
    text = (tmp_path / "cfg.toml").read_text()
    text = text.replace("[training]\n", '[training]\ninit_weights = "out"\nlearning_rate = 0.0\n')
    text = text.replace('output = "out"', 'output = "out2"').replace(
        "[architecture.conditioner]\n",
        "[architecture.conditioner]\nlines = [5003.0, 5010.2]\nline_half_width = 0.6\n")
    (tmp_path / "cfg2.toml").write_text(text)
    lines = []
    model = CINNModel.load(train_from_config(tmp_path / "cfg2.toml", log=lines.append))
    start = model.metadata.training["initialized_from"]
    assert start["weights_sha256"] == base.sha256 and start["version"] == "0.0.1"
    assert start["new_tensors"] == ["conditioner.line_net.1.bias", "conditioner.line_net.1.weight",
                                    "conditioner.line_net.3.bias", "conditioner.line_net.3.weight"]
    assert any("weights from lg-test 0.0.1" in line for line in lines)
    assert model.network.architecture["conditioner"]["line_pixels"] == [3, 10]
    new = model.network.state_dict()
    for k, v in base.network.state_dict().items():
        assert torch.equal(new[k], v), k
    other = LinearGaussianProblem(parameters=("teff", "fe_h"))
    save_training_set(tmp_path / "data.npz", other.training_set(n=200))
    with pytest.raises(ValueError, match=r"init_weights \(lg-test 0.0.1\) has the parameters"):
        train_from_config(tmp_path / "cfg2.toml", log=None)


def test_resolve_line_windows():
    from specutils_cinn.training import resolve_line_windows

    prob = LinearGaussianProblem()
    arch = prob.architecture
    assert resolve_line_windows(arch, prob.grid) == arch          # no windows: unchanged
    cond = {**arch["conditioner"], "lines": [5002.0], "line_half_width": 1.0}
    got = resolve_line_windows({**arch, "conditioner": cond}, prob.grid)
    assert got["conditioner"]["line_pixels"] == [1, 2, 3]
    assert "lines" not in got["conditioner"] and "line_half_width" not in got["conditioner"]
    assert cond["lines"] == [5002.0]                               # the input is not changed
    with pytest.raises(ValueError, match="line_half_width needs lines"):
        resolve_line_windows({**arch, "conditioner": {**arch["conditioner"],
                                                      "line_half_width": 1.0}}, prob.grid)
    with pytest.raises(ValueError, match="no pixel of the model grid"):
        resolve_line_windows({**arch, "conditioner": {**arch["conditioner"],
                                                      "lines": [9000.0]}}, prob.grid)


def test_line_standardize_is_set_from_the_validation_spectra_and_saved(tmp_path):
    """``line_standardize``: the line branch's inputs are centered and scaled per input with
    statistics of the fixed validation spectra, which are saved with the weights."""
    steps = "steps = 2\neval_every = 1\nbatch_size = 8\nsnr_range = [100.0, 100.0]\n"
    write_config(tmp_path, steps + 'device = "cpu"\n')
    text = (tmp_path / "cfg.toml").read_text().replace(
        "[architecture.conditioner]\n",
        "[architecture.conditioner]\nlines = [5003.0, 5010.2]\nline_half_width = 0.6\n"
        "line_standardize = true\n")
    (tmp_path / "cfg.toml").write_text(text)
    model = CINNModel.load(train_from_config(tmp_path / "cfg.toml", log=None))
    cond = model.network.conditioner
    assert model.network.architecture["conditioner"]["line_standardize"] is True
    center, scale = cond.line_center.numpy(), cond.line_scale.numpy()
    assert center.shape == scale.shape == (6,)  # 3 channels x 2 window pixels
    # flux - 1 at the window pixels (the first two inputs) is centered near 0 with a spread,
    # the log-sigma inputs near log(1 / S/N per pixel), the mask channel near 1
    assert np.all(np.abs(center[:2]) < 0.5) and np.all(scale[:2] > 1e-3)
    assert np.all(center[2:4] < -2) and np.allclose(center[4:], 1.0, atol=0.1)
    assert np.all(scale >= 1e-3)
    # the forward pass uses them: the branch sees standardized inputs
    x = torch.zeros(1, 3, cond.npix)
    x[:, 0] = 0.1
    feats = cond(x) - cond.net(x)
    z = (x.index_select(2, cond.line_index).flatten(1) - cond.line_center) / cond.line_scale
    torch.testing.assert_close(feats, cond.line_net(z))
    with pytest.raises(ValueError, match="line_standardize needs line_pixels"):
        type(cond)(npix=cond.npix, line_standardize=True)
