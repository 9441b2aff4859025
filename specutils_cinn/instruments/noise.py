r"""Observational effects for training-set augmentation: noise, masked pixels, continuum errors.

Everything is vectorised over a batch of spectra ``[n_spectra, npix]`` and drawn with an optional
`torch.Generator` (or an integer seed) so that augmentation is reproducible. Signal-to-noise
ratios are quoted *per Angstrom*, the convention of the model metadata (``snr_range``), and
converted to per pixel with `snr_per_pixel`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._checks import per_spectrum
from ..grid import WavelengthGrid
from ._utils import as_flux, as_wave, make_generator, restore

__all__ = ["add_noise", "continuum_distortion", "random_masks", "snr_per_pixel"]


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


def add_noise(
    flux: Any,
    snr_per_angstrom: Any,
    pixel_width: Any,
    generator: torch.Generator | int | None = None,
    *,
    photon_noise: bool = False,
    continuum: float = 1.0,
) -> tuple[Any, Any]:
    r"""Add Gaussian noise of a given S/N per Angstrom to each spectrum.

    Parameters
    ----------
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Noise-free spectra (float32 or float64).
    snr_per_angstrom : float or array-like, shape ``[n_spectra]``
        S/N per Angstrom of each spectrum at the continuum level (finite, positive).
    pixel_width : float, array-like of shape ``[npix]``, or `~specutils_cinn.grid.WavelengthGrid`
        Pixel widths in Angstrom (a grid gives its ``pixel_width``).
    generator : `torch.Generator` or int, optional
        Random generator (on the flux's device) or a seed. Default: torch's global generator.
    photon_noise : bool
        False (default): the same noise at every pixel,
        :math:`\sigma = C / \mathrm{S/N}_\mathrm{pix}` with ``continuum`` :math:`C`.
        True: photon-noise-like scaling, :math:`\sigma_i = \sqrt{C\,\max(f_i, 10^{-4} C)} /
        \mathrm{S/N}_\mathrm{pix}`, so line cores are less noisy; the floor keeps
        :math:`\sigma > 0`.
    continuum : float
        Continuum level at which the S/N applies (1 for normalised spectra).

    Returns
    -------
    noisy : same type as ``flux``
        ``flux + sigma * N(0, 1)``.
    sigma : same type as ``flux``
        Per-pixel standard deviation used, shape ``[n_spectra, npix]`` (or ``[npix]``).
    """
    f, was_numpy, was_1d = as_flux(flux)
    n, m = f.shape
    snr = torch.from_numpy(per_spectrum(snr_per_angstrom, n, "snr_per_angstrom", allow_zero=False))
    width = _pixel_widths(pixel_width, m)
    if not (math.isfinite(continuum) and continuum > 0):
        raise ValueError(f"continuum must be positive, got {continuum}")
    snr_pix = (snr[:, None] * torch.sqrt(torch.from_numpy(width))[None, :]).to(f.device, f.dtype)
    if photon_noise:
        sigma = torch.sqrt(continuum * f.clamp(min=1e-4 * continuum)) / snr_pix
    else:
        sigma = continuum / snr_pix
    gen = make_generator(generator, f.device)
    noise = torch.randn(f.shape, generator=gen, device=f.device, dtype=f.dtype)
    noisy = f + sigma * noise
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


def random_masks(
    n_spectra: int,
    npix: int,
    fraction_range: tuple[float, float] = (0.0, 0.1),
    n_gaps_range: tuple[int, int] = (0, 3),
    max_gap_pixels: int = 200,
    generator: torch.Generator | int | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw random bad-pixel masks: contiguous gaps plus scattered single pixels.

    For each spectrum a masked fraction ``f`` is drawn uniformly from ``fraction_range`` and a
    number of gaps uniformly from the integers in ``n_gaps_range`` (inclusive). Each gap has a
    length drawn uniformly from ``1..max_gap_pixels`` and a random position; if the gaps add up
    to more than ``round(f * npix)`` pixels, their lengths are scaled down. Scattered single
    pixels (cosmic rays, bad columns) are then masked at random outside the gaps until exactly
    ``round(f * npix)`` pixels are masked (kept within the range where rounding allows).

    Parameters
    ----------
    n_spectra, npix : int
        Shape of the masks.
    fraction_range : tuple of float
        ``(low, high)`` with ``0 <= low <= high <= 1``: range of the total masked fraction.
    n_gaps_range : tuple of int
        ``(low, high)`` number of contiguous gaps per spectrum, inclusive, ``0 <= low <= high``.
    max_gap_pixels : int
        Longest gap in pixels (``>= 1``).
    generator : `torch.Generator` or int, optional
        Random generator (on ``device``) or a seed. Default: torch's global generator.
    device : `torch.device` or str, optional
        Device of the result (default CPU).

    Returns
    -------
    valid : `torch.Tensor` of bool, shape ``[n_spectra, npix]``
        True for usable pixels, False for masked ones.
    """
    n, m = int(n_spectra), int(npix)
    if n < 0 or m < 1:
        raise ValueError(f"need n_spectra >= 0 and npix >= 1, got {n_spectra}, {npix}")
    lo, hi = (float(v) for v in fraction_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"fraction_range must satisfy 0 <= low <= high <= 1, got {fraction_range}")
    g_lo, g_hi = (int(v) for v in n_gaps_range)
    if not 0 <= g_lo <= g_hi:
        raise ValueError(f"n_gaps_range must satisfy 0 <= low <= high, got {n_gaps_range}")
    if int(max_gap_pixels) < 1:
        raise ValueError(f"max_gap_pixels must be >= 1, got {max_gap_pixels}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen = make_generator(generator, dev)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=dev, dtype=torch.float64)

    frac = lo + (hi - lo) * rand(n)
    target = torch.round(frac * m)
    k_lo, k_hi = math.ceil(lo * m - 1e-9), math.floor(hi * m + 1e-9)
    if k_lo <= k_hi:
        target = target.clamp(k_lo, k_hi)
    target = target.long()

    n_gaps = g_lo + torch.floor((g_hi - g_lo + 1) * rand(n)).long().clamp(max=g_hi - g_lo)
    invalid = torch.zeros((n, m), dtype=torch.bool, device=dev)
    if g_hi > 0:
        lengths = 1.0 + torch.floor(int(max_gap_pixels) * rand(n, g_hi)).clamp(
            max=int(max_gap_pixels) - 1
        )
        lengths = lengths.clamp(max=m)
        lengths = lengths * (torch.arange(g_hi, device=dev)[None, :] < n_gaps[:, None])
        total = lengths.sum(dim=1, keepdim=True)
        scale = torch.where(total > 0, (target[:, None] / total.clamp(min=1)).clamp(max=1.0), 1.0)
        lengths = torch.floor(lengths * scale).long()
        starts = torch.floor(rand(n, g_hi) * (m - lengths + 1)).long().clamp(max=m - 1)
        steps = torch.zeros((n, m + 1), dtype=torch.long, device=dev)
        active = (lengths > 0).long()
        steps.scatter_add_(1, starts, active)
        steps.scatter_add_(1, (starts + lengths).clamp(max=m), -active)
        invalid = torch.cumsum(steps[:, :m], dim=1) > 0
    n_scatter = (target - invalid.sum(dim=1)).clamp(min=0)
    scores = rand(n, m).masked_fill(invalid, 2.0)
    order = torch.argsort(scores, dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(m, device=dev).expand(n, m).contiguous())
    invalid = invalid | (rank < n_scatter[:, None])
    return ~invalid


def _legendre(x: np.ndarray, degree: int) -> np.ndarray:
    """Legendre polynomials ``P_0..P_degree`` at ``x``, shape ``[degree + 1, len(x)]``."""
    p = np.empty((degree + 1, x.size))
    p[0] = 1.0
    if degree >= 1:
        p[1] = x
    for k in range(1, degree):
        p[k + 1] = ((2 * k + 1) * x * p[k] - k * p[k - 1]) / (k + 1)
    return p


def continuum_distortion(
    wave: Any,
    n_spectra: int,
    amplitude: float = 0.02,
    degree: int = 3,
    generator: torch.Generator | int | None = None,
    *,
    include_constant: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Draw smooth multiplicative continuum errors from low-order Legendre polynomials.

    Each spectrum gets :math:`d(\lambda) = 1 + \sum_{k} c_k P_k(x)` with :math:`x \in [-1, 1]`
    mapping the wavelength range linearly and coefficients :math:`c_k \sim N(0,
    \mathrm{amplitude}^2)` drawn independently, for :math:`k = 0` (if ``include_constant``) or
    1 up to ``degree``. If ``wave`` is a `~specutils_cinn.grid.WavelengthGrid`, each segment gets
    its own polynomial over its own range (segments are normalised separately). Values are
    floored at 0.05 so the factor stays positive.

    Parameters
    ----------
    wave : array-like, `~astropy.units.Quantity` or `~specutils_cinn.grid.WavelengthGrid`
        Wavelengths ``[npix]`` (strictly increasing) or a grid.
    n_spectra : int
        Number of distortions to draw.
    amplitude : float
        Standard deviation of each Legendre coefficient (``>= 0``).
    degree : int
        Highest polynomial degree (``>= 0``).
    generator : `torch.Generator` or int, optional
        Random generator (on ``device``) or a seed.
    include_constant : bool
        Whether the constant term :math:`P_0` (an overall scale error) is included.
    dtype : `torch.dtype`
        float32 or float64.
    device : `torch.device` or str, optional
        Device of the result (default CPU).

    Returns
    -------
    distortion : `torch.Tensor`, shape ``[n_spectra, npix]``
        Multiplicative factors; multiply the flux (and its uncertainty) by them.
    """
    if not (math.isfinite(amplitude) and amplitude >= 0):
        raise ValueError(f"amplitude must be finite and non-negative, got {amplitude}")
    if int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    degree = int(degree)
    if isinstance(wave, WavelengthGrid):
        pieces = [s.centres for s in wave.segments]
    else:
        pieces = [as_wave(wave)]
    first = 0 if include_constant else 1
    basis = []
    for w in pieces:
        x = np.zeros_like(w) if w.size < 2 else 2.0 * (w - w[0]) / (w[-1] - w[0]) - 1.0
        basis.append(_legendre(x, degree)[first:])
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen = make_generator(generator, dev)
    n = int(n_spectra)
    parts = []
    for b in basis:
        coeff = amplitude * torch.randn(
            (n, b.shape[0]), generator=gen, device=dev, dtype=torch.float64
        )
        parts.append(1.0 + coeff @ torch.from_numpy(b).to(dev))
    out = torch.cat(parts, dim=1) if parts else torch.ones((n, 0), dtype=torch.float64)
    return out.clamp(min=0.05).to(dtype)
