"""The emulator's release stages from a configuration: ``emulator train`` and ``emulator error``."""

import json

import numpy as np
import pytest

from specutils_cinn import cli
from specutils_cinn.emulator import (
    EmulatorConfig,
    load_emulator,
    load_training_data,
    read_emulator_config,
    train_from_config,
    validation_rows,
)
from specutils_cinn.emulator.pipeline import subset_training_stars
from specutils_cinn.instruments import InstrumentSetup
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid((GridSegment("A", 5000.0, 5010.0, 0.1),))
NAMES = ["teff", "logg", "fe_h"]

CONFIG = """\
name = "tiny-emulator"
data = "data/emu.npz"
out = "emulators/tiny"

[emulator]
n_components = 8
hidden = [16]
steps = 400
batch_size = 32
learning_rate = 5e-3
warmup_steps = 10
eval_every = 20
patience = 100
validation_fraction = 0.2
seed = 3
"""


@pytest.fixture
def config(tmp_path):
    rng = np.random.default_rng(1)
    n = 60
    labels = rng.uniform(-1.0, 1.0, (n, 3))
    w = GRID.wavelength.value
    flux = 1.0 - (0.3 + 0.2 * labels[:, :1]) * np.exp(
        -0.5 * ((w - 5005.0 - labels[:, 1:2]) / (0.5 + 0.1 * labels[:, 2:3])) ** 2)
    star_id = np.arange(n)
    setup = InstrumentSetup("test", GRID, {"A": 20000.0})
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "emu.npz", labels=labels, label_names=np.array(NAMES),
             flux=flux.astype(np.float32), star_id=star_id, holdout=star_id % 10 == 9,
             setup=np.array(json.dumps(setup.to_dict())),
             provenance=np.array(json.dumps({"source": "test"})))
    path = tmp_path / "emulator.toml"
    path.write_text(CONFIG)
    return path


def test_config_paths_are_relative_to_the_config(config):
    conf = read_emulator_config(config)
    assert conf["data"] == str(config.parent / "data" / "emu.npz")
    assert conf["out"] == str(config.parent / "emulators" / "tiny")
    assert read_emulator_config(None) == {}


def test_validation_rows_are_whole_training_stars(config):
    data = load_training_data(read_emulator_config(config)["data"])
    cfg = EmulatorConfig(validation_fraction=0.2, seed=3)
    rows = validation_rows(data, cfg)
    assert rows.size == 11  # 20 % of the 54 stars not held out
    assert not data["holdout"][rows].any()
    np.testing.assert_array_equal(rows, validation_rows(data, cfg))  # reproducible
    assert not np.array_equal(rows, validation_rows(data, EmulatorConfig(
        validation_fraction=0.2, seed=4)))
    keep = subset_training_stars(data["star_id"], data["holdout"], 0.5, 0)
    assert keep.sum() == 27 and not (keep & data["holdout"]).any()


@pytest.mark.slow  # trains an emulator (about 4 s, most of it importing torch.optim)
def test_train_and_error_from_the_cli(config, tmp_path, capsys):
    ck = tmp_path / "emu.ckpt.safetensors"
    assert cli.main(["emulator", "train", str(config), "--steps", "60",
                     "--checkpoint", str(ck)]) == 0
    assert ck.exists()                                  # the CLI passes the checkpoint on
    out = tmp_path / "emulators" / "tiny"
    assert "held-out stars (6," in capsys.readouterr().out
    emu = load_emulator(out)
    assert emu.metadata["name"] == "tiny-emulator"
    assert int(emu.metadata["history"]["step"][-1]) <= 60  # --steps overrides the 400
    assert emu.metadata["accuracy_holdout"]["n_stars"] == 6
    assert emu.metadata["training_grid"] == {"source": "test"}

    err = tmp_path / "err.npz"
    assert cli.main(["emulator", "error", str(config), "-o", str(err), "--floor", "0.002"]) == 0
    assert "11 validation stars" in capsys.readouterr().out
    with np.load(err) as f:
        sigma = f["sigma"]
        meta = json.loads(str(f["metadata"]))
    assert sigma.shape == (GRID.npix,) and np.all(sigma >= 0.002)
    assert meta["stars"] == 11 and meta["floor"] == 0.002
    assert meta["emulator"] == str(out)
    # by Teff: one row per node, each a weighted RMS over the same validation stars
    err_t = tmp_path / "err_teff.npz"
    assert cli.main(["emulator", "error", str(config), "-o", str(err_t), "--floor", "0.002",
                     "--teff-nodes", "-0.5", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "Teff -0 K" in printed and "Teff 0 K" in printed
    with np.load(err_t) as f:
        sigma_t, nodes = f["sigma"], f["teff"]
        meta_t = json.loads(str(f["metadata"]))
    assert sigma_t.shape == (2, GRID.npix) and nodes.tolist() == [-0.5, 0.5]
    assert sum(meta_t["stars_per_node"]) == pytest.approx(11)
    # the variance averaged with the nodes' total weights is the unweighted one (no floor hit)
    wt = np.array(meta_t["stars_per_node"])[:, None] / 11
    free = np.all(sigma_t > 0.002, axis=0) & (sigma > 0.002)
    np.testing.assert_allclose((wt * sigma_t.astype(float) ** 2).sum(0)[free],
                               sigma.astype(float)[free] ** 2, rtol=1e-4)
    from specutils_cinn.emulator.pipeline import measure_pixel_error
    with pytest.raises(ValueError, match="less than one validation star"):
        measure_pixel_error(config, tmp_path / "e.npz", teff_nodes=[0.0, 50.0, 100.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        measure_pixel_error(config, tmp_path / "e.npz", teff_nodes=[0.5, -0.5])


def test_train_needs_data_and_output(tmp_path, capsys):
    with pytest.raises(ValueError, match="data and output"):
        train_from_config(None)
    assert cli.main(["emulator", "train"]) == 2
    assert "data and output" in capsys.readouterr().err
