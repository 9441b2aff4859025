"""Tests of the 4MOST setups and of `degrade` / `bin_average`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from specutils_cinn.instruments import (
    FOURMOST_HR,
    FOURMOST_HR_RESOLVING_POWER,
    FOURMOST_LR,
    FOURMOST_LR_RESOLVING_POWER,
    InstrumentSetup,
    LinearResolvingPower,
    bin_average,
    degrade,
    fourmost_setup,
    gaussian_lsf_broaden,
    rotational_broaden,
)
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def test_low_resolution_grid():
    assert FOURMOST_LR.npix == 23201
    assert FOURMOST_LR.medium == "air"
    (seg,) = FOURMOST_LR.segments
    assert (seg.name, seg.start, seg.stop, seg.step) == ("LJ", 3700.0, 9500.0, 0.25)
    wave = FOURMOST_LR.wavelength.value
    assert wave[0] == 3700.0 and wave[-1] == pytest.approx(9500.0)
    np.testing.assert_allclose(np.diff(wave), 0.25)


def test_high_resolution_grid_has_three_separate_arms():
    assert FOURMOST_HR.medium == "air"
    assert [s.name for s in FOURMOST_HR.segments] == ["HB", "HG", "HR"]
    assert [(s.start, s.stop) for s in FOURMOST_HR.segments] == [
        (3926.0, 4355.0),
        (5160.0, 5730.0),
        (6100.0, 6790.0),
    ]
    assert [s.npix for s in FOURMOST_HR.segments] == [8581, 11401, 13801]
    assert FOURMOST_HR.npix == 8581 + 11401 + 13801
    np.testing.assert_allclose(FOURMOST_HR.pixel_width, 0.05)
    wave = FOURMOST_HR.wavelength.value
    jumps = np.flatnonzero(np.diff(wave) > 1.0)  # never stitched: no pixels between arms
    np.testing.assert_array_equal(jumps + 1, [8581, 8581 + 11401])


def test_resolving_powers():
    assert dict(FOURMOST_HR_RESOLVING_POWER) == {"HB": 20000.0, "HG": 20000.0, "HR": 20000.0}
    np.testing.assert_allclose(
        FOURMOST_LR_RESOLVING_POWER(np.array([3700.0, 6600.0, 9500.0])), [4000.0, 5750.0, 7500.0]
    )
    # constant outside the defining range
    np.testing.assert_allclose(FOURMOST_LR_RESOLVING_POWER([3000.0, 10000.0]), [4000.0, 7500.0])
    hr = fourmost_setup("hr")
    r = hr.resolving_power_at([4000.0, 5000.0, 6500.0])
    assert r[0] == 20000.0 and np.isnan(r[1]) and r[2] == 20000.0
    lr = fourmost_setup("LR")
    assert lr.resolving_power_at(3700.0 + 5800.0 * 0.5) == pytest.approx(5750.0)


@pytest.mark.parametrize(
    ("name", "step", "sizes"),
    [
        ("hr", None, [8581, 11401, 13801]),
        ("hr", 0.1, [4291, 5701, 6901]),
        ("lr", None, [23201]),
        ("lr", 0.5, [11601]),
    ],
)
def test_fourmost_setup_sampling(name, step, sizes):
    setup = fourmost_setup(name, step=step)
    assert [s.npix for s in setup.grid.segments] == sizes
    assert setup.name == f"4MOST-{name.upper()}"
    assert setup.grid.medium == "air"
    for seg in setup.grid.segments:
        assert seg.step == (step or (0.05 if name == "hr" else 0.25))


def test_fourmost_setup_with_a_step_that_does_not_divide_the_range():
    setup = fourmost_setup("hr", step=0.3)
    for seg, native in zip(setup.grid.segments, FOURMOST_HR.segments, strict=True):
        assert seg.start == native.start
        assert native.stop - 0.3 < seg.stop <= native.stop
        np.testing.assert_allclose(np.diff(seg.centers), 0.3)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), "fine", 1000.0])
def test_fourmost_setup_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="step"):
        fourmost_setup("hr", step=bad)


def test_fourmost_setup_rejects_unknown_modes():
    with pytest.raises(ValueError, match="'hr' or 'lr'"):
        fourmost_setup("mr")


def test_instrument_setup_round_trip_and_validation():
    for setup in (fourmost_setup("hr", 0.1), fourmost_setup("lr")):
        d = json.loads(json.dumps(setup.to_dict()))
        again = InstrumentSetup.from_dict(d)
        assert again.grid == setup.grid
        assert dict(again.resolving_power) == dict(setup.resolving_power)
    grid = WavelengthGrid((GridSegment("A", 5000.0, 5100.0, 0.1),))
    one = InstrumentSetup("x", grid, 12000)
    assert dict(one.resolving_power) == {"A": 12000.0}
    with pytest.raises(ValueError, match="every grid segment"):
        InstrumentSetup("x", grid, {"B": 1000.0})
    with pytest.raises(ValueError, match="positive"):
        InstrumentSetup("x", grid, -5.0)
    with pytest.raises(TypeError, match="WavelengthGrid"):
        InstrumentSetup("x", "grid", 5.0)
    with pytest.raises(TypeError, match="cannot be serialized"):
        InstrumentSetup("x", grid, lambda w: 1000.0 + 0 * w).to_dict()
    with pytest.raises(ValueError, match="LinearResolvingPower"):
        LinearResolvingPower(5000.0, 4000.0, 1000.0, 2000.0)
    with pytest.raises(ValueError, match="missing"):
        InstrumentSetup.from_dict({"name": "x"})


# ---------------------------------------------------------------------------------------------
# bin_average
# ---------------------------------------------------------------------------------------------
def test_bin_average_is_exact_for_piecewise_linear_input():
    rng = np.random.default_rng(5)
    wave = np.sort(rng.uniform(5000.0, 5010.0, 400))
    flux = rng.normal(1.0, 0.1, (3, wave.size))
    edges = np.linspace(5001.0, 5009.0, 81)
    out = bin_average(wave, flux, edges)
    fine = np.linspace(5000.0, 5010.0, 200001)
    for i in range(3):
        f = np.interp(fine, wave, flux[i])
        for k in (0, 37, 79):
            sel = (fine >= edges[k]) & (fine <= edges[k + 1])
            want = np.trapezoid(f[sel], fine[sel]) / (edges[k + 1] - edges[k])
            assert out[i, k] == pytest.approx(want, abs=2e-4)
    # flux conservation over the whole binned range
    total = (out * np.diff(edges)).sum(axis=1)
    ref = [
        np.trapezoid(
            np.interp(fine, wave, flux[i])[(fine >= 5001) & (fine <= 5009)],
            fine[(fine >= 5001) & (fine <= 5009)],
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(total, ref, atol=1e-3)
    # a straight line is averaged to its value at the bin center
    line = 2.0 + 0.3 * (wave - 5000.0)
    center = 0.5 * (edges[1:] + edges[:-1])
    np.testing.assert_allclose(bin_average(wave, line, edges), 2.0 + 0.3 * (center - 5000.0))
    with pytest.raises(ValueError, match="not covered"):
        bin_average(wave, flux, np.linspace(4990.0, 5005.0, 11))


# ---------------------------------------------------------------------------------------------
# degrade
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hr_input():
    wave = np.arange(3900.0, 6800.0, 0.01)
    centers = [4100.0, 5500.0, 6500.0]
    flux = np.ones((2, wave.size))
    for c in centers:
        flux *= 1.0 - 0.5 * np.exp(-0.5 * ((wave - c) / 0.03) ** 2)
    return wave, flux, centers


def test_degrade_to_high_resolution(hr_input):
    wave, flux, centers = hr_input
    setup = fourmost_setup("hr", step=0.05)
    out = degrade(wave, torch.from_numpy(flux).float(), setup)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (2, setup.grid.npix)
    out = out.double().numpy()
    grid_wave = setup.grid.wavelength.value
    for c in centers:
        sel = np.abs(grid_wave - c) < 3.0
        w, f = grid_wave[sel], out[0, sel]
        d = 1 - f
        # equivalent width (sum over pixels, flux-conserving binning) is preserved
        ew_in = np.trapezoid(1 - flux[0], wave) / len(centers)
        assert (d.sum() * 0.05) == pytest.approx(ew_in, rel=0.005)
        # FWHM: line, LSF and the pixel box (variance step**2 / 12) add in quadrature
        expected = math.sqrt(
            (0.03 * FWHM_PER_SIGMA) ** 2 + (c / 20000.0) ** 2 + FWHM_PER_SIGMA**2 * 0.05**2 / 12
        )
        half = 0.5 * d.max()
        above = np.flatnonzero(d >= half)
        lo, hi = above[0], above[-1]
        xl = np.interp(half, [d[lo - 1], d[lo]], [w[lo - 1], w[lo]])
        xr = np.interp(half, [d[hi + 1], d[hi]], [w[hi + 1], w[hi]])
        assert xr - xl == pytest.approx(expected, rel=0.02)
    np.testing.assert_allclose(out[1], out[0], atol=1e-6)
    far = np.abs(grid_wave[:, None] - np.array(centers)[None]).min(axis=1) > 3.0
    np.testing.assert_allclose(out[0, far], 1.0, atol=1e-6)


def test_degrade_matches_the_step_by_step_pipeline(hr_input):
    wave, flux, _ = hr_input
    sel = (wave > 6090.0) & (wave < 6800.0)
    wave, flux = wave[sel], flux[:, sel]
    grid = WavelengthGrid((GridSegment("HR", 6100.0, 6790.0, 0.1),))
    setup = InstrumentSetup("red", grid, 15000.0)
    vsini = np.array([0.0, 25.0])
    out = degrade(wave, flux, setup, vsini=vsini)
    ref = rotational_broaden(wave, flux, vsini)
    ref = gaussian_lsf_broaden(wave, ref, 15000.0)
    ref = bin_average(wave, ref, grid.segments[0].edges)
    np.testing.assert_allclose(out, ref, atol=2e-4)
    linear = degrade(wave, flux, setup, vsini=vsini, resample="linear")
    np.testing.assert_allclose(linear, ref, atol=5e-3)


def test_degrade_low_resolution_with_variable_resolving_power():
    wave = np.arange(3690.0, 9510.0, 0.05)
    centers = np.array([3900.0, 6600.0, 9300.0])
    flux = np.ones(wave.size)
    for c in centers:
        flux *= 1.0 - 0.5 * np.exp(-0.5 * ((wave - c) / 0.1) ** 2)
    setup = fourmost_setup("lr")
    out = degrade(wave, flux, setup)
    assert out.shape == (23201,)
    gw = setup.grid.wavelength.value
    for c in centers:
        sel = np.abs(gw - c) < 6.0
        d = 1 - out[sel]
        sigma2 = np.sum(d * (gw[sel] - c) ** 2) / d.sum()
        r = float(FOURMOST_LR_RESOLVING_POWER(c))
        want = 0.1**2 + (c / r / FWHM_PER_SIGMA) ** 2 + 0.25**2 / 12
        assert sigma2 == pytest.approx(want, rel=0.03)
        assert d.sum() * 0.25 == pytest.approx(0.5 * 0.1 * math.sqrt(2 * math.pi), rel=0.005)


def test_degrade_input_resolving_power_is_subtracted_in_quadrature():
    wave = np.arange(5150.0, 5740.0, 0.01)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wave - 5400.0) / 0.02) ** 2)
    grid = WavelengthGrid((GridSegment("HG", 5160.0, 5730.0, 0.05),))
    setup = InstrumentSetup("green", grid, 20000.0)
    pre = gaussian_lsf_broaden(wave, flux, 50000.0)
    a = degrade(wave, pre, setup, input_resolving_power=50000.0)
    b = degrade(wave, flux, setup)
    np.testing.assert_allclose(a, b, atol=2e-3)
    with pytest.raises(ValueError, match="input_resolving_power"):
        degrade(wave, flux, setup, input_resolving_power=10000.0)


def test_degrade_errors():
    wave = np.arange(5000.0, 5800.0, 0.01)
    flux = np.ones(wave.size)
    with pytest.raises(ValueError, match="does not cover segment 'HB'"):
        degrade(wave, flux, fourmost_setup("hr"))
    with pytest.raises(TypeError, match="InstrumentSetup"):
        degrade(wave, flux, FOURMOST_HR)
    grid = WavelengthGrid((GridSegment("HG", 5160.0, 5730.0, 0.05),))
    setup = InstrumentSetup("green", grid, 20000.0)
    with pytest.raises(ValueError, match="resample"):
        degrade(wave, flux, setup, resample="cubic")
    with pytest.raises(ValueError, match="vmacro"):
        degrade(wave, flux, setup, vmacro=-1.0)
