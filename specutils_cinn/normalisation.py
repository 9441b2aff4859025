"""Continuum normalisation of many spectra at once, on a model's wavelength grid.

Each segment of the grid gets its own polynomial continuum (segments are never
stitched). The fit is a batched linear least-squares problem: for every row the
normal equations ``A c = b`` of a Legendre basis are built with one matrix product
over all rows and solved with one call to `numpy.linalg.solve` on a ``(N, k, k)``
stack, then pixels far from the fit are clipped and the fit repeated.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.polynomial import legendre

from .grid import WavelengthGrid

__all__ = ["fit_continuum", "fit_segment_continuum", "normalize_continuum"]

#: Rows of about this many pixels are fitted at once (cache-sized blocks).
_CHUNK_ELEMENTS = 1 << 17
#: At most about this many pixels per segment enter the fit (every n-th pixel is used).
_MAX_FIT_POINTS = 1024
#: Relative ridge added to the normal equations so that they are never singular.
_RIDGE = 1e-12


def fit_continuum(
    flux: np.ndarray,
    valid: np.ndarray,
    grid: WavelengthGrid,
    degree: int = 3,
    n_iter: int = 5,
    lower: float = 1.5,
    upper: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a clipped polynomial continuum to each row and each grid segment.

    Parameters
    ----------
    flux : numpy.ndarray
        Flux on the grid, shape ``(N, grid.npix)``. Values at invalid pixels are ignored
        (they may be NaN).
    valid : numpy.ndarray
        Boolean, same shape: pixels that may be used.
    grid : WavelengthGrid
        The grid the flux is sampled on; one continuum per segment.
    degree : int, optional
        Degree of the Legendre polynomial of each segment, on the wavelength scaled to
        ``[-1, 1]`` over the segment.
    n_iter : int, optional
        Maximum number of clipping iterations (the fit stops earlier once no pixel
        changes state in any row).
    lower, upper : float, optional
        Pixels more than ``lower`` times the residual RMS below the fit, or ``upper``
        times above it, are left out of the next fit. The asymmetry pushes the fit
        towards the upper envelope of a spectrum with absorption lines.

    Returns
    -------
    continuum : numpy.ndarray
        Shape ``(N, grid.npix)``, float64. NaN in segments whose fit failed.
    fitted : numpy.ndarray
        Boolean, shape ``(N, len(grid.segments))``: whether the segment's fit worked
        (at least ``max(3 * (degree + 1), 10)`` valid pixels).

    Raises
    ------
    ValueError
        If the shapes do not match the grid or an argument is out of range.

    Notes
    -----
    All valid, unclipped pixels have the same weight; the clipping scale is the RMS of
    the residuals of the pixels used in the previous fit, so the fit needs no
    uncertainties. This is robust against line blanketing, which dominates the
    residuals of high-S/N stellar spectra. Segments longer than 1024 pixels are fitted
    on every ``n``-th pixel (``n = ceil(npix / 1024)``, centred in the segment), which
    determines a low-order polynomial just as well at a fraction of the cost; the
    continuum is then evaluated on every pixel.
    """
    f_all, ok_all = _check(flux, valid, grid)
    n_rows = f_all.shape[0]
    continuum = np.full(f_all.shape, np.nan)
    fitted = np.zeros((n_rows, len(grid.segments)), dtype=bool)
    for i_seg, sl in enumerate(grid.segment_slices):
        continuum[:, sl], fitted[:, i_seg] = fit_segment_continuum(
            f_all[:, sl], ok_all[:, sl], degree=degree, n_iter=n_iter, lower=lower, upper=upper
        )
    return continuum, fitted


