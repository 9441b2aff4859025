"""The emulator simulator: the label prior, simulated spectra, training on them."""

import json
import math

import numpy as np
import pytest
import torch

from specutils_cinn.emulator import SpectrumEmulator, save_emulator
from specutils_cinn.model import CINNModel
from specutils_cinn.synthesis.design import KielRegion
from specutils_cinn.training import (
    EmulatorSimulator,
    LabelPrior,
    TrainingConfig,
    TrainingSet,
    save_training_set,
    train_from_config,
    train_model,
)
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

R = 20000.0


def test_prior_draws_respect_region_and_ranges():
    region = KielRegion()
    prior = LabelPrior(region, {"fe_h": (-2.0, 0.5), "a_li": (0.0, 3.0)}, logg_range=(1.5, 4.7),
                       vsini_range=(0.0, 25.0))
    gen = torch.Generator().manual_seed(0)
    lab = {k: v.numpy() for k, v in prior.sample(20000, gen).items()}
    assert region.contains(lab["teff"], lab["logg"]).all()
    assert lab["logg"].min() >= 1.5 and lab["logg"].max() <= 4.7
    assert lab["vsini"].min() >= 0 and lab["vsini"].max() <= 25
    assert lab["fe_h"].min() >= -2.0 and lab["fe_h"].max() <= 0.5
    np.testing.assert_allclose(lab["li_fe"], lab["a_li"] - 1.05 - lab["fe_h"])
    ranges = prior.parameter_ranges()
    assert ranges["li_fe"] == pytest.approx((0.0 - 1.05 - 0.5, 3.0 - 1.05 + 2.0))
    # uniform in area: the fraction below 5000 K matches the area fraction of the region
    t = np.linspace(4000, 7000, 30001)
    height = np.clip(np.minimum(region.logg_upper(t), 4.7) - np.maximum(region.logg_lower(t), 1.5),
                     0, None)
    frac = height[t < 5000].sum() / height.sum()
    assert np.mean(lab["teff"] < 5000) == pytest.approx(frac, abs=0.015)
    again = prior.sample(20000, torch.Generator().manual_seed(0))
    assert np.array_equal(again["teff"].numpy(), lab["teff"])


# --------------------------------------------------------------------------------------------
# a small analytic emulator: flux = 1 - sum_k (0.3 + 0.5 s_k) line_k, s_k the scaled label
# --------------------------------------------------------------------------------------------
EMU_LABELS = ["teff", "logg", "fe_h", "mg_fe"]
EMU_RANGES = [[4500.0, 6500.0], [2.0, 4.5], [-1.5, 0.3], [-0.2, 0.5]]
PARAMS = ["teff", "logg", "fe_h", "vsini", "mg_fe"]


def _emu_grid():
    return WavelengthGrid((GridSegment("A", 5000.0, 5029.9, 0.1),
                           GridSegment("B", 6000.0, 6029.9, 0.1)))


def tiny_emulator():
    grid = _emu_grid()
    emu = SpectrumEmulator(EMU_LABELS, EMU_RANGES, grid, n_components=4, hidden=())
    lam = grid.wavelength.value
    rng = np.random.default_rng(4)
    lines = np.zeros((4, grid.npix))
    for k in range(4):
        for c in rng.uniform([5001, 6001], [5029, 6029], size=(3, 2)).ravel():
            sig = c / R / 2.3548
            lines[k] += np.exp(-0.5 * ((lam - c) / sig) ** 2)
    with torch.no_grad():
        emu.mlp[0].weight.copy_(torch.eye(4))
        emu.mlp[0].bias.zero_()
        emu.basis.copy_(torch.as_tensor(-0.5 * lines, dtype=torch.float32))
        emu.flux_mean.copy_(torch.as_tensor(1.0 - 0.3 * lines.sum(0), dtype=torch.float32))
    emu.metadata = {"name": "tiny-analytic", "resolving_power": {"A": R, "B": R},
                    "weights_sha256": "0" * 64}
    return emu.eval()


def _prior(emu, vsini=(0.0, 25.0)):
    region = KielRegion((4500.0, 6500.0), ((4500.0, 2.0), (6500.0, 3.0)),
                        ((4500.0, 4.5), (6500.0, 4.5)))
    return LabelPrior.from_emulator(emu, region, vsini)


