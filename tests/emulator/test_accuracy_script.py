"""scripts/emulator_accuracy.py: the per-[Fe/H] table of held-out residuals."""

import numpy as np
import pytest
from repo_scripts import script_module

from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid


@pytest.fixture(scope="module")
def script():
    with script_module("emulator_accuracy") as module:
        yield module


def test_fe_h_table_bins_and_segments(script):
    grid = WavelengthGrid((GridSegment("A", 5000.0, 5000.9, 0.1),
                           GridSegment("B", 6000.0, 6000.9, 0.1)))
    fe_h = np.array([-3.5, -3.0, -0.5, 0.2, 0.3])
    labels = np.column_stack([np.full(5, 5000.0), fe_h])
    data = {"labels": labels, "label_names": ["teff", "fe_h"]}
    ho = np.ones(5, bool)
    # residual = 0.01 x bin index in segment A, 0.1 in segment B for the metal-rich bin
    res = np.zeros((5, grid.npix))
    res[:, :10] = np.where(fe_h < -2, 0.01, 0.02)[:, None]
    res[3:, 10:] = 0.1
    rows = script.fe_h_table("HR", data, res, ho, grid, [-4.0, -2.0, -1.0, 0.5])
    by = {(r[1], r[3]): r for r in rows}
    assert [r[2] for r in rows if r[3] == "all"] == ["2", "0", "3"]
    assert float(by[("-4.0 .. -2.0", "A")][4]) == pytest.approx(0.01)
    assert float(by[("-4.0 .. -2.0", "B")][4]) == 0.0
    assert by[("-2.0 .. -1.0", "A")][4] == "-"            # an empty bin is shown, not dropped
    assert float(by[("-1.0 .. +0.5", "B")][5]) == pytest.approx(0.1)
    assert float(by[("-1.0 .. +0.5", "A")][4]) == pytest.approx(0.02)


def test_basis_floor_zero_in_span_positive_outside():
    with script_module("emulator_basis_floor") as module:
        rng = np.random.default_rng(0)
        train = 1 - 0.3 * rng.random((6, 50))
        combo = rng.random((2, 6))
        combo /= combo.sum(axis=1, keepdims=True)          # affine combinations: in mean + span
        flux = np.vstack([train, combo @ train])
        ho = np.r_[np.zeros(6, bool), np.ones(2, bool)]
        assert module.basis_floor(flux, ho, 6).max() < 1e-10
        assert module.basis_floor(flux, ho, 1).max() > 1e-3
        with pytest.raises(ValueError, match="training stars"):
            module.basis_floor(flux, ho, 7)
