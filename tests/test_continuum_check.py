"""scripts/continuum_check.py: the per-segment check of the pseudo-continuum and its floor."""

import numpy as np
import pytest
from repo_scripts import script_module

from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

GRID = WavelengthGrid((GridSegment("HB", 3926.0, 4355.0, 0.5),
                       GridSegment("HG", 5160.0, 5730.0, 0.5)))


@pytest.fixture(scope="module")
def script():
    with script_module("continuum_check") as module:
        yield module


def test_table_finds_the_falling_continuum_and_the_floor_bounds_it(script):
    rng = np.random.default_rng(2)
    flux = np.ones((6, GRID.npix))
    hb = GRID.segment_slices[0]
    x = np.linspace(-1, 1, hb.stop - hb.start)
    wing = 1 - 0.97 * np.exp(-0.5 * ((x + 1.0) / 0.25) ** 2)  # Ca II K at the blue end
    blanket = 0.6 + 0.4 * rng.random((3, x.size))  # a cool star: lines everywhere
    flux[:3, hb] = 0.5 * wing * blanket
    flux *= 1 + 0.01 * rng.standard_normal(flux.shape)
    valid = np.ones(flux.shape, dtype=bool)
    rows = {(r[0], float(r[1])): r for r in script.table(GRID, flux, valid, [0.0, 0.1])}
    assert len(rows) == 4 and len(rows["HB", 0.0]) == len(script.HEADER)
    hb0, hb1, hg1 = rows["HB", 0.0], rows["HB", 0.1], rows["HG", 0.1]
    assert float(hb0[2]) == pytest.approx(50.0)  # three of six spectra fall to <= 0
    assert float(hb0[3]) == 0.0  # no floor, nothing lifted
    assert float(hb1[3]) == pytest.approx(50.0) and float(hb1[4]) > 0
    assert float(hb1[6]) < 10 < float(hb0[6])  # bounded by the floor, not without it
    assert float(hg1[2]) == float(hg1[3]) == 0.0 and float(hg1[6]) < 1.1
    text = script.rst(list(rows.values()), "a note")
    assert text.startswith(".. a note") and "p99 of max abs F/C" in text
    assert not any(line.endswith(" ") for line in text.splitlines())


def test_arguments_are_checked_before_any_work(script, tmp_path):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.toml"), "--floors", "0", "1.0"])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.toml"), "--spectra", "0"])
