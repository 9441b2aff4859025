r"""The noise model: Gaussian noise of a given S/N and the uncertainty a pipeline would report.

`draw_noise` is the one rule, used by training (`specutils_cinn.training.augment_batch`, which
adds the S/N draw, masked pixels, gaps and continuum errors) and by the validation pages alike:
photon-like noise :math:`\sigma_i = \sqrt{\max(f_i, 0.01)} / \mathrm{S/N}_\mathrm{pix}` drawn
from the noise-free flux, and a reported uncertainty computed the same way from the *noisy*
flux, as a reduction pipeline computes it (so the uncertainty carries no information about the
noise-free spectrum). `add_noise` applies it at a S/N per Angstrom and a continuum level.

Signal-to-noise ratios are quoted *per Angstrom*, the convention of the model metadata
(``snr_range``), and converted to per pixel with `snr_per_pixel`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._checks import per_spectrum
from ..wavelength_grid import WavelengthGrid
from ._utils import as_flux, make_generator, restore

__all__ = ["NOISE_FLOOR", "add_noise", "draw_noise", "snr_per_pixel"]

#: Lowest flux (in continuum units) that sets a photon-noise sigma, so that sigma stays positive
#: in saturated line cores and at negative noisy pixels.
NOISE_FLOOR = 0.01


def snr_per_pixel(snr_per_angstrom: Any, pixel_width_angstrom: Any) -> Any:
    r"""Convert a signal-to-noise ratio per Angstrom into one per pixel.

    For uncorrelated noise the S/N of a sum grows as the square root of the number of pixels
    summed, so :math:`\mathrm{S/N}_\mathrm{pix} = \mathrm{S/N}_\mathrm{\AA}\,
    \sqrt{\Delta\lambda_\mathrm{pix} / 1\,\mathrm{\AA}}`.

    Parameters
    ----------
    snr_per_angstrom : float, array-like or `torch.Tensor`
        S/N per Angstrom (non-negative).
    pixel_width_angstrom : float, array-like or `torch.Tensor`
        Pixel width(s) in Angstrom (positive); broadcast against ``snr_per_angstrom``.

    Returns
    -------
    float, `numpy.ndarray` or `torch.Tensor`
        S/N per pixel (a tensor if either input is a tensor).

    Raises
    ------
    ValueError
        If a pixel width is not positive or a S/N is negative.

    Examples
    --------
    >>> from specutils_cinn.instruments import snr_per_pixel
    >>> float(snr_per_pixel(100.0, 0.25))
    50.0
    """
    if isinstance(snr_per_angstrom, torch.Tensor) or isinstance(pixel_width_angstrom, torch.Tensor):
        snr = torch.as_tensor(snr_per_angstrom)
        width = torch.as_tensor(pixel_width_angstrom, device=snr.device)
        if not snr.is_floating_point():
            snr = snr.to(torch.get_default_dtype())
        width = width.to(snr.dtype)
        if bool((width <= 0).any()) or bool((snr < 0).any()):
            raise ValueError("pixel widths must be positive and S/N non-negative")
        return snr * torch.sqrt(width)
    snr_np = np.asarray(snr_per_angstrom, dtype=np.float64)
    width_np = np.asarray(pixel_width_angstrom, dtype=np.float64)
    if np.any(width_np <= 0) or np.any(snr_np < 0):
        raise ValueError("pixel widths must be positive and S/N non-negative")
    out = snr_np * np.sqrt(width_np)
    return float(out) if out.ndim == 0 else out


def draw_noise(
    flux: torch.Tensor,
    snr_pixel: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    photon_noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Add Gaussian noise of a given S/N per pixel: the noise model of training and validation.

    With ``photon_noise`` the noise follows the flux, :math:`\sigma_i = \sqrt{\max(f_i,
    F)} / \mathrm{S/N}_{\mathrm{pix},i}` for the noise-free flux :math:`f` and the floor
    :math:`F` = `NOISE_FLOOR`, and the *reported* uncertainty is the same expression of the
    noisy flux, as a pipeline computes it from the observed counts. Without it the noise is
    :math:`1 / \mathrm{S/N}_\mathrm{pix}` at every pixel and is reported as such. Fluxes are in
    continuum units (the S/N applies at the continuum, 1).

    One ``randn`` draw of ``flux``'s shape, dtype and device is taken from ``generator``.

    Parameters
    ----------
    flux : `torch.Tensor`, shape ``[n_spectra, npix]``
        Noise-free, continuum-normalized flux.
    snr_pixel : `torch.Tensor`
        S/N per pixel at the continuum, broadcastable to ``flux`` (e.g. ``[n_spectra, npix]``
        or ``[n_spectra, 1]``); positive.
    generator : `torch.Generator`, optional
        Source of randomness, on ``flux``'s device (default: torch's global generator).
    photon_noise : bool
        Photon-like noise (True, the default, as the bundled models were trained) or constant
        noise per spectrum.

    Returns
    -------
    noisy : `torch.Tensor`
        ``flux`` plus the noise.
    sigma : `torch.Tensor`
        The reported 1-sigma uncertainty per pixel, shape of ``noisy``.

    Examples
    --------
    >>> import torch
    >>> from specutils_cinn.instruments import draw_noise
    >>> flux = torch.ones(2, 5)
    >>> noisy, sigma = draw_noise(flux, torch.full((2, 1), 100.0), torch.Generator().manual_seed(0),
    ...                           photon_noise=False)
    >>> round(float(sigma[0, 0]), 6)
    0.01
    """
    noise = torch.randn(flux.shape, generator=generator, device=flux.device, dtype=flux.dtype)
    if photon_noise:
        noisy = flux + torch.sqrt(flux.clamp(min=NOISE_FLOOR)) / snr_pixel * noise
        sigma = torch.sqrt(noisy.clamp(min=NOISE_FLOOR)) / snr_pixel
    else:
        sigma = (1.0 / snr_pixel).expand(flux.shape)
        noisy = flux + sigma * noise
    return noisy, sigma


