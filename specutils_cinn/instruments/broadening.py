r"""Line broadening for batches of spectra: instrumental profile, rotation and macroturbulence.

All functions take one shared wavelength array ``wave`` (Angstrom, strictly increasing, uniform or
not) and a batch of spectra ``flux`` of shape ``[n_spectra, npix]`` (a `torch.Tensor`, or anything
`numpy.asarray` accepts; numpy in gives numpy out, a 1-D spectrum gives a 1-D result). float32 and
float64 are both supported and kept.

**Method.** A convolution kernel whose width is a fixed *velocity* (rotation, macroturbulence, a
constant resolving power) is a fixed number of pixels on a grid uniform in :math:`\ln\lambda`. The
spectra are resampled onto such a grid, convolved with the kernels by FFT for the whole batch at
once (one kernel per spectrum where the widths differ), and interpolated linearly back onto
``wave``. For a wavelength-dependent resolving power :math:`R(\lambda)` the grid is instead uniform
in :math:`u(\lambda) = \int R(\lambda)/\lambda\, d\lambda`, in which a Gaussian of FWHM
:math:`\lambda/R(\lambda)` has the constant FWHM 1 (exact to first order in the change of
:math:`\lambda/R` across one line profile, which is far below 1 % for 4MOST).

**Sampling and accuracy.** The intermediate grid is at least as fine as the finest input pixel
(but has at most four times as many pixels as the input), and fine enough to put at least five
pixels in the FWHM of a Gaussian LSF. The resampling onto it is flux conserving (the mean of the
piecewise-linear input over each grid cell), so equivalent widths are kept even for lines
sampled by only a few pixels; the way back is linear interpolation of the convolved spectrum,
which is smooth on the grid. Rotation and macroturbulence kernels are integrated analytically
over each pixel of the grid, so they stay normalized and behave well even when narrower than a
pixel. Input spectra must be finite (fill masked pixels first); the operations are not
differentiable (no autograd).

**Edges.** Before the convolution the spectrum is extended beyond its ends by ``edge="nearest"``
(repeat the end value; the default, sensible for continuum-normalized spectra) or
``edge="reflect"`` (mirror about the end pixel). Pixels within a kernel half-width of the ends
are affected by that choice; callers that care should broaden a wider range and cut it.

**Reference.** Gray, D. F. 2005, *The Observation and Analysis of Stellar Photospheres*, 3rd ed.,
Cambridge University Press: chapter 17 (macroturbulence) and chapter 18 (rotation profile).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import fft as sp_fft
from scipy import special

from .._checks import per_spectrum
from ..constants import C_KMS
from ._utils import (
    KM_S,
    as_flux,
    as_wave,
    bin_average_rows,
    interp_rows,
    restore,
)

__all__ = [
    "from_log_lambda_grid",
    "gaussian_lsf_broaden",
    "macroturbulence_broaden",
    "rotational_broaden",
    "to_log_lambda_grid",
]

EdgeMode = Literal["nearest", "reflect"]
ResolvingPower = float | Callable[[np.ndarray], Any]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Most pixels of the intermediate grid, as a multiple of the input pixels, unless the kernel
#: needs more (a Gaussian LSF is always sampled with >= 5 pixels per FWHM).
_MAX_OVERSAMPLE = 4.0
#: Minimum number of pixels per FWHM of a Gaussian kernel on the intermediate grid.
_PIX_PER_FWHM = 5.0


# --------------------------------------------------------------------------------------------
# grids and convolution
# --------------------------------------------------------------------------------------------
def _default_step(coord: np.ndarray) -> float:
    """Finest input spacing in ``coord``, limited to at most `_MAX_OVERSAMPLE` times the pixels."""
    span = coord[-1] - coord[0]
    return max(float(np.min(np.diff(coord))), span / (_MAX_OVERSAMPLE * (coord.size - 1)))


def _uniform(coord: np.ndarray, step: float) -> np.ndarray:
    """Uniform grid from ``coord[0]`` with the given step whose last point is >= ``coord[-1]``."""
    n = int(math.ceil((coord[-1] - coord[0]) / step - 1e-9)) + 1
    return coord[0] + step * np.arange(max(n, 2))


def _spanning(coord: np.ndarray, step: float) -> tuple[np.ndarray, float]:
    """Uniform grid from ``coord[0]`` to ``coord[-1]`` with a step at most ``step``."""
    n = int(math.ceil((coord[-1] - coord[0]) / step - 1e-9)) + 1
    n = max(n, 2)
    return np.linspace(coord[0], coord[-1], n), (coord[-1] - coord[0]) / (n - 1)


def _log_step(ln_wave: np.ndarray, velocity_step: float | None) -> float:
    """Step in ln(lambda) from a velocity step in km/s, or the default for ``ln_wave``."""
    if velocity_step is None:
        return _default_step(ln_wave)
    try:
        v = float(velocity_step)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"velocity_step must be a number, got {velocity_step!r}") from exc
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"velocity_step must be a positive number, got {velocity_step!r}")
    return v / C_KMS


def _check_edge(edge: str) -> None:
    if edge not in ("nearest", "reflect"):
        raise ValueError(f"edge must be 'nearest' or 'reflect', got {edge!r}")


def _fft_convolve(x: torch.Tensor, kernels: Sequence[torch.Tensor], edge: str) -> torch.Tensor:
    """Convolve each row of ``x`` ``[B, N]`` with all ``kernels`` (each ``[B or 1, 2h+1]``).

    The kernels are centered on their middle element. The signal is padded by the sum of the
    half-widths with ``edge``; the FFT length avoids any wrap-around in the kept samples.
    """
    n = x.shape[1]
    half = sum((k.shape[1] - 1) // 2 for k in kernels)
    if half == 0:
        out = x
        for k in kernels:
            out = out * k[:, :1]
        return out
    if edge == "reflect" and half >= n:
        raise ValueError(
            f"the kernel half-width ({half} px) is not shorter than the spectrum ({n} px); "
            "use edge='nearest' or a longer wavelength range"
        )
    mode = "replicate" if edge == "nearest" else "reflect"
    xp = F.pad(x.unsqueeze(1), (half, half), mode=mode).squeeze(1)
    nfft = sp_fft.next_fast_len(xp.shape[1], real=True)
    spec = torch.fft.rfft(xp, n=nfft)
    for k in kernels:
        spec = spec * torch.fft.rfft(k, n=nfft)
    y = torch.fft.irfft(spec, n=nfft)
    return y[:, 2 * half : 2 * half + n]


def _convolve_on(
    coord: np.ndarray,
    flux: torch.Tensor,
    step: float,
    kernel_builders: Sequence[Callable[[float], np.ndarray]],
    edge: str,
) -> torch.Tensor:
    """Resample ``flux`` onto a grid uniform in ``coord``, convolve, and resample back.

    The grid spans ``coord`` exactly, with a step at most ``step``; each kernel builder is called
    with the actual step. The forward resampling is flux conserving (mean of the piecewise-linear
    input over each grid cell), so line integrals are kept even for coarsely sampled lines; the
    way back is linear interpolation of the (now smooth) convolved spectrum.
    """
    grid, step = _spanning(coord, step)
    cells = np.concatenate([[coord[0]], 0.5 * (grid[1:] + grid[:-1]), [coord[-1]]])
    on_grid = bin_average_rows(coord, flux, cells)
    # the end cells are half cells: use the end samples there (the grid ends on them)
    on_grid[:, 0] = flux[:, 0]
    on_grid[:, -1] = flux[:, -1]
    kernels = [
        torch.from_numpy(build(step)).to(device=flux.device, dtype=flux.dtype)
        for build in kernel_builders
    ]
    convolved = _fft_convolve(on_grid, kernels, edge)
    return interp_rows(coord, grid, convolved)


# --------------------------------------------------------------------------------------------
# kernels (numpy float64, rows normalized to unit sum)
# --------------------------------------------------------------------------------------------
def _gaussian_kernel(sigma_pix: float) -> np.ndarray:
    """Point-sampled Gaussian with ``sigma_pix >= 2`` pixels, truncated at 5 sigma, ``[1, K]``."""
    half = int(math.ceil(5.0 * sigma_pix))
    j = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (j / sigma_pix) ** 2)
    return (k / k.sum())[None, :]


def _pixel_integrated(cdf: Callable[[np.ndarray], np.ndarray], half: int) -> np.ndarray:
    """Kernel ``[B, 2 half + 1]`` from an odd cumulative profile ``cdf(edges [1, K+1])``."""
    edges = (np.arange(-half, half + 2, dtype=np.float64) - 0.5)[None, :]
    k = np.diff(cdf(edges), axis=1)
    return k / k.sum(axis=1, keepdims=True)


def _rotation_cdf(x: np.ndarray, epsilon: float) -> np.ndarray:
    """Integral from 0 to ``x`` of Gray's rotation profile in units of ``x = v / vsini``."""
    x = np.clip(x, -1.0, 1.0)
    s = 0.5 * (x * np.sqrt(1.0 - x * x) + np.arcsin(x))
    return (2.0 * (1.0 - epsilon) * s + 0.5 * np.pi * epsilon * (x - x**3 / 3.0)) / (
        np.pi * (1.0 - epsilon / 3.0)
    )