def test_simulator_without_rotation_is_the_emulator():
    emu = tiny_emulator()
    sim = EmulatorSimulator(emu, PARAMS, _prior(emu, (0.0, 0.0)), rv_sigma=0.0)
    flux, labels = sim.sample(32, torch.Generator().manual_seed(1))
    assert flux.shape == (32, emu.grid.npix) and labels.shape == (32, len(PARAMS))
    with torch.no_grad():
        direct = emu(labels[:, [0, 1, 2, 4]])
    assert torch.equal(flux, direct)


def test_simulator_sample_and_crop():
    emu = tiny_emulator()
    sim = EmulatorSimulator(emu, PARAMS, _prior(emu), segments=["B"])
    assert [s.name for s in sim.grid.segments] == ["B"] and sim.resolving_power == {"B": R}
    flux, labels = sim.sample(16, torch.Generator().manual_seed(2))
    assert flux.shape == (16, sim.grid.npix) and flux.dtype == torch.float32
    ranges = sim.parameter_ranges
    for j, p in enumerate(PARAMS):
        assert labels[:, j].min() >= ranges[p][0] and labels[:, j].max() <= ranges[p][1]
    with pytest.raises(ValueError, match="training range"):
        EmulatorSimulator(emu, PARAMS, LabelPrior(
            KielRegion((4000.0, 6500.0), ((4000.0, 2.0), (6500.0, 3.0)),
                       ((4000.0, 4.5), (6500.0, 4.5))),
            {"fe_h": (-1.5, 0.3), "mg_fe": (-0.2, 0.5)}))
    with pytest.raises(ValueError, match="does not draw"):
        EmulatorSimulator(emu, ["teff", "ca_fe"], _prior(emu))


def _arch():
    return {"conditioner": {"kind": "mlp", "channels": [8], "features": 32, "pool": 4,
                            "hidden": 64},
            "n_blocks": 4, "subnet_hidden": 64, "subnet_layers": 1, "clamp": 2.0,
            "permutation_seed": 0}


@pytest.mark.slow  # trains a cINN on the simulator (about 15 s)
def test_training_on_the_simulator_beats_the_prior():
    # The cINN leaves its initial plateau after some hundred steps; how fast depends on float
    # summation order, hence one thread (1000 steps: about 40 s on one core)
    emu = tiny_emulator()
    sim = EmulatorSimulator(emu, PARAMS, _prior(emu))
    arch = _arch()
    arch["conditioner"]["hidden"] = 128
    config = TrainingConfig(steps=1000, batch_size=64, learning_rate=1e-3, warmup_steps=30,
                            eval_every=100, validation_size=256, snr_range=(50.0, 200.0),
                            masked_fraction=0.02, continuum_error=0.005, device="cpu", seed=0,
                            threads=1)
    threads = torch.get_num_threads()
    try:
        model, hist = train_model(sim, arch, config, name="sim-test", version="0.0.1", log=None)
    finally:
        torch.set_num_threads(threads)
    # A prior-only density of standardized uniform labels scores 0.32 per parameter at best
    # (the nll omits 0.5 log(2 pi) per dimension); the trained model must do far better.
    baseline = len(PARAMS) * (math.log(math.sqrt(12.0)) - 0.5 * math.log(2 * math.pi))
    assert hist["val_loss"][-1] < baseline - 0.6
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    md = model.metadata
    assert [p.name for p in md.parameters] == PARAMS
    prior_ranges = sim.parameter_ranges
    for p in md.parameters:
        assert tuple(p.range) == pytest.approx(prior_ranges[p.name])
    assert md.training["simulated"] and md.training["n_validation"] == 256
    assert md.training["data"]["emulator"]["name"] == "tiny-analytic"