def add_noise(
    flux: Any,
    snr_per_angstrom: Any,
    pixel_width: Any,
    generator: torch.Generator | int | None = None,
    *,
    photon_noise: bool = False,
    continuum: float = 1.0,
) -> tuple[Any, Any]:
    r"""Add Gaussian noise of a given S/N per Angstrom to each spectrum (`draw_noise`).

    Parameters
    ----------
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Noise-free spectra (float32 or float64).
    snr_per_angstrom : float or array-like, shape ``[n_spectra]``
        S/N per Angstrom of each spectrum at the continuum level (finite, positive).
    pixel_width : float, array-like or `~specutils_cinn.wavelength_grid.WavelengthGrid`
        Pixel widths in Angstrom, shape ``[npix]`` (a grid gives its ``pixel_width``).
    generator : `torch.Generator` or int, optional
        Random generator (on the flux's device) or a seed. Default: torch's global generator.
    photon_noise : bool
        False (default): the same noise at every pixel,
        :math:`\sigma = C / \mathrm{S/N}_\mathrm{pix}` with ``continuum`` :math:`C`.
        True: the training noise model of `draw_noise`, photon-like noise
        :math:`\sqrt{C\,\max(f_i, 0.01\,C)} / \mathrm{S/N}_\mathrm{pix}` and a reported
        ``sigma`` computed the same way from the *noisy* flux.
    continuum : float
        Continuum level at which the S/N applies (1 for normalized spectra).

    Returns
    -------
    noisy : same type as ``flux``
        ``flux`` plus the noise.
    sigma : same type as ``flux``
        Reported per-pixel standard deviation, shape ``[n_spectra, npix]`` (or ``[npix]``).
    """
    f, was_numpy, was_1d = as_flux(flux)
    n, m = f.shape
    snr = torch.from_numpy(per_spectrum(snr_per_angstrom, n, "snr_per_angstrom", allow_zero=False))
    width = _pixel_widths(pixel_width, m)
    if not (math.isfinite(continuum) and continuum > 0):
        raise ValueError(f"continuum must be positive, got {continuum}")
    snr_pix = (snr[:, None] * torch.sqrt(torch.from_numpy(width))[None, :]).to(f.device, f.dtype)
    gen = make_generator(generator, f.device)
    noisy, sigma = draw_noise(f / continuum, snr_pix, gen, photon_noise=photon_noise)
    noisy, sigma = noisy * continuum, sigma * continuum
    return restore(noisy, was_numpy, was_1d), restore(sigma, was_numpy, was_1d)


def _pixel_widths(pixel_width: Any, m: int) -> np.ndarray:
    if isinstance(pixel_width, WavelengthGrid):
        width = pixel_width.pixel_width
    elif isinstance(pixel_width, torch.Tensor):
        width = pixel_width.detach().cpu().numpy().astype(np.float64)
    else:
        width = np.asarray(pixel_width, dtype=np.float64)
    width = np.broadcast_to(width, (m,)) if width.ndim == 0 else width
    if width.shape != (m,):
        raise ValueError(f"pixel_width must be a scalar or have shape ({m},), got {width.shape}")
    if not np.all(np.isfinite(width)) or np.any(width <= 0):
        raise ValueError("pixel widths must be finite and positive")
    return np.ascontiguousarray(width)