def _delta_rows(k: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Replace the kernels of rows with zero width by a unit spike at the center."""
    zero = widths <= 0
    if np.any(zero):
        k[zero] = 0.0
        k[zero, k.shape[1] // 2] = 1.0
    return k


def _rotation_kernel(vsini: np.ndarray, dv: float, epsilon: float) -> np.ndarray:
    """Pixel-integrated rotation kernels ``[B, K]`` on a velocity step ``dv`` (``vsini >= 0``)."""
    half = int(math.ceil(vsini.max() / dv + 0.5))
    safe = np.where(vsini > 0, vsini, 1.0)[:, None]
    k = _pixel_integrated(lambda e: _rotation_cdf(e * dv / safe, epsilon), half)
    return _delta_rows(k, vsini)


def _rt_cdf(x: np.ndarray) -> np.ndarray:
    """Integral from 0 to ``x = v / zeta`` of the radial-tangential profile (odd in ``x``)."""
    a = np.abs(x)
    val = 0.5 * special.erf(a) - a * a * special.erfc(a) + a * np.exp(-a * a) / math.sqrt(math.pi)
    return np.sign(x) * val


def _macro_kernel(zeta: np.ndarray, dv: float, kind: str) -> np.ndarray:
    """Pixel-integrated macroturbulence kernels ``[B, K]`` (``zeta >= 0``)."""
    half = int(math.ceil(4.0 * zeta.max() / dv)) + 1
    safe = np.where(zeta > 0, zeta, 1.0)[:, None]
    if kind == "radial-tangential":
        k = _pixel_integrated(lambda e: _rt_cdf(e * dv / safe), half)
    else:
        k = _pixel_integrated(lambda e: 0.5 * special.erf(e * dv / safe), half)
    return _delta_rows(k, zeta)


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------
def to_log_lambda_grid(
    wave: Any, flux: Any, velocity_step: float | None = None
) -> tuple[np.ndarray, Any]:
    r"""Interpolate spectra onto a grid uniform in :math:`\ln\lambda` (constant velocity step).

    Parameters
    ----------
    wave : array-like or `~astropy.units.Quantity`, shape ``[npix]``
        Strictly increasing wavelengths (Angstrom unless a Quantity).
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Spectra sampled at ``wave``.
    velocity_step : float, optional
        Grid step in km/s. Default: the finest input pixel in velocity, but no more than four
        times as many pixels as the input.

    Returns
    -------
    log_wave : `numpy.ndarray`
        Wavelengths :math:`\lambda_j = \lambda_0 \exp(j\,\Delta v / c)` in Angstrom, starting at
        ``wave[0]``; the last point is at or just beyond ``wave[-1]``.
    log_flux : same type as ``flux``
        Spectra on ``log_wave`` (linear interpolation in :math:`\ln\lambda`; the last point,
        less than one step beyond ``wave[-1]``, is extrapolated linearly).

    Notes
    -----
    Linear interpolation smooths features that are not resolved by the input sampling; with a
    velocity step at or below the input pixel size it changes well-sampled lines negligibly.
    """
    w = as_wave(wave)
    f, was_numpy, was_1d = as_flux(flux, w.size)
    ln = np.log(w)
    step = _log_step(ln, velocity_step)
    grid = _uniform(ln, step)
    return np.exp(grid), restore(interp_rows(grid, ln, f, extrapolate=True), was_numpy, was_1d)


def from_log_lambda_grid(log_wave: Any, log_flux: Any, wave: Any) -> Any:
    r"""Interpolate spectra from a (log-uniform) grid back onto wavelengths ``wave``.

    Parameters
    ----------
    log_wave : array-like, shape ``[n_log]``
        Strictly increasing wavelengths of ``log_flux`` (typically from `to_log_lambda_grid`; any
        increasing grid works).
    log_flux : `torch.Tensor` or array-like, shape ``[n_spectra, n_log]`` or ``[n_log]``
        Spectra on ``log_wave``.
    wave : array-like, shape ``[npix]``
        Target wavelengths, strictly increasing.

    Returns
    -------
    flux : same type as ``log_flux``
        Linear interpolation in :math:`\ln\lambda`; targets outside ``log_wave`` take the
        nearest end value.
    """
    lw = as_wave(log_wave, "log_wave")
    w = as_wave(wave)
    f, was_numpy, was_1d = as_flux(log_flux, lw.size, "log_flux")
    return restore(interp_rows(np.log(w), np.log(lw), f), was_numpy, was_1d)


def _resolving_power_values(
    resolving_power: ResolvingPower, wave: np.ndarray
) -> np.ndarray | float:
    """Constant float, or the callable's values at ``wave``, validated."""
    if callable(resolving_power):
        vals = np.broadcast_to(np.asarray(resolving_power(wave), dtype=np.float64), wave.shape)
        if not np.all(np.isfinite(vals)) or np.any(vals <= 0):
            raise ValueError("resolving_power(wave) must return finite positive values")
        return vals
    try:
        r = float(resolving_power)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"resolving_power must be a number or a callable, got {type(resolving_power).__name__}"
        ) from exc
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"resolving_power must be finite and positive, got {r}")
    return r


