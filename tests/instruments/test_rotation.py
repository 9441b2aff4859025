"""Rotation and Doppler shift of binned spectra in torch (`instruments.rotation.BinnedRotation`)."""

import numpy as np
import pytest
import torch

from specutils_cinn.instruments import InstrumentSetup, degrade
from specutils_cinn.instruments.rotation import BinnedRotation
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

C_KMS = 299792.458
R = 20000.0
LINES = (5005.0, 5012.3, 5020.1, 5031.7, 5040.4)


def _grid():
    return WavelengthGrid((GridSegment("A", 5000.0, 5049.9, 0.1),))


def _highres(depths, width=0.03):
    """Gaussian absorption lines at 0.005 A sampling (4990-5060 A)."""
    wave = np.arange(4990.0, 5060.0, 0.005)
    tau = sum(d * np.exp(-0.5 * ((wave - c) / width) ** 2)
              for d, c in zip(depths, LINES, strict=False))
    return wave, np.exp(-tau)


def _binned(vsini):
    wave, flux = _highres([0.9, 0.4, 1.5, 0.7, 0.2])
    setup = InstrumentSetup("test", _grid(), R)
    return degrade(wave, flux[None, :].repeat(len(vsini), 0), setup, vsini=np.asarray(vsini))


def test_rotation_matches_degrade_and_keeps_vsini0_exact():
    v = np.array([0.0, 5.0, 10.0, 25.0, 50.0])
    base = torch.from_numpy(_binned(np.zeros(v.size)).astype(np.float32))
    ref = _binned(v)
    rot = BinnedRotation(_grid())
    out = rot(base, torch.as_tensor(v)).numpy()
    inner = slice(20, -20)  # away from the segment ends (> lambda vsini / c)
    err = np.abs(out - ref)[:, inner]
    assert np.percentile(err, 99) < 1e-3 and err.max() < 3e-3
    assert np.array_equal(out[0], base[0].numpy())  # vsini = 0: bit for bit
    # the rotated lines are clearly broader than the input: the test can fail
    assert np.abs(out[4] - base[4].numpy())[inner].max() > 0.05


def test_rotation_conserves_equivalent_width_and_adds_analytic_variance():
    eps = 0.6
    wave, flux = _highres([0.8], width=0.05)
    setup = InstrumentSetup("test", _grid(), R)
    base = torch.from_numpy(degrade(wave, flux, setup)[None, :])
    rot = BinnedRotation(_grid(), limb_darkening=eps)
    lam = _grid().wavelength.value
    near = np.abs(lam - LINES[0]) < 3.0

    def moments(f):
        d = (1.0 - f)[near]
        ew = d.sum() * 0.1
        c = (d * lam[near]).sum() / d.sum()
        return ew, c, (d * (lam[near] - c) ** 2).sum() / d.sum()

    ew0, c0, var0 = moments(base[0].numpy())
    x2 = ((1 - eps) / 4 + 2 * eps / 15) / (1 - eps / 3)  # <x^2> of Gray's profile
    for v in (10.0, 30.0):
        out = rot(base, torch.tensor([v]))[0].numpy()
        ew, c, var = moments(out)
        assert ew == pytest.approx(ew0, rel=1e-3)
        assert c == pytest.approx(c0, abs=1e-4)
        expected = x2 * (LINES[0] * v / C_KMS) ** 2
        assert var - var0 == pytest.approx(expected, rel=0.03)


def test_radial_velocity_moves_a_line():
    wave, flux = _highres([0.8], width=0.05)
    base = torch.from_numpy(degrade(wave, flux, InstrumentSetup("t", _grid(), R))[None, :])
    lam = _grid().wavelength.value
    rot = BinnedRotation(_grid(), max_shift=50.0)

    def centroid(f):
        d = (1.0 - f) * (np.abs(lam - LINES[0]) < 3.0)
        return (d * lam).sum() / d.sum()

    c0 = centroid(base[0].numpy())
    for rv in (-20.0, 3.0, 30.0):
        out = rot(base.repeat(2, 1), torch.tensor([0.0, 15.0]), torch.tensor([rv, rv])).numpy()
        for row in out:
            assert centroid(row) - c0 == pytest.approx(LINES[0] * rv / C_KMS, abs=2e-3)


def test_rotation_rejects_bad_input():
    rot = BinnedRotation(_grid(), max_vsini=30.0)
    with pytest.raises(ValueError, match="vsini"):
        rot(torch.ones(1, _grid().npix), torch.tensor([40.0]))
    with pytest.raises(ValueError, match="shape"):
        rot(torch.ones(1, 10), torch.tensor([1.0]))


# --------------------------------------------------------------------------------------------
# macroturbulence
# --------------------------------------------------------------------------------------------
def _binned_broadened(vsini, vmacro, kind="radial-tangential"):
    wave, flux = _highres([0.9, 0.4, 1.5, 0.7, 0.2])
    setup = InstrumentSetup("test", _grid(), R)
    return degrade(wave, flux[None, :].repeat(len(vsini), 0), setup, vsini=np.asarray(vsini),
                   vmacro=np.asarray(vmacro), macroturbulence=kind)


