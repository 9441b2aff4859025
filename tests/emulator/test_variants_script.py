"""scripts/emulator_variants.py: the same processes, one change at a time."""

import json

import numpy as np
import pytest
from repo_scripts import script_module

from specutils_cinn.instruments import InstrumentSetup
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid


@pytest.fixture(scope="module")
def script():
    with script_module("emulator_variants") as module:
        yield module


def _data(n=60, seed=0):
    """Smooth spectra of three labels on two small segments; every tenth star held out."""
    grid = WavelengthGrid((GridSegment("A", 5000.0, 5004.9, 0.1),
                           GridSegment("B", 6000.0, 6004.9, 0.1)))
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000.0, 7000.0, n)
    logg, fe_h = rng.uniform(1.0, 5.0, n), rng.uniform(-2.0, 0.5, n)
    w = grid.wavelength.value
    depth = 0.3 * (5040.0 / teff)[:, None] * (1 + 0.2 * fe_h)[:, None]
    flux = 1 - depth * np.exp(-0.5 * ((w - 5002.0 - 0.1 * logg[:, None]) / 0.3) ** 2)
    star_id = rng.permutation(n)
    return {"labels": np.column_stack([teff, logg, fe_h]), "label_names": ["teff", "logg", "fe_h"],
            "flux": flux.astype(np.float32), "star_id": star_id, "holdout": star_id % 10 == 9,
            "setup": InstrumentSetup("T", grid, 20000.0)}


def _files(tmp_path):
    """`_data` as an emulator data file and a small configuration."""
    data = _data()
    npz = tmp_path / "emu.npz"
    np.savez(npz, labels=data["labels"], label_names=np.array(data["label_names"]),
             flux=data["flux"], star_id=data["star_id"], holdout=data["holdout"],
             setup=np.array(json.dumps(data["setup"].to_dict())), provenance=np.array("{}"))
    conf = tmp_path / "emu.toml"
    conf.write_text("[emulator]\nn_components = 6\ngp_groups = [2, 4]\ngp_steps = 5\n")
    return npz, conf


CONF = {"n_components": 6, "gp_groups": [2, 4], "gp_steps": 20, "gp_fit_stars": 100}


def test_rows_follow_the_design_order(script):
    star_id = np.array([5, 9, 0, 19, 3, 1, 29])
    train, test = script.choose_rows(star_id, star_id % 10 == 9, 3, None)
    assert star_id[train].tolist() == [0, 1, 3]
    assert star_id[test].tolist() == [9, 19, 29]
    assert star_id[script.choose_rows(star_id, star_id % 10 == 9, 2, 20)[1]].tolist() == [9, 19]
    with pytest.raises(ValueError, match="train-stars"):
        script.choose_rows(star_id, star_id % 10 == 9, 5, None)
    with pytest.raises(ValueError, match="held-out"):
        script.choose_rows(star_id, star_id % 10 == 9, 2, 5)


@pytest.mark.parametrize("variant", ["base", "theta", "poly", "log", "groups", "local"])
def test_every_variant_learns_a_smooth_grid(script, variant):
    data = _data()
    train, test = script.choose_rows(data["star_id"], data["holdout"], 54, None)
    pred = script.fit_predict(data, train, test, variant, CONF)
    truth = data["flux"][test]
    assert pred.shape == truth.shape
    # far better than the mean spectrum of the training stars
    err, err_mean = np.abs(pred - truth).max(), np.abs(data["flux"][train].mean(0) - truth).max()
    assert err < 0.3 * err_mean


def test_unknown_variant_and_table(script, tmp_path):
    data = _data()
    with pytest.raises(ValueError, match="variant"):
        script.fit_predict(data, np.arange(5), np.arange(5, 7), "cubic", CONF)
    grid = data["setup"].grid
    res = np.zeros((2, grid.npix))
    res[0, grid.segment_index == 1] = 0.5
    row = script.summary_row("base", 1.2, res, np.array([4000.0, 6000.0]),
                             grid.segment_index, 2)
    assert row[:2] == ["base", "1"]
    assert float(row[4]) == 0.0 and float(row[5]) == pytest.approx(0.5)     # p99 A, p99 B
    assert float(row[6]) == pytest.approx(0.5) and float(row[7]) == 0.0     # cool, warm


def test_main_writes_the_table(script, tmp_path):
    npz, conf = _files(tmp_path)
    out = tmp_path / "t.rst"
    script.main([str(npz), "--config", str(conf), "--train-stars", "40", "--variants", "base",
                 "theta", "--output", str(out)])
    text = out.read_text()
    assert "40 training stars" in text and "p99 B" in text
    assert [ln.split()[0] for ln in text.splitlines() if ln.startswith(("base", "theta"))] == [
        "base", "theta"]
    with pytest.raises(SystemExit):
        script.main([str(npz), "--config", str(conf), "--output", str(tmp_path / "no" / "t.rst")])


def test_stars_for_target_follows_the_power_law(script):
    factor, need = script.stars_for_target([100, 400], [0.04, 0.02])
    assert factor == pytest.approx(2 ** 0.5)
    assert need == pytest.approx(400 * 4)          # two more halvings: four doublings
    assert script.stars_for_target([100, 200], [0.02, 0.005])[1] == 200
    assert script.stars_for_target([100, 200], [0.02, 0.03])[1] == float("inf")
    with pytest.raises(ValueError, match="rise"):
        script.stars_for_target([200, 200], [0.02, 0.01])


def test_scaling_mode_rows_per_size(script, tmp_path):
    npz, conf = _files(tmp_path)
    text = script.main([str(npz), "--config", str(conf), "--scaling", "40", "20"])
    assert [ln.split()[0] for ln in text.splitlines() if ln[:2] in ("20", "40")] == ["20", "40"]
    assert "--scaling 20 40" in text and "per doubling" in text
    with pytest.raises(SystemExit):
        script.main([str(npz), "--config", str(conf), "--scaling", "40"])


def test_family_variant_fits_each_atmosphere_family_on_its_own(script):
    """Below [Fe/H] -2.5 (ATLAS9) and above (MARCS) each side has its own processes: a step
    in the flux at the seam is kept, where one set of processes smooths over it."""
    data = _data(n=120, seed=1)
    rng = np.random.default_rng(2)
    fe_h = rng.uniform(-4.0, 0.5, 120)
    data["labels"][:, 2] = fe_h
    data["flux"] = (data["flux"] - 0.1 * (fe_h < -2.5)[:, None]).astype(np.float32)
    train, test = script.choose_rows(data["star_id"], data["holdout"], 100, None)
    truth = data["flux"][test]
    err = {v: np.median(np.abs(script.fit_predict(data, train, test, v, CONF) - truth).max(1))
           for v in ("base", "family")}
    assert err["family"] < 0.8 * err["base"]
    low = data["labels"][:, 2] < -2.5
    only_high = train[~low[train]]
    with pytest.raises(ValueError, match="both atmosphere families"):
        script.fit_predict(data, only_high, test, "family", CONF)


def test_main_lists_the_worst_stars(script, tmp_path):
    npz, conf = _files(tmp_path)
    text = script.main([str(npz), "--config", str(conf), "--train-stars", "40", "--variants",
                        "base", "--worst", "3"])
    assert "--variants base --worst 3" in text
    table = text.split("(base variant):")[1]
    rows = [ln.split() for ln in table.splitlines() if ln and ln[0].isdigit()]
    assert len(rows) == 3 and [r for r in rows if len(r) == 5] == rows
    p99 = [float(r[-1]) for r in rows]
    assert p99 == sorted(p99, reverse=True)
