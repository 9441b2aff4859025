"""Augmentation: the S/N draw, the one noise model, masks, gaps, continuum errors, normalization."""

import math

import pytest
import torch

from specutils_cinn.training import TrainingConfig, augment_batch, renormalize_batch
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid


def _grid(npix=2000, step=0.25):
    return WavelengthGrid((GridSegment("A", 5000.0, 5000.0 + (npix - 1) * step, step),))


@pytest.mark.parametrize("photon_noise", [False, True])
def test_augment_noise_matches_snr_per_angstrom(photon_noise):
    grid = _grid()
    flux = torch.ones(400, grid.npix)
    cfg = TrainingConfig(snr_range=(50.0, 50.0), masked_fraction=0.0, max_gaps=0,
                         photon_noise=photon_noise)
    gen = torch.Generator().manual_seed(0)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    seg = torch.zeros(grid.npix, dtype=torch.long)
    noisy, sigma, valid = augment_batch(flux, pw, seg, cfg, gen)
    # S/N 50 per Angstrom at 0.25 A pixels is S/N 25 per pixel.
    assert valid.all()
    assert float((noisy - 1).std()) == pytest.approx(1 / 25, rel=0.02)
    assert float(sigma.median()) == pytest.approx(1 / 25, rel=0.02)


def test_augment_sigma_does_not_leak_noise_free_flux():
    # With photon noise the reported sigma comes from the noisy flux: two spectra with the
    # same noisy flux but different noise-free flux cannot be told apart from sigma.
    grid = _grid(npix=50)
    flux = torch.full((2000, grid.npix), 0.5)
    cfg = TrainingConfig(snr_range=(100.0, 100.0), masked_fraction=0.0, max_gaps=0)
    gen = torch.Generator().manual_seed(1)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    noisy, sigma, _ = augment_batch(flux, pw, torch.zeros(grid.npix, dtype=torch.long), cfg, gen)
    snr_pix = 100.0 * 0.5
    assert torch.allclose(sigma, torch.sqrt(noisy) / snr_pix)


def test_augment_masks_and_gaps():
    grid = _grid()
    cfg = TrainingConfig(masked_fraction=0.1, max_gaps=2, max_gap_fraction=0.05)
    gen = torch.Generator().manual_seed(2)
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    _, _, valid = augment_batch(torch.ones(500, grid.npix), pw,
                                torch.zeros(grid.npix, dtype=torch.long), cfg, gen)
    lost = 1 - valid.float().mean(dim=1)
    assert 0 < float(lost.mean()) < 0.1 + 2 * 0.05
    assert float(lost.max()) <= 0.1 * 1.2 + 2 * 0.05 + 0.01
    assert float(lost.min()) < 0.02  # some spectra are nearly untouched


def test_renormalize_batch_applies_the_model_convention():
    grid = _grid(npix=400)
    x = torch.linspace(-1, 1, grid.npix)
    flux = (2.0 + 0.5 * x)[None, :].repeat(8, 1)  # a sloped, unnormalized continuum
    sigma = torch.full_like(flux, 0.01)
    valid = torch.ones_like(flux, dtype=torch.bool)
    same = renormalize_batch(flux, sigma, valid, grid, {"kind": "continuum"})
    assert same[0] is flux
    f, s, v = renormalize_batch(flux, sigma, valid, grid,
                                {"kind": "pseudo-continuum", "degree": 3, "n_iter": 5})
    assert v.all()
    torch.testing.assert_close(f, torch.ones_like(f), atol=1e-6, rtol=0)
    torch.testing.assert_close(s, sigma / flux, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# augment_batch is bit-identical to the code the bundled models were trained with
# --------------------------------------------------------------------------------------------
def _augment_batch_before(flux, pixel_width, segment_index, config, generator):
    """``training.augment_batch`` as it was before the noise moved to ``instruments.draw_noise``
    (commit cd06014), verbatim: the reference of the bit-identity test below."""
    b, npix = flux.shape
    dev = flux.device

    def uniform(*shape):
        return torch.rand(*shape, generator=generator, device=dev)

    lo, hi = config.snr_range
    snr_aa = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * uniform(b, 1))
    snr_pix = snr_aa * torch.sqrt(pixel_width)[None, :]
    obs = flux
    if config.continuum_error > 0:
        n_seg = int(segment_index.max()) + 1
        x = torch.linspace(-1.0, 1.0, npix, device=dev)
        coef = config.continuum_error * torch.randn(b, n_seg, 2, generator=generator, device=dev)
        tilt = 1.0 + coef[:, segment_index, 0] + coef[:, segment_index, 1] * x[None, :]
        obs = obs * tilt
    if config.photon_noise:
        true_sigma = torch.sqrt(obs.clamp(min=0.01)) / snr_pix
        noisy = obs + true_sigma * torch.randn(b, npix, generator=generator, device=dev)
        sigma = torch.sqrt(noisy.clamp(min=0.01)) / snr_pix
    else:
        sigma = (1.0 / snr_pix).expand(b, npix)
        noisy = obs + sigma * torch.randn(b, npix, generator=generator, device=dev)
    valid = uniform(b, npix) >= config.masked_fraction * uniform(b, 1)
    if config.max_gaps > 0 and config.max_gap_fraction > 0:
        max_len = max(1, int(config.max_gap_fraction * npix))
        n_gaps = torch.randint(0, config.max_gaps + 1, (b,), generator=generator, device=dev)
        pix = torch.arange(npix, device=dev)
        for g in range(config.max_gaps):
            start = (uniform(b) * npix).long()
            length = (uniform(b) * max_len).long() + 1
            in_gap = (pix[None, :] >= start[:, None]) & (pix[None, :] < (start + length)[:, None])
            valid &= ~(in_gap & (g < n_gaps)[:, None])
    return noisy, sigma, valid