def test_train_from_config_with_a_simulator(tmp_path):
    emu = tiny_emulator()
    save_emulator(tmp_path / "emu", emu, {"name": "tiny-analytic",
                                          "resolving_power": {"A": R, "B": R}})
    sim = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0)
    flux, labels = sim.sample(12, torch.Generator().manual_seed(9))
    save_training_set(tmp_path / "hold.npz", TrainingSet(
        flux.numpy(), labels.numpy(), PARAMS, sim.grid, {"A": R, "B": R}, {"source": "test"}))
    arch = _arch()
    cond = arch.pop("conditioner")
    lines = [f"{k} = {json.dumps(v)}" for k, v in arch.items()]
    (tmp_path / "cfg.toml").write_text(
        '[model]\nname = "sim-cfg"\nversion = "0.0.1"\noutput = "out"\n'
        f'[simulator]\nemulator = "emu"\nparameters = {json.dumps(PARAMS)}\nrv_sigma = 1.0\n'
        'holdout = "hold.npz"\n'
        "[simulator.kiel_region]\nteff_range = [4500.0, 6500.0]\n"
        "lower = [[4500.0, 2.0], [6500.0, 3.0]]\nupper = [[4500.0, 4.5], [6500.0, 4.5]]\n"
        '[simulator.provenance]\nline_lists = "none (analytic)"\n'
        "[architecture]\n" + "\n".join(lines) + "\n[architecture.conditioner]\n"
        + "\n".join(f"{k} = {json.dumps(v)}" for k, v in cond.items()) + "\n"
        "[training]\nsteps = 3\neval_every = 1\nbatch_size = 8\nvalidation_size = 16\n"
        'device = "cpu"\n')
    model = CINNModel.load(train_from_config(tmp_path / "cfg.toml", log=None))
    tr = model.metadata.training
    assert len(tr["history"]["holdout_loss"]) == 3
    assert tr["holdout"]["n"] == 12
    assert tr["data"]["line_lists"] == "none (analytic)"
    assert len(tr["data"]["emulator"]["weights_sha256"]) == 64
    assert tr["data"]["radial_velocity"]["sigma_kms"] == 1.0
    (tmp_path / "bad.toml").write_text(
        (tmp_path / "cfg.toml").read_text().replace("rv_sigma", "rv_sgima"))
    with pytest.raises(ValueError, match="unknown \\[simulator\\] option"):
        train_from_config(tmp_path / "bad.toml", log=None)
    assert tr["history"]["selected_by"] == "validation" and "selection" not in tr
    # a selection set picks the weights: the best of its losses, recorded in the history
    (tmp_path / "sel.toml").write_text((tmp_path / "cfg.toml").read_text().replace(
        'holdout = "hold.npz"', 'holdout = "hold.npz"\nselection = "hold.npz"').replace(
        "steps = 3\n", "steps = 4\n").replace('output = "out"', 'output = "out-sel"'))
    tr = CINNModel.load(train_from_config(tmp_path / "sel.toml", log=None)).metadata.training
    hist = tr["history"]
    assert hist["selected_by"] == "selection" and tr["selection"]["n"] == 12
    assert tr["selection"]["realizations"] == 8 and len(hist["selection_loss"]) == 4
    best = int(np.argmin(hist["selection_loss"]))
    assert hist["best_step"] == hist["step"][best]
    assert hist["best_val_loss"] == hist["val_loss"][best]


def test_emulator_noise_is_added_with_the_requested_spread():
    emu = tiny_emulator()
    plain = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0)
    noisy = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0, emulator_noise=0.01)
    f0, l0 = plain.sample(64, torch.Generator().manual_seed(3))
    f1, l1 = noisy.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(l0, l1)
    assert float((f1 - f0).std()) == pytest.approx(0.01, rel=0.05)
    assert noisy.provenance["emulator_noise"] == 0.01
    with pytest.raises(ValueError, match="emulator_noise"):
        EmulatorSimulator(emu, PARAMS, _prior(emu), emulator_noise=-1.0)