def gaussian_lsf_broaden(
    wave: Any,
    flux: Any,
    resolving_power: ResolvingPower,
    *,
    edge: EdgeMode = "nearest",
) -> Any:
    r"""Convolve spectra with a Gaussian line-spread function of FWHM :math:`\lambda / R`.

    Parameters
    ----------
    wave : array-like or `~astropy.units.Quantity`, shape ``[npix]``
        Strictly increasing wavelengths of one contiguous range (Angstrom unless a Quantity).
        Do not pass several spectrograph arms concatenated: broaden each arm separately.
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Spectra at ``wave``.
    resolving_power : float or callable
        Resolving power :math:`R = \lambda / \mathrm{FWHM}`: a constant, or a function taking a
        float64 array of wavelengths in Angstrom and returning :math:`R` at each (e.g.
        `~specutils_cinn.instruments.LinearResolvingPower`).
    edge : {"nearest", "reflect"}
        How the spectrum is extended beyond its ends (see the module notes).

    Returns
    -------
    broadened : same type, shape and dtype as ``flux``

    Notes
    -----
    The kernel is normalized to unit area on the intermediate grid, so equivalent widths are
    conserved. A constant :math:`R` is applied on a log-lambda grid (a Gaussian of FWHM
    :math:`c/R` in velocity); a variable :math:`R` on a grid uniform in
    :math:`u = \int R/\lambda\, d\lambda` (computed by the trapezoid rule on ``wave``), where the
    kernel is a Gaussian of FWHM 1. Both grids have at least five pixels per FWHM.
    """
    _check_edge(edge)
    w = as_wave(wave)
    f, was_numpy, was_1d = as_flux(flux, w.size, finite=True)
    r = _resolving_power_values(resolving_power, w)
    if f.shape[0] == 0:
        return restore(f.clone(), was_numpy, was_1d)
    if isinstance(r, float):
        coord = np.log(w)
        fwhm = 1.0 / r
    else:
        g = r / w
        coord = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(w))])
        fwhm = 1.0
    step = min(_default_step(coord), fwhm / _PIX_PER_FWHM)
    out = _convolve_on(
        coord, f, step, [lambda s: _gaussian_kernel(fwhm / _FWHM_PER_SIGMA / s)], edge
    )
    return restore(out, was_numpy, was_1d)