def _two_segment_batch():
    """Six spectra with a moving line (and one negative pixel) on a grid of 0.1 and 0.25 A."""
    grid = WavelengthGrid((GridSegment("A", 5000.0, 5009.9, 0.1),
                           GridSegment("B", 6000.0, 6014.75, 0.25)))
    pw = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    seg = torch.as_tensor(grid.segment_index)
    # every pixel's segment number, as the slices say
    assert seg.dtype == torch.long and torch.equal(seg, torch.cat(
        [torch.full((s.stop - s.start,), i) for i, s in enumerate(grid.segment_slices)]))
    x = torch.arange(grid.npix, dtype=torch.float32)
    center = 30.0 + 7.0 * torch.arange(6)[:, None]
    flux = 1.0 - 0.8 * torch.exp(-0.5 * ((x[None, :] - center) / 3.0) ** 2)
    flux[0, 5] = -0.02
    return flux, pw, seg


#: Settings of the bit-identity test, and what the code before the change gave for them
#: (seed 1234): sums of the noisy flux and of sigma, the number of valid pixels, flux and sigma
#: at pixels (0, 5), (2, 40), (5, 150), and the next uniform number of the generator.
_BEFORE = {
    "photon": (dict(continuum_error=0.01, masked_fraction=0.02, max_gaps=2,
                    max_gap_fraction=0.02),
               920.7620396837592, 108.17598556075245, 937,
               (-0.07694519311189651, 0.7102599740028381, 1.0187482833862305),
               (0.028233524411916733, 0.09643644839525223, 0.013022336177527905),
               0.23728638887405396),
    "constant": (dict(photon_noise=False, masked_fraction=0.05, max_gaps=1,
                      max_gap_fraction=0.1),
                 916.1282871589065, 111.72278264537454, 927,
                 (-0.06262513995170593, 0.808920681476593, 1.0016793012619019),
                 (0.2823352515697479, 0.11442805081605911, 0.012901953421533108),
                 0.8396974205970764),
    "default": ({}, 916.8067470379174, 106.78029034845531, 944,
                (-0.02426251396536827, 0.7840063571929932, 1.0016793012619019),
                (0.028233524411916733, 0.1013193279504776, 0.012912782840430737),
                0.12788158655166626),
}


