"""PixelMask: validation, round trips (dict, ECSV), pixels on a grid, the bundled solar masks."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from astropy.table import Table

from specutils_cinn.inputs import PixelMask, mask_pixels
from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

PROV = {"method": "test", "threshold": 0.05, "spectra": ["HARPS", "UVES"],
        "date": "2026-12-05", "package_version": "0.0"}


def _grid(medium: str = "air") -> WavelengthGrid:
    return WavelengthGrid((GridSegment("A", 5000.0, 5009.0, 1.0),
                           GridSegment("B", 6000.0, 6004.5, 0.5)), medium)


def test_intervals_are_sorted_and_overlapping_or_touching_ones_merged():
    mask = PixelMask([(6001.0, 6002.0), (5000.5, 5002.0), (5001.0, 5003.0), (5003.0, 5004.0)])
    assert mask.intervals == ((5000.5, 5004.0), (6001.0, 6002.0))
    assert mask.n_intervals == 2
    assert mask.total_width == pytest.approx(4.5)
    assert PixelMask([]).intervals == ()


@pytest.mark.parametrize(("intervals", "match"), [
    ([(5002.0, 5001.0)], "empty or reversed"),
    ([(5001.0, 5001.0)], "empty or reversed"),
    ([(-1.0, 5001.0)], "start must be positive"),
    ([(0.0, 5001.0)], "start must be positive"),
    ([(5000.0, float("nan"))], "finite"),
    ([(5000.0, float("inf"))], "finite"),
    ([(5000.0,)], "expected \\(start, stop\\)"),
    ([(5000.0, 5001.0, 5002.0)], "expected \\(start, stop\\)"),
    ([("5000", 5001.0)], "expected numbers"),
    ([(True, 5001.0)], "expected numbers"),
    ("5000-5001", "list of \\(start, stop\\)"),
    (5000.0, "list of \\(start, stop\\)"),
])
def test_invalid_intervals_are_rejected(intervals, match):
    with pytest.raises(ValueError, match=match):
        PixelMask(intervals)


def test_provenance_must_be_json():
    with pytest.raises(ValueError, match="JSON"):
        PixelMask([(5000.0, 5001.0)], {"when": object()})
    with pytest.raises(ValueError, match="JSON"):
        PixelMask([(5000.0, 5001.0)], {"x": float("nan")})
    with pytest.raises(ValueError, match="mapping"):
        PixelMask([(5000.0, 5001.0)], ["not", "a", "mapping"])


def test_dict_round_trip_is_json_and_exact():
    mask = PixelMask([(5000.125, 5001.3), (6000.1, 6000.2)], PROV)
    d = json.loads(json.dumps(mask.to_dict(), allow_nan=False))
    assert d["intervals"] == [[5000.125, 5001.3], [6000.1, 6000.2]]
    back = PixelMask.from_dict(d)
    assert back == mask and back.intervals == mask.intervals and back.provenance == PROV
    assert hash(back) == hash(mask)
    assert PixelMask.from_dict({"intervals": []}).provenance == {}
    assert mask != PixelMask(mask.intervals, {**PROV, "threshold": 0.1})


@pytest.mark.parametrize(("d", "match"), [
    ({"provenance": {}}, "needs 'intervals'"),
    ({"intervals": [], "extra": 1}, "unknown pixel mask key"),
    ([[5000.0, 5001.0]], "must be an object"),
])
def test_from_dict_errors(d, match):
    with pytest.raises(ValueError, match=match):
        PixelMask.from_dict(d)


def test_ecsv_round_trip(tmp_path):
    mask = PixelMask([(5000.125, 5001.3), (6000.1, 6000.2)],
                     {**PROV, "nested": {"a": [1, 2], "b": None}})
    path = mask.write(tmp_path / "mask.ecsv")
    back = PixelMask.read(path)
    assert back == mask
    table = Table.read(path, format="ascii.ecsv")
    assert table.colnames == ["start", "stop"]
    assert str(table["start"].unit) == "Angstrom"
    assert table.meta["threshold"] == 0.05


def test_ecsv_in_nanometers_and_bad_files(tmp_path):
    t = Table({"start": [500.0], "stop": [500.1]})
    t["start"].unit = t["stop"].unit = "nm"
    t.write(tmp_path / "nm.ecsv", format="ascii.ecsv")
    assert np.allclose(PixelMask.read(tmp_path / "nm.ecsv").intervals, [(5000.0, 5001.0)])
    Table({"begin": [1.0], "stop": [2.0]}).write(tmp_path / "bad.ecsv", format="ascii.ecsv")
    with pytest.raises(ValueError, match="bad.ecsv.*missing column"):
        PixelMask.read(tmp_path / "bad.ecsv")
    Table({"start": [2.0], "stop": [1.0]}).write(tmp_path / "rev.ecsv", format="ascii.ecsv")
    with pytest.raises(ValueError, match="rev.ecsv.*reversed"):
        PixelMask.read(tmp_path / "rev.ecsv")
    with pytest.raises(FileNotFoundError):
        PixelMask.read(tmp_path / "missing.ecsv")


def test_on_grid_masks_pixels_whose_center_is_inside_half_open_intervals():
    grid = _grid()  # A: 5000..5009 step 1; B: 6000..6004.5 step 0.5
    mask = PixelMask([(5002.0, 5004.0),  # centers 5002, 5003 (5004 excluded: half-open)
                      (5004.9, 5005.1),  # a small part of pixel 5005, with its center
                      (5006.6, 5006.9),  # overlaps pixel 5007 (edge 5006.5) but not its center
                      (6004.5, 7000.0)])  # the last pixel
    on = mask.on_grid(grid)
    assert on.dtype == bool and on.shape == (grid.npix,)
    centers = grid.wavelength.value
    assert centers[on].tolist() == [5002.0, 5003.0, 5005.0, 6004.5]
    assert not PixelMask([]).on_grid(grid).any()
    assert not PixelMask([(4000.0, 4999.0), (5009.5, 5999.0)]).on_grid(grid).any()
    with pytest.raises(TypeError, match="WavelengthGrid"):
        mask.on_grid("grid")


def test_on_grid_of_a_vacuum_grid_converts_the_air_intervals():
    from astropy import units as u
    from specutils.utils.wcs_utils import air_to_vac

    vac_center = air_to_vac(5003.0 * u.AA).to_value(u.AA)  # 5004.40 A
    air = PixelMask([(5002.9, 5003.1)])
    grid = WavelengthGrid((GridSegment("A", vac_center - 2.0, vac_center + 2.0, 1.0),),
                          "vacuum")
    assert grid.wavelength.value[air.on_grid(grid)].tolist() == pytest.approx([vac_center])
    # read as air, the same numbers would mask nothing
    as_air = WavelengthGrid(grid.segments, "air")
    assert not air.on_grid(as_air).any()


def test_intervals_from_pixel_edges_give_back_the_pixels():
    grid = fourmost_setup("hr").grid
    rng = np.random.default_rng(1)
    bad = rng.random(grid.npix) < 0.02
    intervals = []
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        b = np.concatenate([[0], bad[sl].astype(np.int8), [0]])
        starts, stops = np.flatnonzero(np.diff(b) == 1), np.flatnonzero(np.diff(b) == -1)
        intervals += [(seg.edges[i], seg.edges[j]) for i, j in zip(starts, stops, strict=True)]
    assert np.array_equal(PixelMask(intervals).on_grid(grid), bad)


def test_mask_pixels_numpy_and_torch():
    valid = np.array([[True, True, False, True], [True, False, True, True]])
    masked = np.array([False, True, False, False])
    assert mask_pixels(valid, masked).tolist() == [[True, False, False, True],
                                                   [True, False, True, True]]
    assert mask_pixels(valid, None) is valid
    t = mask_pixels(torch.as_tensor(valid), torch.as_tensor(masked))
    assert t.tolist() == mask_pixels(valid, masked).tolist()
    with pytest.raises(ValueError, match="3 pixels"):
        mask_pixels(valid, masked[:3])


@pytest.mark.parametrize("setup", ["hr", "lr"])
def test_bundled_solar_masks(setup):
    path = resources.files("specutils_cinn") / "data" / "masks" / f"solar_mask_v1_{setup}.ecsv"
    mask = PixelMask.read(path)
    prov = mask.provenance
    for key in ("method", "threshold", "observed", "date", "package_version", "synthesis",
                "telluric_bands", "judged_range"):
        assert key in prov
    grid = fourmost_setup(setup).grid
    on = mask.on_grid(grid)
    assert 0 < on.mean() < 0.2
    # nothing masked where no observed Sun reaches, nor in the telluric bands
    wl = grid.wavelength.value
    reach = prov["dilation_pixels"] * max(s.step for s in grid.segments) + 1e-6
    lo, hi = prov["judged_range"]
    assert not on[(wl < lo - reach) | (wl > hi + reach)].any()
    for a, b in prov["telluric_bands"]:
        inner = (wl >= a + reach) & (wl <= b - reach)
        assert not on[inner].any()