def fit_segment_continuum(
    flux: np.ndarray,
    valid: np.ndarray,
    degree: int = 3,
    n_iter: int = 5,
    lower: float = 1.5,
    upper: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a clipped polynomial continuum to each row of one uniformly sampled segment.

    This is the building block of `fit_continuum`; see it for the method.

    Parameters
    ----------
    flux : numpy.ndarray
        Shape ``(N, P)``: the pixels of one grid segment, in wavelength order with a
        constant step. Values at invalid pixels are ignored.
    valid : numpy.ndarray
        Boolean, same shape.
    degree, n_iter, lower, upper
        As in `fit_continuum`.

    Returns
    -------
    continuum : numpy.ndarray
        Shape ``(N, P)``, float64; NaN in rows whose fit failed.
    fitted : numpy.ndarray
        Boolean, shape ``(N,)``: whether the row had enough valid pixels to be fitted.

    Raises
    ------
    ValueError
        If the shapes differ or an argument is out of range.
    """
    f_all = np.asarray(flux, dtype=np.float64)
    ok_all = np.asarray(valid, dtype=bool)
    if f_all.ndim != 2 or ok_all.shape != f_all.shape:
        raise ValueError(
            f"flux and valid must be 2-D arrays of the same shape, got {f_all.shape} "
            f"and {ok_all.shape}"
        )
    if isinstance(degree, bool) or int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    if isinstance(n_iter, bool) or int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    if not (lower > 0 and upper > 0):
        raise ValueError(f"lower and upper must be positive, got {lower}, {upper}")
    degree, n_iter = int(degree), int(n_iter)
    n_rows, npix = f_all.shape
    if n_rows == 0 or npix == 0:
        return np.full(f_all.shape, np.nan), np.zeros(n_rows, dtype=bool)
    continuum = np.empty(f_all.shape)
    fitted = np.zeros(n_rows, dtype=bool)
    n_min = max(3 * (degree + 1), 10)
    start, stride, moments, lin, basis_t = _basis(npix, degree)
    step = max(1, _CHUNK_ELEMENTS // npix)
    for r0 in range(0, n_rows, step):
        rows = slice(r0, min(n_rows, r0 + step))
        f_fit = f_all[rows, start::stride]
        ok = ok_all[rows, start::stride] & np.isfinite(f_fit)
        coef, good = _fit_block(f_fit, ok, moments, lin, n_iter, lower, upper, n_min)
        coef[~good] = np.nan
        if step >= n_rows:  # a single block: no copy into the full-size array
            return coef @ basis_t, good
        np.matmul(coef, basis_t, out=continuum[rows])
        fitted[rows] = good
    return continuum, fitted


@functools.lru_cache(maxsize=32)
def _basis(npix: int, degree: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Fit-pixel selection and Legendre bases for a segment of ``npix`` pixels.

    Returns ``start, stride`` (the fitted pixels are ``start::stride``), the Legendre
    polynomials up to ``2 * degree`` at the fitted pixels ``(P_fit, 2 * degree + 1)``, the
    linearisation matrix ``lin`` with ``P_a P_b = sum_j lin[a * k + b, j] P_j`` and the
    basis up to ``degree`` on all pixels, transposed ``(degree + 1, npix)``.
    """
    k = degree + 1
    x = np.linspace(-1.0, 1.0, npix) if npix > 1 else np.zeros(1)
    stride = -(-npix // _MAX_FIT_POINTS)
    start = (npix - 1 - stride * ((npix - 1) // stride)) // 2
    moments = legendre.legvander(x[start::stride], 2 * degree)
    lin = np.zeros((k * k, 2 * degree + 1))
    for a in range(k):
        for b in range(k):
            prod = legendre.legmul(np.eye(k)[a], np.eye(k)[b])
            lin[a * k + b, : len(prod)] = prod
    basis_t = np.ascontiguousarray(legendre.legvander(x, degree).T)
    for arr in (moments, lin, basis_t):
        arr.flags.writeable = False
    return start, stride, moments, lin, basis_t


def _fit_block(
    flux: np.ndarray,
    ok: np.ndarray,
    moments: np.ndarray,
    lin: np.ndarray,
    n_iter: int,
    lower: float,
    upper: float,
    n_min: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Clipped fits of one block of rows of one segment; returns (coefficients, fitted)."""
    f = np.where(ok, flux, 0.0)
    k = int(round(np.sqrt(lin.shape[0])))
    basis = moments[:, :k]
    basis_t = np.ascontiguousarray(basis.T)
    eye = np.eye(k)
    keep = ok
    w = keep.astype(np.float64)
    n_used = w.sum(axis=1)
    fitted = n_used >= n_min
    for it in range(n_iter + 1):
        wf = w * f
        a = ((w @ moments) @ lin.T).reshape(-1, k, k)
        rhs = wf @ basis
        ridge = _RIDGE * np.trace(a, axis1=1, axis2=2)[:, None, None] + 1e-300
        a[~fitted] = eye  # rows that cannot be fitted: any well-posed system
        coef = np.linalg.solve(a + ridge * eye, rhs[:, :, None])[:, :, 0]
        if it == n_iter:
            break
        # residual sum of squares without another pass: sum w f^2 - coef . rhs
        sum_f2 = np.einsum("rp,rp->r", wf, f)
        rss = sum_f2 - np.einsum("rk,rk->r", coef, rhs)
        n_safe = np.maximum(n_used, 1.0)
        scale = np.sqrt(np.maximum(rss, 0.0) / n_safe)
        scale = np.maximum(scale, 1e-6 * np.sqrt(sum_f2 / n_safe))
        # keep pixels with -lower * scale < f - cont < upper * scale, i.e.
        # |f - cont - centre| < half with centre = (upper - lower) / 2 * scale
        dist = coef @ basis_t
        dist += (0.5 * (upper - lower) * scale)[:, None]
        dist -= f
        np.abs(dist, out=dist)
        new_keep = dist < (0.5 * (upper + lower) * scale)[:, None]
        new_keep &= ok
        n_new = np.count_nonzero(new_keep, axis=1)
        too_few = n_new < n_min  # such rows keep their previous selection
        if np.any(too_few):
            new_keep[too_few] = keep[too_few]
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
        w = keep.astype(np.float64)
        n_used = w.sum(axis=1)
    return coef, fitted


def normalize_continuum(
    flux: np.ndarray,
    sigma: np.ndarray | None,
    valid: np.ndarray,
    grid: WavelengthGrid,
    degree: int = 3,
    n_iter: int = 5,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Divide spectra by a fitted continuum, segment by segment.

    Parameters
    ----------
    flux : numpy.ndarray
        Flux on the model grid, shape ``(N, grid.npix)``.
    sigma : numpy.ndarray or None
        Flux uncertainties (standard deviations), same shape, or `None`.
    valid : numpy.ndarray
        Boolean, same shape: pixels that may be used.
    grid : WavelengthGrid
        The grid the flux is sampled on.
    degree : int, optional
        Polynomial degree per segment (see `fit_continuum`).
    n_iter : int, optional
        Maximum number of clipping iterations (see `fit_continuum`).

    Returns
    -------
    flux_n : numpy.ndarray
        ``flux / continuum``, float64; NaN where ``valid_n`` is False.
    sigma_n : numpy.ndarray or None
        ``sigma / continuum`` (NaN where ``valid_n`` is False), or `None` when ``sigma``
        is `None`.
    valid_n : numpy.ndarray
        ``valid`` and a positive, finite continuum: pixels of segments whose fit failed
        become invalid.

    Raises
    ------
    ValueError
        If the shapes do not match the grid or an argument is out of range.
    """
    f, ok = _check(flux, valid, grid)
    continuum, _ = fit_continuum(f, ok, grid, degree=degree, n_iter=n_iter)
    valid_n = ok & (continuum > 0)  # False where NaN
    flux_n = np.full(f.shape, np.nan)
    np.divide(f, continuum, out=flux_n, where=valid_n)
    if sigma is None:
        return flux_n, None, valid_n
    s = np.asarray(sigma, dtype=np.float64)
    if s.shape != f.shape:
        raise ValueError(f"sigma must have the shape of flux {f.shape}, got {s.shape}")
    sigma_n = np.full(f.shape, np.nan)
    np.divide(s, continuum, out=sigma_n, where=valid_n)
    valid_n &= np.isfinite(sigma_n) & (sigma_n > 0)
    return flux_n, sigma_n, valid_n


def _check(
    flux: np.ndarray, valid: np.ndarray, grid: WavelengthGrid
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(grid, WavelengthGrid):
        raise TypeError(f"grid must be a WavelengthGrid, got {type(grid).__name__}")
    f = np.asarray(flux, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool)
    if f.ndim != 2 or f.shape[1] != grid.npix:
        raise ValueError(f"flux must have shape (N, {grid.npix}), got {f.shape}")
    if ok.shape != f.shape:
        raise ValueError(f"valid must have the shape of flux {f.shape}, got {ok.shape}")
    return f, ok & np.isfinite(f)
