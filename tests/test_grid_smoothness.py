"""scripts/grid_smoothness.py: the interpolation error of a label sequence."""

import h5py
import numpy as np
import pytest
from repo_scripts import script_module


@pytest.fixture(scope="module")
def script():
    with script_module("grid_smoothness") as module:
        yield module


def test_smooth_sequence_interpolates_to_order_h_squared_and_a_jump_does_not(script):
    x = np.linspace(0.0, 1.0, 200)
    segment = (x > 0.5).astype(int)

    def flux(t):
        return 1 - 0.5 * np.exp(-0.5 * ((x - 0.3 - 0.2 * t) / 0.05) ** 2)

    coarse = np.stack([flux(t) for t in (0.0, 0.05, 0.1)])
    fine = np.stack([flux(t) for t in (0.025, 0.05, 0.075)])
    e1, c1 = script.interpolation_error(coarse, segment, 2)
    e2, c2 = script.interpolation_error(fine, segment, 2)
    assert e1.shape == c1.shape == (1, 2)
    assert e1[0, 0] < 0.2 * c1[0, 0]                     # far below the change
    assert e2[0, 0] == pytest.approx(e1[0, 0] / 4, rel=0.1)  # h^2
    jump = fine.copy()
    jump[1] += 0.01                                      # a star off the smooth sequence
    e3, _ = script.interpolation_error(jump, segment, 2)
    assert e3[0, 1] == pytest.approx(0.01, abs=1e-4)     # seen even where nothing changes


def test_sequence_and_labels_from_shards(script, tmp_path):
    seq = script.sequence({"teff": 4000.0, "logg": 4.5}, "teff", 10.0, 3)
    assert [s["teff"] for s in seq] == [4000.0, 4010.0, 4020.0]
    assert all(s["logg"] == 4.5 for s in seq)
    assert [s["teff"] for s in script.sequence({"teff": 4000.0}, "teff", 5.0, 3, 4100.0)] == [
        4100.0, 4105.0, 4110.0]
    with pytest.raises(ValueError, match="no label"):
        script.sequence({"teff": 4000.0}, "fe_h", 0.1, 3)
    with pytest.raises(ValueError, match="3 points"):
        script.sequence({"teff": 4000.0}, "teff", 10.0, 2)
    with h5py.File(tmp_path / "shard_00000.h5", "w") as h:
        h["star_id"] = np.array([4, 7])
        h["labels/teff"] = np.array([4100.0, 5200.0])
        h["labels/a_li"] = np.array([1.0, 2.0])
        h["labels/li_fe"] = np.array([0.1, 0.2])
    assert script.star_labels(tmp_path, 7) == {"teff": 5200.0, "a_li": 2.0}
    with pytest.raises(ValueError, match="no shard"):
        script.star_labels(tmp_path, 5)
