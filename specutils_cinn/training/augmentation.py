"""Noise-free training spectra to observed-like ones: fresh noise, masks, gaps and continuum errors.

Every optimization step draws, for each spectrum of the batch, a S/N (log-uniform over
``snr_range``, per Angstrom), Gaussian noise with the package's one noise model
(`specutils_cinn.instruments.draw_noise`, the same the validation pages use), randomly masked
pixels and gaps, and optionally a smooth multiplicative continuum error (`augment_batch`),
and masks the model's poorly modeled pixels (`~specutils_cinn.inputs.PixelMask`) with the
function the estimator uses (`~specutils_cinn.inputs.mask_pixels`); `renormalize_batch` then
applies the model's input normalization, as the estimator does to observed spectra.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..inputs.normalization import Normalization
from ..inputs.pixel_mask import mask_pixels
from ..instruments import draw_noise
from ..wavelength_grid import WavelengthGrid
from .config import TrainingConfig

__all__ = ["augment_batch", "renormalize_batch"]


def augment_batch(
    flux: torch.Tensor,
    pixel_width: torch.Tensor,
    segment_index: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    masked: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn noise-free spectra into observed-like ones.

    In this order, from ``generator``: a S/N per Angstrom per spectrum (log-uniform over
    ``config.snr_range``); with ``config.continuum_error``, a linear multiplicative error per
    segment; the noise and the reported uncertainty (`specutils_cinn.instruments.draw_noise`,
    photon-like or constant by ``config.photon_noise``); isolated masked pixels (a fraction up
    to ``config.masked_fraction``) and up to ``config.max_gaps`` contiguous gaps; with
    ``config.segment_dropout``, a whole segment (one of at least two, chosen uniformly) of that
    fraction of the spectra is made invalid, as for a missing spectrograph arm; with
    ``config.range_dropout``, that fraction of the spectra keeps only one contiguous part of
    the grid (a fraction of its pixels drawn uniformly in ``config.range_keep``, at a uniform
    position), as for an instrument that covers less of the range. Last, the
    model's masked pixels ``masked`` are made invalid in every spectrum
    (`~specutils_cinn.inputs.mask_pixels`, as the estimator does); they draw no random numbers,
    so a mask does not change the other draws.

    Parameters
    ----------
    flux : Tensor, shape (B, npix)
        Noise-free normalized flux.
    pixel_width : Tensor, shape (npix,)
        Pixel widths in Angstrom.
    segment_index : Tensor, shape (npix,)
        Segment number of each pixel (continuum errors are drawn per segment).
    config : TrainingConfig
        Augmentation settings.
    generator : `torch.Generator`
        Source of randomness (on the device of ``flux``).
    masked : Tensor of bool, shape (npix,), optional
        The model's masked pixels (`~specutils_cinn.inputs.PixelMask.on_grid`), on the device
        of ``flux``; None masks nothing.

    Returns
    -------
    flux, sigma : Tensor, shape (B, npix)
        Noisy flux and its 1-sigma uncertainty.
    valid : Tensor of bool, shape (B, npix)
        False for masked pixels, gaps and the pixels of ``masked``.
    """
    b, npix = flux.shape
    dev = flux.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev)

    lo, hi = config.snr_range
    snr_aa = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * uniform(b, 1))
    snr_pix = snr_aa * torch.sqrt(pixel_width)[None, :]
    obs = flux
    n_seg = int(segment_index.max()) + 1
    if config.continuum_error > 0:
        x = torch.linspace(-1.0, 1.0, npix, device=dev)
        coef = config.continuum_error * torch.randn(b, n_seg, 2, generator=generator, device=dev)
        tilt = 1.0 + coef[:, segment_index, 0] + coef[:, segment_index, 1] * x[None, :]
        obs = obs * tilt
    noisy, sigma = draw_noise(obs, snr_pix, generator, photon_noise=config.photon_noise)
    valid = uniform(b, npix) >= config.masked_fraction * uniform(b, 1)
    if config.max_gaps > 0 and config.max_gap_fraction > 0:
        max_len = max(1, int(config.max_gap_fraction * npix))
        n_gaps = torch.randint(0, config.max_gaps + 1, (b,), generator=generator, device=dev)
        pix = torch.arange(npix, device=dev)
        for g in range(config.max_gaps):
            start = (uniform(b) * npix).long()
            length = (uniform(b) * max_len).long() + 1
            valid &= ~(_within(pix, start, length) & (g < n_gaps)[:, None])
    if config.segment_dropout > 0 and n_seg > 1:
        drop = uniform(b) < config.segment_dropout
        which = torch.randint(0, n_seg, (b,), generator=generator, device=dev)
        valid &= ~(drop[:, None] & (segment_index[None, :] == which[:, None]))
    if config.range_dropout > 0:
        cut = uniform(b) < config.range_dropout
        low, high = config.range_keep
        length = ((low + (high - low) * uniform(b)) * npix).long().clamp(1, npix)
        start = (uniform(b) * (npix - length + 1)).long()
        kept = _within(torch.arange(npix, device=dev), start, length)
        valid &= kept | ~cut[:, None]
    return noisy, sigma, mask_pixels(valid, masked)


def _within(pix: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """``[B, npix]``: pixel ``pix`` lies in ``[start, start + length)`` of each row."""
    return (pix[None, :] >= start[:, None]) & (pix[None, :] < (start + length)[:, None])


def renormalize_batch(
    flux: torch.Tensor,
    sigma: torch.Tensor,
    valid: torch.Tensor,
    grid: WavelengthGrid,
    normalization: Normalization | Mapping[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the model's input normalization to augmented (noisy) training spectra.

    For the kind ``"pseudo-continuum"`` the noisy spectra are divided by the same clipped
    polynomial continuum (`specutils_cinn.inputs.Normalization.apply`) that the estimator
    fits to observed spectra, so training and inference see the same convention, noise
    included (a clipped fit to a noisy spectrum sits slightly higher than one to the noise-free
    spectrum). Other kinds are returned unchanged.

    Parameters
    ----------
    flux, sigma : Tensor, shape (B, npix)
        Noisy flux and its uncertainty.
    valid : Tensor of bool, shape (B, npix)
        Usable pixels.
    grid : `~specutils_cinn.wavelength_grid.WavelengthGrid`
        The model grid (one continuum per segment).
    normalization : `~specutils_cinn.inputs.Normalization` or dict
        The model's normalization convention (``kind``, ``degree``, ``n_iter``).

    Returns
    -------
    flux, sigma, valid : Tensor
        Normalized flux and uncertainty (NaN where the fit failed) and the updated mask.
    """
    norm = (normalization if isinstance(normalization, Normalization)
            else Normalization.from_dict(normalization))
    if not norm.fits_continuum:
        return flux, sigma, valid
    f, s, v = norm.apply(flux.cpu().numpy(), sigma.cpu().numpy(), valid.cpu().numpy(), grid)
    dev = flux.device
    return (torch.as_tensor(f, dtype=flux.dtype, device=dev),
            torch.as_tensor(s, dtype=sigma.dtype, device=dev),
            torch.as_tensor(v, device=dev))
