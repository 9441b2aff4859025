"""Noise estimates from the flux alone (DER_SNR) and masked row statistics."""

from __future__ import annotations

import numpy as np

__all__ = ["der_snr", "masked_quantile"]

#: DER_SNR scale: 1.482602 / sqrt(6) (Stoehr et al. 2008).
_DER_SNR_SCALE = 1.482602 / np.sqrt(6.0)
#: Rows of about this many elements are processed at once (cache-sized blocks).
_CHUNK_ELEMENTS = 1 << 17


def masked_quantile(values: np.ndarray, valid: np.ndarray, q: float) -> np.ndarray:
    """Quantile of each row over its valid entries, vectorized over rows.

    Equivalent to ``np.quantile(values[i][valid[i]], q)`` (linear interpolation) for
    every row ``i``, without a Python loop over rows and without sorting: invalid
    entries are replaced by ``-inf`` and ``+inf`` in per-row numbers chosen so that the
    wanted order statistic sits at the same position in every row, and a single
    `numpy.partition` finds it.

    Parameters
    ----------
    values : numpy.ndarray
        Shape ``(N, M)``.
    valid : numpy.ndarray
        Boolean, same shape. Non-finite values are treated as invalid.
    q : float
        Quantile in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64; NaN for rows without a valid entry.

    Raises
    ------
    ValueError
        If the shapes differ, the arrays are not 2-D, or ``q`` is outside ``[0, 1]``.
    """
    x_all = np.asarray(values)
    ok_all = np.asarray(valid, dtype=bool)
    if x_all.ndim != 2 or x_all.shape != ok_all.shape:
        raise ValueError(
            f"values and valid must be 2-D arrays of the same shape, got {x_all.shape} "
            f"and {ok_all.shape}"
        )
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    n_rows, m = x_all.shape
    out = np.full(n_rows, np.nan)
    if m == 0:
        return out
    p = int(np.floor(q * (m - 1)))
    step = max(1, _CHUNK_ELEMENTS // m)
    for r0 in range(0, n_rows, step):
        rows = slice(r0, min(n_rows, r0 + step))
        x = x_all[rows]
        ok = ok_all[rows] & np.isfinite(x)
        n = np.count_nonzero(ok, axis=1)
        t = q * np.maximum(n - 1, 0)
        ft = np.floor(t)
        if np.all(n == m):
            filled = np.array(x, dtype=np.float64)
        else:
            n_low = (p - ft).astype(np.int64)  # invalid entries sent to -inf in each row
            rank = np.cumsum(~ok, axis=1, dtype=np.int32)
            fill = np.where(rank <= n_low[:, None], -np.inf, np.inf)
            filled = np.where(ok, x, fill)
        part = np.partition(filled, p, axis=1)
        lo = part[:, p]
        frac = t - ft
        use = frac > 0
        if p + 1 < m and np.any(use):
            delta = np.zeros(len(lo))
            np.subtract(part[:, p + 1 :].min(axis=1), lo, out=delta, where=use)
            lo = lo + frac * delta
        out[rows] = np.where(n > 0, lo, np.nan)
    return out


def der_snr(
    flux: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal-to-noise ratio of each spectrum from its flux alone (DER_SNR).

    The DER_SNR algorithm (Stoehr et al. 2008, ASP Conf. Ser. 394, 505) estimates the
    noise per pixel as ``1.482602 / sqrt(6) * median(|2 f_i - f_(i-2) - f_(i+2)|)`` and
    the signal as the median flux. It assumes uncorrelated noise and a spectrum that is
    smooth on the scale of a few pixels (line widths above about 2 pixels).

    Parameters
    ----------
    flux : numpy.ndarray
        Shape ``(N, M)`` (or ``(M,)``): rows of pixels in wavelength order.
    valid : numpy.ndarray or None
        Boolean mask of usable pixels, same shape; `None` means all finite pixels.

    Returns
    -------
    snr : numpy.ndarray
        Median signal over noise per pixel, shape ``(N,)`` (``(1,)`` for 1-D input);
        NaN where it cannot be estimated (too few usable pixels, zero noise, or a
        non-positive signal).
    noise : numpy.ndarray
        Noise standard deviation per pixel, in the unit of ``flux``, shape ``(N,)``.
    signal : numpy.ndarray
        Median flux of the usable pixels, shape ``(N,)``.

    Notes
    -----
    As in the reference implementation, pixels with a flux of exactly zero are not used
    (they usually pad a spectrum). Unlike the reference, which compresses out bad
    pixels first, a difference ``2 f_i - f_(i-2) - f_(i+2)`` is used only when all
    three pixels are usable, so that no difference spans a gap in the spectrum.
    """
    f = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    if f.ndim != 2:
        raise ValueError(f"flux must be 1-D or 2-D, got shape {np.shape(flux)}")
    ok = np.isfinite(f) if valid is None else np.atleast_2d(np.asarray(valid, dtype=bool))
    if ok.shape != f.shape:
        raise ValueError(f"valid must have the shape of flux {f.shape}, got {ok.shape}")
    ok = ok & np.isfinite(f) & (f != 0)
    signal = masked_quantile(f, ok, 0.5)
    if f.shape[1] < 5:
        noise = np.full(len(f), np.nan)
    else:
        fz = np.where(ok, f, 0.0)
        d = np.abs(2.0 * fz[:, 2:-2] - fz[:, :-4] - fz[:, 4:])
        ok_d = ok[:, 2:-2] & ok[:, :-4] & ok[:, 4:]
        noise = _DER_SNR_SCALE * masked_quantile(d, ok_d, 0.5)
    good = (noise > 0) & (signal > 0)
    snr = np.full(len(f), np.nan)
    np.divide(signal, noise, out=snr, where=good)
    return snr, noise, signal
