"""Training sets and their ``.npz`` files."""

import numpy as np
import pytest

from specutils_cinn.training import TrainingSet, load_training_set, save_training_set
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid


def _grid(npix=10, step=0.25):
    return WavelengthGrid((GridSegment("A", 5000.0, 5000.0 + (npix - 1) * step, step),))


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
