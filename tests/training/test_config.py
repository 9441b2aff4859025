"""Training settings and the TOML file of a training run."""

import pytest

from specutils_cinn.training import (
    SIMULATOR_KEYS,
    EmulatorSimulator,
    TrainingConfig,
    read_training_file,
)


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown training option"):
        TrainingConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="snr_range"):
        TrainingConfig(snr_range=(50.0, 10.0))
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainingConfig(validation_fraction=1.5)


_TABLES = (
    '[model]\nname = "m"\nversion = "0.0.1"\noutput = "out"\n'
    '[data]\npath = "data.npz"\n'
    "[architecture]\nn_blocks = 2\n"
    "[training]\nsteps = 3\n"
)


def test_read_training_file_checks_the_tables(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(_TABLES)
    cfg = read_training_file(path)
    assert cfg.base == tmp_path and cfg.model["name"] == "m" and cfg.simulator is None
    assert cfg.data == {"path": "data.npz"} and cfg.architecture == {"n_blocks": 2}
    assert cfg.training == TrainingConfig(steps=3)
    cases = {
        "not valid TOML": "[model\n",
        r"missing \[model\]": _TABLES.replace("[model]", "[modell]"),
        r"missing \[data\] table \(or \[simulator\]\)": _TABLES.replace("[data]", "[dat]"),
        "either": _TABLES + '[simulator]\nemulator = "emu"\n',
        r"missing \[training\]": _TABLES.replace("[training]", "[trainin]"),
        "unknown training option": _TABLES + "stepz = 4\n",
        r"unknown \[simulator\] option": _TABLES.replace(
            '[data]\npath = "data.npz"', '[simulator]\nemulater = "emu"'),
    }
    for message, text in cases.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_training_file(path)


def test_the_simulator_reads_the_keys_of_the_schema():
    assert EmulatorSimulator.CONFIG_KEYS == SIMULATOR_KEYS
    assert {"emulator", "holdout", "selection"} <= set(SIMULATOR_KEYS)