def _velocity_broaden(
    wave: Any,
    flux: Any,
    widths: Any,
    name: str,
    build: Callable[[np.ndarray, float], np.ndarray],
    velocity_step: float | None,
    edge: str,
) -> Any:
    """Apply per-spectrum velocity kernels ``build(widths[rows], dv)``; rows with width 0 copied."""
    _check_edge(edge)
    w = as_wave(wave)
    f, was_numpy, was_1d = as_flux(flux, w.size, finite=True)
    widths = per_spectrum(widths, f.shape[0], name, unit=KM_S)
    ln = np.log(w)
    step = _log_step(ln, velocity_step)
    rows = np.flatnonzero(widths > 0)
    if rows.size == widths.size and rows.size > 0:
        out = _convolve_on(ln, f, step, [lambda s: build(widths, s * C_KMS)], edge)
    else:
        out = f.clone()
        if rows.size:
            idx = torch.from_numpy(rows).to(f.device)
            sub = widths[rows]
            conv = _convolve_on(ln, f[idx], step, [lambda s: build(sub, s * C_KMS)], edge)
            out.index_copy_(0, idx, conv)
    return restore(out, was_numpy, was_1d)


def rotational_broaden(
    wave: Any,
    flux: Any,
    vsini: Any,
    limb_darkening: float = 0.6,
    *,
    velocity_step: float | None = None,
    edge: EdgeMode = "nearest",
) -> Any:
    r"""Convolve each spectrum with the rotation profile of its own :math:`v \sin i`.

    The kernel is the classical rotation profile with linear limb darkening
    (Gray 2005, chapter 18):

    .. math::

        G(\Delta\lambda) = \frac{2(1-\epsilon)\sqrt{1-x^2} + \tfrac{1}{2}\pi\epsilon(1-x^2)}
        {\pi\,\Delta\lambda_L\,(1-\epsilon/3)},\qquad
        x = \frac{\Delta\lambda}{\Delta\lambda_L},\quad
        \Delta\lambda_L = \frac{\lambda\, v\sin i}{c},

    zero for :math:`|x| > 1`. It is applied in velocity (on a log-lambda grid), integrated
    analytically over each pixel of that grid and normalized to unit area.

    Parameters
    ----------
    wave : array-like or `~astropy.units.Quantity`, shape ``[npix]``
        Strictly increasing wavelengths of one contiguous range (Angstrom unless a Quantity).
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Spectra at ``wave``.
    vsini : float or array-like, shape ``[n_spectra]``
        Projected rotational velocity of each spectrum in km/s (a Quantity is converted),
        ``>= 0``. Spectra with ``vsini == 0`` are returned unchanged (bit for bit).
    limb_darkening : float
        Linear limb-darkening coefficient :math:`\epsilon` in ``[0, 1]``.
    velocity_step : float, optional
        Step of the intermediate log-lambda grid in km/s (default: finest input pixel, at most
        four times the input pixel count). Results do not depend on the batch composition.
    edge : {"nearest", "reflect"}
        How the spectrum is extended beyond its ends.

    Returns
    -------
    broadened : same type, shape and dtype as ``flux``
    """
    eps = float(limb_darkening)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"limb_darkening must be in [0, 1], got {limb_darkening!r}")
    return _velocity_broaden(
        wave, flux, vsini, "vsini", lambda v, dv: _rotation_kernel(v, dv, eps), velocity_step, edge
    )