@pytest.mark.parametrize("case", sorted(_BEFORE))
def test_augment_batch_gives_the_numbers_it_gave_before(case):
    """Moving the noise rule into instruments.draw_noise changed no number for a fixed seed:
    the same tensors, bit for bit, as the code before the change (run here), the same values
    as it gave then (recorded above), and the generator left in the same state."""
    settings, flux_sum, sigma_sum, n_valid, flux_at, sigma_at, next_uniform = _BEFORE[case]
    flux, pw, seg = _two_segment_batch()
    cfg = TrainingConfig(snr_range=(10.0, 500.0), **settings)
    gen = torch.Generator().manual_seed(1234)
    noisy, sigma, valid = augment_batch(flux, pw, seg, cfg, gen)
    ref_gen = torch.Generator().manual_seed(1234)
    ref = _augment_batch_before(flux, pw, seg, cfg, ref_gen)
    assert torch.equal(noisy, ref[0]) and torch.equal(sigma, ref[1])
    assert torch.equal(valid, ref[2])
    assert torch.equal(gen.get_state(), ref_gen.get_state())
    rows, cols = [0, 2, 5], [5, 40, 150]
    assert float(noisy.double().sum()) == pytest.approx(flux_sum, rel=1e-6)
    assert float(sigma.double().sum()) == pytest.approx(sigma_sum, rel=1e-6)
    assert int(valid.sum()) == n_valid
    assert noisy[rows, cols].tolist() == pytest.approx(flux_at, rel=1e-6)
    assert sigma[rows, cols].tolist() == pytest.approx(sigma_at, rel=1e-6)
    assert float(torch.rand(1, generator=gen)) == pytest.approx(next_uniform, rel=1e-7)


def test_segment_dropout_removes_whole_segments_and_nothing_else():
    flux, pw, seg = _two_segment_batch()
    flux = flux.repeat(200, 1)
    cfg = TrainingConfig(masked_fraction=0.0, max_gaps=0, segment_dropout=0.3)
    _, _, valid = augment_batch(flux, pw, seg, cfg, torch.Generator().manual_seed(3))
    per_segment = torch.stack([valid[:, seg == i].all(1) for i in range(int(seg.max()) + 1)]
                              + [~valid[:, seg == i].any(1) for i in range(int(seg.max()) + 1)])
    whole = per_segment[:2] | per_segment[2:]      # each segment all valid or all invalid
    assert whole.all()
    lost = per_segment[2:].sum(0)
    assert int(lost.max()) == 1                    # never more than one segment
    assert 0.25 < float((lost == 1).float().mean()) < 0.35
    for i in range(2):                             # each segment is the one lost sometimes
        assert per_segment[2 + i].any()
    one_segment = TrainingConfig(masked_fraction=0.0, max_gaps=0, segment_dropout=1.0)
    _, _, valid = augment_batch(flux[:, :100], pw[:100], torch.zeros(100, dtype=torch.long),
                                one_segment, torch.Generator().manual_seed(3))
    assert valid.all()                             # a one-segment grid keeps its segment


def test_range_dropout_keeps_one_contiguous_part():
    flux, pw, seg = _two_segment_batch()
    flux = flux.repeat(400, 1)
    npix = flux.shape[1]
    cfg = TrainingConfig(masked_fraction=0.0, max_gaps=0, range_dropout=0.4,
                         range_keep=(0.3, 0.6))
    _, _, valid = augment_batch(flux, pw, seg, cfg, torch.Generator().manual_seed(5))
    cut = ~valid.all(1)
    assert 0.33 < float(cut.float().mean()) < 0.47
    for row in valid[cut]:
        idx = torch.nonzero(row).flatten()
        assert int(idx[-1] - idx[0]) + 1 == idx.numel()  # one contiguous part
        assert int(0.3 * npix) <= idx.numel() <= int(0.6 * npix)
    starts = torch.stack([torch.nonzero(r).flatten()[0] for r in valid[cut]])
    assert len(set(starts.tolist())) > 20  # positions vary
    # it works on a one-segment grid, where segment_dropout cannot
    one = augment_batch(flux[:, :100], pw[:100], torch.zeros(100, dtype=torch.long), cfg,
                        torch.Generator().manual_seed(5))[2]
    assert (~one.all(1)).any()
    # 0 draws no random numbers: the default's draws are unchanged
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a = augment_batch(flux[:4], pw, seg, TrainingConfig(), g1)
    b = augment_batch(flux[:4], pw, seg, TrainingConfig(range_keep=(0.5, 0.5)), g2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_range_dropout_settings_are_checked():
    with pytest.raises(ValueError, match="range_dropout"):
        TrainingConfig(range_dropout=-0.1)
    for bad in ((0.0, 0.5), (0.6, 0.5), (0.5, 1.5), (0.5,)):
        with pytest.raises(ValueError, match="range_keep"):
            TrainingConfig(range_keep=bad)
    assert TrainingConfig(range_keep=[0.2, 0.4]).range_keep == (0.2, 0.4)


def test_segment_dropout_must_be_a_probability():
    with pytest.raises(ValueError, match="segment_dropout"):
        TrainingConfig(segment_dropout=1.5)