def test_emulator_error_sets_the_noise_per_pixel(tmp_path):
    emu = tiny_emulator()
    npix = emu.grid.npix
    error = np.where(np.arange(npix) < npix // 2, 0.0, 0.03)
    plain = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0)
    noisy = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0, emulator_noise=0.01,
                              emulator_error=error)
    f0, _ = plain.sample(256, torch.Generator().manual_seed(3))
    f1, _ = noisy.sample(256, torch.Generator().manual_seed(3))
    spread = (f1 - f0).std(dim=0).numpy()
    np.testing.assert_allclose(spread[: npix // 2].mean(), 0.01, rtol=0.05)
    np.testing.assert_allclose(spread[npix // 2:].mean(), np.hypot(0.01, 0.03), rtol=0.05)
    assert noisy.provenance["emulator_error"]["max"] == pytest.approx(np.hypot(0.01, 0.03))
    with pytest.raises(ValueError, match="emulator_error must hold"):
        EmulatorSimulator(emu, PARAMS, _prior(emu), emulator_error=error[:-1])
    # from a configuration: an .npz file with ``sigma`` on the emulator grid
    save_emulator(tmp_path / "emu", emu, {"resolving_power": {"A": R, "B": R}})
    np.savez(tmp_path / "err.npz", sigma=error)
    region = {"teff_range": [4500.0, 6500.0], "lower": [[4500.0, 2.0], [6500.0, 3.0]],
              "upper": [[4500.0, 4.5], [6500.0, 4.5]]}
    sim = EmulatorSimulator.from_config(
        {"emulator": "emu", "emulator_error": "err.npz", "parameters": PARAMS,
         "kiel_region": region}, base=tmp_path)
    np.testing.assert_allclose(sim.emulator_sigma, error[sim._keep], atol=1e-7)


def test_emulator_error_by_teff_follows_each_spectrum_s_teff(tmp_path):
    """Two Teff nodes with different errors: the noise of each spectrum is the variance
    interpolated linearly to its own Teff, constant beyond the nodes."""
    from specutils_cinn.emulator import hat_weights

    emu = tiny_emulator()
    npix = emu.grid.npix
    nodes = [5000.0, 6000.0]
    error = np.stack([np.full(npix, 0.04), np.full(npix, 0.01)])
    plain = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0)
    noisy = EmulatorSimulator(emu, PARAMS, _prior(emu), rv_sigma=0.0, emulator_error=error,
                              emulator_error_teff=nodes)
    f0, lab = plain.sample(2000, torch.Generator().manual_seed(3))
    f1, lab1 = noisy.sample(2000, torch.Generator().manual_seed(3))
    assert torch.equal(lab, lab1)
    teff = lab[:, PARAMS.index("teff")]
    # the expected standard deviation of each spectrum's noise
    want = (hat_weights(teff, nodes) @ torch.tensor([0.04**2, 0.01**2], dtype=torch.float64)
            ).sqrt()
    got = (f1 - f0).double().std(dim=1)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0.15)
    cool, warm = teff <= 5000.0, teff >= 6000.0
    assert cool.any() and warm.any()
    np.testing.assert_allclose(got[cool].mean(), 0.04, rtol=0.05)
    np.testing.assert_allclose(got[warm].mean(), 0.01, rtol=0.05)
    prov = noisy.provenance["emulator_error"]
    assert prov["teff_nodes"] == nodes
    assert prov["median_per_node"] == pytest.approx([0.04, 0.01])
    with pytest.raises(ValueError, match="shape"):
        EmulatorSimulator(emu, PARAMS, _prior(emu), emulator_error=error[0],
                          emulator_error_teff=nodes)
    with pytest.raises(ValueError, match="strictly increasing"):
        EmulatorSimulator(emu, PARAMS, _prior(emu), emulator_error=error,
                          emulator_error_teff=nodes[::-1])
    with pytest.raises(ValueError, match="needs emulator_error"):
        EmulatorSimulator(emu, PARAMS, _prior(emu), emulator_error_teff=nodes)
    # from a configuration: the .npz holds ``teff`` next to ``sigma``
    save_emulator(tmp_path / "emu", emu, {"resolving_power": {"A": R, "B": R}})
    np.savez(tmp_path / "err.npz", sigma=error, teff=np.array(nodes))
    region = {"teff_range": [4500.0, 6500.0], "lower": [[4500.0, 2.0], [6500.0, 3.0]],
              "upper": [[4500.0, 4.5], [6500.0, 4.5]]}
    sim = EmulatorSimulator.from_config(
        {"emulator": "emu", "emulator_error": "err.npz", "parameters": PARAMS,
         "kiel_region": region}, base=tmp_path)
    np.testing.assert_array_equal(sim.emulator_error_teff, nodes)
    assert sim.emulator_sigma.shape == (2, sim.grid.npix)


def test_hat_weights_interpolate_linearly_and_clamp():
    from specutils_cinn.emulator import hat_weights

    w = hat_weights([3900.0, 4000.0, 4250.0, 4500.0, 5000.0, 8000.0], [4000.0, 4500.0, 5500.0])
    np.testing.assert_allclose(w.numpy(), [[1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0],
                                           [0, 0.5, 0.5], [0, 0, 1]])
    assert hat_weights([1.0, 2.0], [5.0]).tolist() == [[1.0], [1.0]]
    # a quantity linear in x between the nodes is reproduced
    x = np.linspace(4000, 5500, 31)
    np.testing.assert_allclose(hat_weights(x, [4000.0, 4500.0, 5500.0]).numpy()
                               @ np.array([4000.0, 4500.0, 5500.0]), x)
    with pytest.raises(ValueError, match="strictly increasing"):
        hat_weights([1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        hat_weights([np.nan], [1.0, 2.0])


def test_pixel_error_weights_select_the_spectra():
    from specutils_cinn.emulator import pixel_error
    from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

    grid = WavelengthGrid((GridSegment("A", 5000.0, 5000.9, 0.1),))
    res = np.stack([np.full(grid.npix, 0.1), np.full(grid.npix, 0.3)])
    np.testing.assert_allclose(pixel_error(res, grid, smooth=1, weights=[1.0, 0.0]), 0.1,
                               rtol=1e-6)
    np.testing.assert_allclose(pixel_error(res, grid, smooth=1, weights=[1.0, 1.0]),
                               np.sqrt(0.05), rtol=1e-6)
    with pytest.raises(ValueError, match="one per spectrum"):
        pixel_error(res, grid, weights=[1.0])
    with pytest.raises(ValueError, match="without any spectrum"):
        pixel_error(res, grid, weights=[0.0, 0.0])


# --------------------------------------------------------------------------------------------
# macroturbulence
# --------------------------------------------------------------------------------------------
def test_prior_draws_vmacro_only_when_asked():
    emu = tiny_emulator()
    plain = _prior(emu)
    assert "vmacro" not in plain.label_names and "vmacro" not in plain.parameter_ranges()
    assert "vmacro" not in plain.to_dict() and plain.vmacro_range is None
    region = plain.region
    prior = LabelPrior.from_emulator(emu, region, (0.0, 25.0), vmacro_range=[2, 7])
    assert prior.vmacro_range == (2.0, 7.0)
    assert prior.label_names == [*plain.label_names, "vmacro"]
    assert prior.parameter_ranges()["vmacro"] == (2.0, 7.0)
    assert prior.to_dict()["vmacro"] == {"distribution": "uniform", "range": [2.0, 7.0],
                                         "profile": "radial-tangential"}
    vm = prior.sample(4000, torch.Generator().manual_seed(0))["vmacro"].numpy()
    assert vm.min() >= 2.0 and vm.max() <= 7.0
    assert vm.mean() == pytest.approx(4.5, abs=0.1) and vm.std() == pytest.approx(
        5.0 / math.sqrt(12.0), rel=0.05)
    # the other labels are drawn as without macroturbulence
    a, b = (x.sample(50, torch.Generator().manual_seed(1)) for x in (plain, prior))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for bad, match in (((-1.0, 3.0), "non-negative"), ((5.0, 2.0), "increasing"),
                       ((1.0, float("nan")), "finite"), ((1.0,), "two"), ("ab", "two")):
        with pytest.raises(ValueError, match=match):
            LabelPrior(region, dict(plain.ranges), vmacro_range=bad)
    with pytest.raises(ValueError, match="vmacro_range, not ranges"):
        LabelPrior(region, {**plain.ranges, "vmacro": (0.0, 5.0)})


def _macro_prior(emu):
    return LabelPrior.from_emulator(emu, _prior(emu).region, (0.0, 25.0), vmacro_range=(2.0, 7.0))


def test_simulator_without_vmacro_range_is_unchanged():
    """No vmacro_range: the spectra of rotation and shift alone, as before macroturbulence."""
    from specutils_cinn.instruments.rotation import BinnedRotation

    emu = tiny_emulator()
    sim = EmulatorSimulator(emu, PARAMS, _prior(emu))
    assert sim.rotation.max_vmacro == 0.0 and sim.provenance["macroturbulence"] is None
    flux, labels = sim.sample(16, torch.Generator().manual_seed(5))
    # the same draws through the rotation exactly as it was set up before
    gen = torch.Generator().manual_seed(5)
    lab = sim.prior.sample(16, gen)
    rv = 2.0 * torch.randn(16, generator=gen, dtype=torch.float64)
    before = BinnedRotation(emu.grid, limb_darkening=0.6, oversample=2.0, max_vsini=25.0,
                            max_shift=10.0)
    with torch.no_grad():
        expected = before(emu(torch.stack([lab[n] for n in EMU_LABELS], 1), clamp=True),
                          lab["vsini"], rv)
    assert torch.equal(flux, expected)
    assert torch.equal(labels, torch.stack([lab[p] for p in PARAMS], 1))


def test_simulator_applies_vmacro_as_a_label_or_a_nuisance():
    emu = tiny_emulator()
    prior = _macro_prior(emu)
    nuisance = EmulatorSimulator(emu, PARAMS, prior, rv_sigma=0.0)
    label = EmulatorSimulator(emu, [*PARAMS, "vmacro"], prior, rv_sigma=0.0)
    f_n, l_n = nuisance.sample(8, torch.Generator().manual_seed(6))
    f_l, l_l = label.sample(8, torch.Generator().manual_seed(6))
    assert torch.equal(f_n, f_l) and torch.equal(l_l[:, :-1], l_n)
    assert label.parameter_ranges["vmacro"] == (2.0, 7.0) and "vmacro" not in nuisance.parameters
    assert label.rotation.max_vmacro == 7.0
    assert nuisance.provenance["macroturbulence"]["role"].startswith("nuisance")
    assert label.provenance["macroturbulence"] == {
        "profile": "radial-tangential (Gray 2005; zeta_R = zeta_T, equal area fractions)",
        "distribution": "uniform", "range": [2.0, 7.0], "role": "label"}
    # the flux is the emulator's broadened by the drawn vsini and vmacro
    lab = prior.sample(8, torch.Generator().manual_seed(6))
    with torch.no_grad():
        raw = emu(torch.stack([lab[n] for n in EMU_LABELS], 1), clamp=True)
    assert torch.equal(f_l, label.rotation(raw, lab["vsini"], None, lab["vmacro"]))
    assert not torch.equal(f_l, label.rotation(raw, lab["vsini"]))
    assert torch.equal(l_l[:, -1], lab["vmacro"])


def test_vmacro_range_from_config(tmp_path):
    emu = tiny_emulator()
    save_emulator(tmp_path / "emu", emu, {"resolving_power": {"A": R, "B": R}})
    region = {"teff_range": [4500.0, 6500.0], "lower": [[4500.0, 2.0], [6500.0, 3.0]],
              "upper": [[4500.0, 4.5], [6500.0, 4.5]]}
    table = {"emulator": "emu", "parameters": [*PARAMS, "vmacro"], "kiel_region": region,
             "vmacro_range": [1, 6]}
    sim = EmulatorSimulator.from_config(table, base=tmp_path)
    assert sim.prior.vmacro_range == (1.0, 6.0) and sim.rotation.max_vmacro == 6.0
    assert sim.provenance["prior"]["vmacro"]["range"] == [1.0, 6.0]
    assert "vmacro_range" in EmulatorSimulator.CONFIG_KEYS
    with pytest.raises(ValueError, match="does not draw"):
        EmulatorSimulator.from_config({**table, "vmacro_range": None}, base=tmp_path)
    with pytest.raises(ValueError, match="vmacro_range must be"):
        EmulatorSimulator.from_config({**table, "vmacro_range": [-1, 6]}, base=tmp_path)


def test_pixel_error_is_the_smoothed_rms_with_a_floor():
    from specutils_cinn.emulator import pixel_error
    from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

    grid = WavelengthGrid((GridSegment("A", 5000.0, 5000.9, 0.1),
                           GridSegment("B", 6000.0, 6000.9, 0.1)))
    res = np.zeros((4, grid.npix))
    res[:, 4] = [0.1, -0.1, 0.1, -0.1]  # RMS 0.1 at one pixel of segment A
    out = pixel_error(res, grid, smooth=5, floor=1e-3)
    np.testing.assert_allclose(out[2:7], np.sqrt(0.01 / 5), rtol=1e-6)
    np.testing.assert_allclose(out[10:], 1e-3)  # segment B untouched, at the floor
    with pytest.raises(ValueError, match="odd"):
        pixel_error(res, grid, smooth=4)


def test_the_old_module_re_exports_the_moved_names():
    """specutils_cinn.simulation re-exports for one release (CHANGES.rst)."""
    from specutils_cinn import parameters, simulation, training
    from specutils_cinn.instruments import rotation

    assert simulation.EmulatorSimulator is training.EmulatorSimulator
    assert simulation.LabelPrior is training.LabelPrior
    assert simulation.SpectrumSimulator is training.SpectrumSimulator
    assert simulation.BinnedRotation is rotation.BinnedRotation
    assert simulation.DEFAULT_PARAMETERS is parameters.DEFAULT_PARAMETERS
    assert sorted(simulation.__all__) == sorted(
        ["DEFAULT_PARAMETERS", "BinnedRotation", "EmulatorSimulator", "LabelPrior",
         "SpectrumSimulator"])