def macroturbulence_broaden(
    wave: Any,
    flux: Any,
    vmacro: Any,
    *,
    kind: Literal["radial-tangential", "gaussian"] = "radial-tangential",
    velocity_step: float | None = None,
    edge: EdgeMode = "nearest",
) -> Any:
    r"""Convolve each spectrum with a macroturbulence profile of its own :math:`\zeta`.

    ``kind="radial-tangential"`` is Gray's (2005, chapter 17) radial-tangential profile with equal
    radial and tangential dispersions :math:`\zeta_R = \zeta_T = \zeta` and no limb darkening.
    Integrated over the disk, the radial and the tangential parts are then the same function, so
    the profile does not depend on the radial/tangential area fractions:

    .. math::

        \Theta(v) = \frac{2}{\sqrt{\pi}\,\zeta}
        \left[e^{-x^2} - \sqrt{\pi}\, x \,\mathrm{erfc}(x)\right],\qquad x = |v| / \zeta,

    a cusped profile with variance :math:`\zeta^2/4`. ``kind="gaussian"`` is the isotropic Gaussian
    approximation :math:`\propto \exp(-(v/\zeta)^2)` (standard deviation :math:`\zeta/\sqrt{2}`).
    Both are integrated analytically over each pixel of a log-lambda grid, truncated at
    :math:`4\zeta` and normalized to unit area.

    Parameters
    ----------
    wave : array-like or `~astropy.units.Quantity`, shape ``[npix]``
        Strictly increasing wavelengths of one contiguous range (Angstrom unless a Quantity).
    flux : `torch.Tensor` or array-like, shape ``[n_spectra, npix]`` or ``[npix]``
        Spectra at ``wave``.
    vmacro : float or array-like, shape ``[n_spectra]``
        Macroturbulence :math:`\zeta` of each spectrum in km/s, ``>= 0``; spectra with
        ``vmacro == 0`` are returned unchanged.
    kind : {"radial-tangential", "gaussian"}
        Profile shape.
    velocity_step : float, optional
        Step of the intermediate log-lambda grid in km/s (default as in `rotational_broaden`).
    edge : {"nearest", "reflect"}
        How the spectrum is extended beyond its ends.

    Returns
    -------
    broadened : same type, shape and dtype as ``flux``
    """
    if kind not in ("radial-tangential", "gaussian"):
        raise ValueError(f"kind must be 'radial-tangential' or 'gaussian', got {kind!r}")
    return _velocity_broaden(
        wave, flux, vmacro, "vmacro", lambda z, dv: _macro_kernel(z, dv, kind), velocity_step, edge
    )
