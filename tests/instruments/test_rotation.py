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