def test_macroturbulence_matches_degrade_and_a_wrong_profile_fails():
    vs = np.array([0.0, 0.0, 0.0, 0.0, 10.0, 10.0, 25.0])
    vm = np.array([2.0, 4.0, 6.0, 8.0, 3.0, 8.0, 5.0])
    base = torch.from_numpy(_binned(np.zeros(vs.size)).astype(np.float32))
    rot = BinnedRotation(_grid(), max_vmacro=10.0)
    out = rot(base, torch.as_tensor(vs), vmacro=torch.as_tensor(vm)).numpy()
    inner = slice(20, -20)

    def worst(ref):
        err = np.abs(out - ref)[:, inner]
        return np.percentile(err, 99), err.max()

    p99, top = worst(_binned_broadened(vs, vm))
    assert p99 < 5e-4 and top < 1e-3
    # the tolerance tells the profile and the scale of zeta apart: a Gaussian profile of the
    # same zeta, or a radial-tangential one of 1.2 zeta, is far outside it
    assert worst(_binned_broadened(vs, vm, kind="gaussian"))[1] > 5e-3
    assert worst(_binned_broadened(vs, 1.2 * vm))[1] > 3e-3
    # and macroturbulence does change the spectra by much more than the tolerance
    assert np.abs(out - base.numpy())[:4, inner].max(axis=1).min() > 2e-3


def test_macroturbulence_transfer_is_the_transform_of_the_reference_profile():
    from specutils_cinn.instruments import macroturbulence_broaden
    from specutils_cinn.instruments.rotation import _macroturbulence_transfer

    dv, zeta = 0.05, 3.0  # km/s: a fine log-lambda grid, so the pixel integration is negligible
    wave = 5000.0 * np.exp(np.arange(4001) * dv / C_KMS)
    spike = np.zeros(wave.size)
    spike[2000] = 1.0
    kernel = macroturbulence_broaden(wave, spike, zeta, velocity_step=dv)
    freq = np.fft.rfftfreq(wave.size, d=dv)
    ft = np.abs(np.fft.rfft(kernel))
    x = 2.0 * np.pi * freq * zeta
    use = x < 40.0
    assert np.allclose(ft[use], _macroturbulence_transfer(x[use]), atol=2e-4)
    # the Gaussian profile of the same zeta has a clearly different transform
    gauss = np.abs(np.fft.rfft(macroturbulence_broaden(wave, spike, zeta, kind="gaussian",
                                                       velocity_step=dv)))
    assert np.abs(gauss[use] - _macroturbulence_transfer(x[use])).max() > 0.1


def test_no_macroturbulence_changes_nothing():
    base = torch.from_numpy(_binned(np.zeros(4)).astype(np.float32))
    vs, rv = torch.tensor([0.0, 5.0, 20.0, 0.0]), torch.tensor([0.0, 1.0, -3.0, 2.0])
    plain = BinnedRotation(_grid())(base, vs, rv)
    # vmacro None or all zero: the same numbers as rotation alone, bit for bit
    assert torch.equal(BinnedRotation(_grid())(base, vs, rv, vmacro=torch.zeros(4)), plain)
    with_macro = BinnedRotation(_grid(), max_vmacro=8.0)
    assert torch.equal(with_macro(base, vs, rv), with_macro(base, vs, rv, torch.zeros(4)))
    # a row with vsini = 0, vmacro = 0 and no shift is returned as it is
    out = with_macro(base, vs, rv, torch.tensor([0.0, 3.0, 3.0, 3.0]))
    assert torch.equal(out[0], base[0]) and not torch.equal(out[1], plain[1])


def test_macroturbulence_conserves_equivalent_width_and_adds_its_variance():
    wave, flux = _highres([0.8], width=0.05)
    base = torch.from_numpy(degrade(wave, flux, InstrumentSetup("t", _grid(), R))[None, :])
    lam = _grid().wavelength.value
    near = np.abs(lam - LINES[0]) < 3.0

    def moments(f):
        d = (1.0 - f)[near]
        c = (d * lam[near]).sum() / d.sum()
        return d.sum() * 0.1, (d * (lam[near] - c) ** 2).sum() / d.sum()

    ew0, var0 = moments(base[0].numpy())
    rot = BinnedRotation(_grid(), max_vmacro=20.0)
    for zeta in (6.0, 15.0):
        ew, var = moments(rot(base, torch.zeros(1), vmacro=torch.tensor([zeta]))[0].numpy())
        assert ew == pytest.approx(ew0, rel=1e-3)
        # the radial-tangential profile has variance zeta^2 / 4 (a Gaussian one: zeta^2 / 2)
        assert var - var0 == pytest.approx((LINES[0] * zeta / C_KMS) ** 2 / 4.0, rel=0.03)


def test_macroturbulence_rejects_bad_input():
    flux = torch.ones(2, _grid().npix)
    with pytest.raises(ValueError, match=r"vmacro must be finite and in \[0, 0.0\]"):
        BinnedRotation(_grid())(flux, torch.zeros(2), vmacro=torch.tensor([0.0, 3.0]))
    rot = BinnedRotation(_grid(), max_vmacro=10.0)
    for bad in ([-1.0, 0.0], [11.0, 0.0], [float("nan"), 0.0]):
        with pytest.raises(ValueError, match="vmacro must be finite"):
            rot(flux, torch.zeros(2), vmacro=torch.tensor(bad))
    with pytest.raises(ValueError, match="vmacro needs one value per spectrum"):
        rot(flux, torch.zeros(2), vmacro=torch.tensor([1.0]))
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_vmacro"):
            BinnedRotation(_grid(), max_vmacro=bad)


def test_max_vmacro_is_recorded_and_pads_the_segments():
    plain, macro = BinnedRotation(_grid()), BinnedRotation(_grid(), max_vmacro=10.0)
    assert "macroturbulence" not in plain.to_dict()
    assert macro.to_dict()["max_vmacro"] == 10.0
    assert "radial-tangential" in macro.to_dict()["macroturbulence"]
    assert macro._segments[0].pad - plain._segments[0].pad == pytest.approx(
        40.0 / plain._segments[0].dv, abs=1.0)
