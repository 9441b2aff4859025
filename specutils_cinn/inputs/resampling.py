"""Vectorized flux-conserving resampling of many spectra at once.

The input spectrum is treated as piecewise constant: pixel ``i`` covers
``[b_i, b_(i+1)]`` where the edges ``b`` are the midpoints between neighboring pixel
centers (the two outer edges are extrapolated by half a pixel). Gaps in the input axis
(`find_gaps`) are not bridged: the pixels next to a gap keep their natural width and
the gap becomes a pixel without data (`gap_edges`). The integral of
``flux * weight`` and of ``weight`` up to any wavelength is a cumulative sum plus one
partial pixel, so the integral over any output bin is a difference of two such values.
This is exact for piecewise-constant spectra, costs ``O(rows * (M + K))`` and handles a
different set of output bins for every row (used for per-spectrum radial velocities).

This module is slightly longer than the package's usual ~600 lines: it is one operation, and
over a third of it is documentation with worked examples.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GAP_FACTOR",
    "find_gaps",
    "flux_conserving_resample",
    "gap_edges",
    "insert_gaps",
    "pixel_edges",
]

#: Work on blocks of about this many array elements: numpy is several times faster on
#: arrays that fit in the CPU caches than on large ones.
CHUNK_ELEMENTS = 1 << 17
#: Bins whose weight integral is below this fraction of their width count as empty.
_EMPTY_FRACTION = 1e-9
#: An output bin sticking out of the input coverage by less than this fraction of the
#: outermost input pixel still counts as inside (rounding of unit conversions).
_EDGE_TOLERANCE = 1e-6
#: Largest lookup table (in entries per input pixel) used to locate edges.
_MAX_TABLE_FACTOR = 64
#: A spacing between neighboring input pixel centers larger than this many times the
#: local spacing on both sides is a gap in the wavelength coverage (see `find_gaps`).
GAP_FACTOR = 3.0
#: Number of spacings on each side whose median is the local spacing (fixed: median of 3).
_GAP_WINDOW = 3


def pixel_edges(centers: np.ndarray) -> np.ndarray:
    """Pixel edges from pixel centers: midpoints, outer edges extrapolated by half a pixel.

    Parameters
    ----------
    centers : numpy.ndarray
        Strictly increasing pixel centers, shape ``(..., M)`` with ``M >= 2``.

    Returns
    -------
    numpy.ndarray
        Edges, shape ``(..., M + 1)``, float64.

    Raises
    ------
    ValueError
        If there are fewer than two pixels or the centers are not strictly increasing
        and finite.
    """
    c = np.asarray(centers, dtype=np.float64)
    if c.ndim == 0 or c.shape[-1] < 2:
        raise ValueError("need at least two pixel centers to define pixel edges")
    d = np.diff(c, axis=-1)
    if not (np.all(np.isfinite(c)) and np.all(d > 0)):
        raise ValueError("pixel centers must be finite and strictly increasing")
    edges = np.empty(c.shape[:-1] + (c.shape[-1] + 1,))
    edges[..., 1:-1] = 0.5 * (c[..., 1:] + c[..., :-1])
    edges[..., 0] = c[..., 0] - 0.5 * d[..., 0]
    edges[..., -1] = c[..., -1] + 0.5 * d[..., -1]
    return edges


def _local_spacings(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spacings ``d`` of the centers and the median spacing just left and right of each.

    ``left[..., i]`` is the median of ``d[i - 3 : i]`` and ``right[..., i]`` that of
    ``d[i + 1 : i + 4]``; missing spacings beyond the ends count as 0, so a side with
    fewer than two spacings has a local spacing of 0 (unknown).
    """
    d = np.diff(c, axis=-1)
    n, h = d.shape[-1], _GAP_WINDOW
    pad = np.zeros(d.shape[:-1] + (h,))
    dp = np.concatenate([pad, d, pad], axis=-1)

    def median3(start: int) -> np.ndarray:
        a, b, x = (dp[..., start + j : start + j + n] for j in range(3))
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), x))

    return d, median3(0), median3(h + 1)


def find_gaps(centers: np.ndarray, factor: float = GAP_FACTOR) -> np.ndarray:
    """Find gaps in a wavelength axis: spacings much larger than on both sides.

    Parameters
    ----------
    centers : numpy.ndarray
        Strictly increasing pixel centers, shape ``(..., M)`` with ``M >= 2``.
    factor : float, optional
        A spacing is a gap when it exceeds ``factor`` times the local spacing.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(..., M - 1)``: True where the spacing between centers ``i``
        and ``i + 1`` is a gap.

    Raises
    ------
    ValueError
        If the centers are not finite and strictly increasing, or ``factor`` is not
        greater than 1.

    Notes
    -----
    The local spacing of spacing ``d_i`` is ``max(median(d_(i-3), d_(i-2), d_(i-1)),
    median(d_(i+1), d_(i+2), d_(i+3)))``, the larger of the typical spacings on the two
    sides. Taking the larger side means that a step in the sampling (e.g. two arms with
    different dispersions joined end to end) is never a gap, and the medians ignore a
    single odd spacing, so a lone pixel between two gaps does not hide them. Sampling
    whose spacing changes by less than ``factor`` within about seven pixels (uniform,
    log-linear, any smooth dispersion relation) has no gaps. A gap is found when at
    least ``factor`` times the local spacing is missing between two centers, i.e. with
    the default of 3 from three missing pixels on; a side with fewer than two spacings
    (the first and last two pixels) has no local spacing, so axes shorter than four
    pixels never have gaps.
    """
    c = np.asarray(centers, dtype=np.float64)
    pixel_edges(c)  # validates
    if not factor > 1:
        raise ValueError(f"factor must be greater than 1, got {factor!r}")
    d, left, right = _local_spacings(c)
    ref = np.maximum(left, right)
    return (ref > 0) & (d > factor * ref)


def gap_edges(
    centers: np.ndarray, factor: float | None = GAP_FACTOR
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixel edges of an axis with gaps, with one pixel without data in each gap.

    Like `pixel_edges`, but where `find_gaps` finds a gap the pixels on either side
    extend only half their local spacing towards it, and the rest of the gap becomes an
    extra pixel (to be given weight 0, see `insert_gaps`).

    Parameters
    ----------
    centers : numpy.ndarray
        Strictly increasing pixel centers, shape ``(M,)`` or ``(N, M)``; every row must
        have the same number of gaps.
    factor : float or None, optional
        Gap criterion of `find_gaps`; `None` disables the detection (plain
        `pixel_edges`).

    Returns
    -------
    edges : numpy.ndarray
        Edges of the ``M + G`` pixels (``G`` gaps), shape ``(..., M + G + 1)``.
    columns : numpy.ndarray or None
        Position of each input pixel among the ``M + G`` pixels, shape ``(..., M)``;
        `None` when there is no gap (``edges`` is then ``pixel_edges(centers)``).

    Raises
    ------
    ValueError
        If the centers are not finite and strictly increasing, or rows have different
        numbers of gaps.
    """
    c = np.asarray(centers, dtype=np.float64)
    edges = pixel_edges(c)
    if factor is None:
        return edges, None
    if not factor > 1:
        raise ValueError(f"factor must be greater than 1, got {factor!r}")
    d, left, right = _local_spacings(c)
    ref = np.maximum(left, right)
    gap = (ref > 0) & (d > factor * ref)
    counts = np.count_nonzero(gap, axis=-1)
    if not np.any(counts):
        return edges, None
    if np.any(counts != counts.flat[0]):
        raise ValueError("every row must have the same number of gaps")
    half_left = 0.5 * np.where(left > 0, left, ref)
    half_right = 0.5 * np.where(right > 0, right, ref)
    lo, hi = edges[..., :-1].copy(), edges[..., 1:].copy()
    hi[..., :-1] = np.where(gap, c[..., :-1] + half_left, hi[..., :-1])
    lo[..., 1:] = np.where(gap, c[..., 1:] - half_right, lo[..., 1:])
    # the outer edges are extrapolated from the first/last spacing: not across a gap
    lo[..., 0] = np.where(gap[..., 0], c[..., 0] - half_left[..., 0], lo[..., 0])
    hi[..., -1] = np.where(gap[..., -1], c[..., -1] + half_right[..., -1], hi[..., -1])
    m = c.shape[-1]
    columns = np.broadcast_to(np.arange(m), c.shape).copy()
    columns[..., 1:] += np.cumsum(gap, axis=-1)
    out = np.empty(c.shape[:-1] + (m + int(counts.flat[0]) + 1,))
    np.put_along_axis(out, columns, lo, axis=-1)
    # where there is no gap this rewrites the next pixel's lower edge with the same value
    np.put_along_axis(out, columns + 1, hi, axis=-1)
    return out, columns


def insert_gaps(a: np.ndarray, columns: np.ndarray | None, size: int, fill: object) -> np.ndarray:
    """Spread the pixels of rows onto an axis with extra (gap) pixels.

    Parameters
    ----------
    a : numpy.ndarray
        Values, shape ``(R, M)``.
    columns : numpy.ndarray or None
        Position of each pixel on the new axis, shape ``(M,)`` or ``(R, M)``, strictly
        increasing (from `gap_edges`); `None` returns ``a`` itself.
    size : int
        Number of pixels of the new axis.
    fill : object
        Value of the pixels that are not in ``columns``.

    Returns
    -------
    numpy.ndarray
        Shape ``(R, size)``, the dtype of ``a``.
    """
    if columns is None:
        return a
    out = np.full((a.shape[0], size), fill, dtype=a.dtype)
    if columns.ndim == 1:  # copy runs of consecutive columns: much faster than fancy indexing
        breaks = np.flatnonzero(np.diff(columns) > 1) + 1
        for i0, i1 in zip(np.r_[0, breaks], np.r_[breaks, len(columns)], strict=True):
            out[:, columns[i0] : columns[i0] + (i1 - i0)] = a[:, i0:i1]
    else:
        np.put_along_axis(out, columns, a, axis=-1)
    return out


def flux_conserving_resample(
    wave_in: np.ndarray,
    flux: np.ndarray,
    var: np.ndarray | None,
    weight: np.ndarray | None,
    edges_out: np.ndarray,
    gap_factor: float | None = GAP_FACTOR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample many spectra onto output bins, conserving the flux integral.

    Each output bin gets the weighted mean flux density of the input over the bin,
    ``integral(flux * weight) / integral(weight)``, with input pixels treated as
    piecewise constant between the midpoints of their centers.

    Parameters
    ----------
    wave_in : numpy.ndarray
        Input pixel centers, strictly increasing: shape ``(M,)`` shared by all rows, or
        ``(N, M)`` one axis per row. Any length unit, the same as ``edges_out``.
    flux : numpy.ndarray
        Input flux densities, shape ``(N, M)`` (or ``(M,)`` for a single spectrum).
    var : numpy.ndarray or None
        Variance of ``flux``, same shape, or `None` to skip error propagation.
    weight : numpy.ndarray or None
        Non-negative pixel weights, same shape: 0/1 for a good-pixel mask, or floats.
        `None` means all ones. Pixels whose flux (or variance) is NaN or infinite, or
        whose variance is negative, get weight 0 whatever ``weight`` says.
    edges_out : numpy.ndarray
        Strictly increasing output bin edges, shape ``(K + 1,)`` shared by all rows, or
        ``(N, K + 1)`` one set per row.
    gap_factor : float or None, optional
        Gaps in ``wave_in`` (`find_gaps` with this ``factor``) hold no data: the pixels
        next to a gap extend half their local spacing towards it, not to the midpoint
        across it, and output bins inside the gap get no weight. `None` bridges gaps
        (every input pixel extends to the midpoints between centers).

    Returns
    -------
    flux_out : numpy.ndarray
        Resampled flux, shape ``(N, K)`` (``(K,)`` for 1-D ``flux``), float64. NaN where
        the bin has no weight or is not entirely inside the input's pixel coverage.
    var_out : numpy.ndarray
        Propagated variance, same shape; NaN where ``flux_out`` is NaN, and everywhere
        when ``var`` is `None`.
    valid_fraction : numpy.ndarray
        ``integral(weight) / bin width`` (in ``[0, 1]`` for weights in ``[0, 1]``); 0 for
        bins not entirely inside the input's pixel coverage.

    Raises
    ------
    ValueError
        If shapes disagree, an axis is not strictly increasing, or a weight is negative.

    Notes
    -----
    The variance of bin ``j`` is ``sum_i (w_i o_ij)**2 var_i / (sum_i w_i o_ij)**2``
    where ``o_ij`` is the overlap of input pixel ``i`` with the bin: the input pixels
    are assumed independent, and a pixel that only partly overlaps a bin contributes in
    proportion to the overlap. This is the exact variance of each output value, but the
    covariance between neighboring output bins that share an input pixel is ignored:
    when output bins are narrower than input pixels the per-bin variance stays that of
    the input pixel (the noise becomes correlated, it is not reduced).

    A bin that sticks out of the input coverage by less than ``1e-6`` of the outermost
    input pixel counts as inside, so that an input sampled exactly on the output grid
    keeps its end pixels despite rounding (e.g. after a unit conversion).
    """
    flux = np.asarray(flux, dtype=np.float64)
    one_d = flux.ndim == 1
    flux2 = np.atleast_2d(flux)
    if flux2.ndim != 2:
        raise ValueError(f"flux must be 1-D or 2-D, got shape {flux.shape}")
    n, m = flux2.shape
    var2 = None if var is None else _as_rows(var, (n, m), "var")
    weight2 = np.ones((n, m)) if weight is None else _as_rows(weight, (n, m), "weight")
    if np.any(weight2 < 0):
        raise ValueError("weights must be non-negative")
    wave = np.asarray(wave_in, dtype=np.float64)
    if wave.shape not in ((m,), (n, m)):
        raise ValueError(f"wave_in must have shape ({m},) or ({n}, {m}), got {wave.shape}")
    edges = np.asarray(edges_out, dtype=np.float64)
    if edges.ndim not in (1, 2) or edges.shape[-1] < 2 or (edges.ndim == 2 and len(edges) != n):
        raise ValueError(f"edges_out must have shape (K+1,) or ({n}, K+1), got {edges.shape}")
    if not (np.all(np.isfinite(edges)) and np.all(np.diff(edges, axis=-1) > 0)):
        raise ValueError("edges_out must be finite and strictly increasing")
    k = edges.shape[-1] - 1
    out_f = np.empty((n, k))
    out_v = np.full((n, k), np.nan)
    out_w = np.empty((n, k))
    # (rows or None for all, edges of the input pixels, their columns with gaps inserted)
    parts: list[tuple[np.ndarray | None, np.ndarray, np.ndarray | None]]
    if wave.ndim == 1 or gap_factor is None:
        parts = [(None, *gap_edges(wave, gap_factor))]
    else:  # per-row axes: rows with the same number of gaps together
        n_gaps = np.count_nonzero(find_gaps(wave, gap_factor), axis=-1)
        parts = []
        for g in np.unique(n_gaps):
            idx = np.flatnonzero(n_gaps == g)
            parts.append((None if len(idx) == n else idx, *gap_edges(wave[idx], gap_factor)))
    for idx, b, cols in parts:
        n_part = n if idx is None else len(idx)
        size = b.shape[-1] - 1
        shared = EdgeLocator(b) if b.ndim == 1 else None
        step = max(1, CHUNK_ELEMENTS // max(size, k))
        for r0 in range(0, n_part, step):
            local = slice(r0, min(n_part, r0 + step))
            rows = local if idx is None else idx[local]
            f = flux2[rows]
            good = np.isfinite(f) & (weight2[rows] > 0)
            if var2 is not None:
                good &= np.isfinite(var2[rows]) & (var2[rows] >= 0)
            w = np.where(good, weight2[rows], 0.0)
            u = None if var2 is None else np.where(good, var2[rows], 0.0) * (w * w)
            c = cols[local] if cols is not None and cols.ndim == 2 else cols
            res = resample_block(
                shared if shared is not None else EdgeLocator(b[local]),
                insert_gaps(np.where(good, f, 0.0) * w, c, size, 0.0),
                insert_gaps(w, c, size, 0.0),
                None if u is None else insert_gaps(u, c, size, 0.0),
                edges if edges.ndim == 1 else edges[rows],
            )
            out_f[rows], out_w[rows] = res[0], res[2]
            if res[1] is not None:
                out_v[rows] = res[1]
    if one_d:
        return out_f[0], out_v[0], out_w[0]
    return out_f, out_v, out_w


def _as_rows(a: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape != shape:
        raise ValueError(f"{name} must have the shape of flux {shape}, got {arr.shape}")
    return arr


class EdgeLocator:
    """Find the input pixel that contains each output edge, fast, for many rows.

    Parameters
    ----------
    b : numpy.ndarray
        Strictly increasing input pixel edges, shape ``(M + 1,)`` shared by all rows or
        ``(R, M + 1)`` one axis per row.

    Notes
    -----
    For a shared axis the search uses an exact formula when the pixels are uniform
    and otherwise a lookup table with at most one pixel edge per table cell followed by
    a one-step correction; both are several times faster than `numpy.searchsorted` for
    millions of edges. An edge that rounding puts in the neighboring pixel is harmless:
    the cumulative integrals are continuous across pixel edges. Per-row axes use one
    `numpy.searchsorted` over all rows.
    """

    def __init__(self, b: np.ndarray) -> None:
        self.b = b
        self.width = np.diff(b, axis=-1)
        self.m = b.shape[-1] - 1
        self.lo = b[..., :1]
        self.hi = b[..., -1:]
        #: Coverage limits used to decide whether an output bin is inside the input.
        self.inner_lo = self.lo - _EDGE_TOLERANCE * self.width[..., :1]
        self.inner_hi = self.hi + _EDGE_TOLERANCE * self.width[..., -1:]
        self._mode = "search"
        #: Pixel width when all pixels are equally wide (shared axis only), else None.
        self.step: float | None = None
        if b.ndim == 1:
            self._b0, self._b1 = float(b[0]), float(b[-1])
            step = (self._b1 - self._b0) / self.m
            if np.all(np.abs(b - (self._b0 + step * np.arange(self.m + 1))) <= 1e-9 * step):
                self._mode, self._inv = "uniform", 1.0 / step
                self.step = step
            else:
                h = 0.5 * float(self.width.min())
                n_cells = int(np.ceil((self._b1 - self._b0) / h)) + 1
                if n_cells <= _MAX_TABLE_FACTOR * (self.m + 1):
                    self._mode, self._inv = "table", 1.0 / h
                    cells = self._b0 + h * np.arange(n_cells)
                    # the last cell may start at or beyond b[-1]: searchsorted then
                    # returns pixel m, which does not exist (and b[m + 1] even less)
                    self._table = np.minimum(
                        np.searchsorted(b, cells, side="right") - 1, self.m - 1
                    )

    def locate(self, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Locate edges in the input pixels.

        Parameters
        ----------
        edges : numpy.ndarray
            Positions, shape ``(E,)`` or ``(R, E)``.

        Returns
        -------
        e : numpy.ndarray
            The positions clipped to the input coverage ``[b_0, b_M]``.
        k : numpy.ndarray
            Index of the pixel containing each clipped position, in ``[0, M - 1]``.
        left : numpy.ndarray
            ``e - b[k]``, the part of pixel ``k`` below the position.
        """
        b, m = self.b, self.m
        if b.ndim == 2:
            e = np.clip(edges, self.lo, self.hi)
            r = b.shape[0]
            lo = min(b[:, 0].min(), e.min())
            span = max(b[:, -1].max(), e.max()) - lo + 1.0
            shift = (np.arange(r) * span)[:, None]
            ee = np.broadcast_to(e, (r, e.shape[-1]))
            k = np.searchsorted((b - lo + shift).ravel(), (ee - lo + shift).ravel(), side="right")
            k = np.clip(k.reshape(r, -1) - 1 - (np.arange(r) * (m + 1))[:, None], 0, m - 1)
            return e, k, e - np.take_along_axis(b, k, axis=-1)
        e = np.maximum(edges, self._b0)
        np.minimum(e, self._b1, out=e)
        if self._mode == "search":
            k = np.searchsorted(b, e, side="right") - 1
            np.minimum(k, m - 1, out=k)
            return e, k, e - b[k]
        x = e - self._b0
        x *= self._inv
        if self._mode == "uniform":
            k = x.astype(np.intp)
            np.minimum(k, m - 1, out=k)
        else:
            j = x.astype(np.intp)
            np.minimum(j, len(self._table) - 1, out=j)
            k = np.take(self._table, j)
            k += np.take(b, k + 1) <= e
            np.minimum(k, m - 1, out=k)
        return e, k, e - np.take(b, k)


def resample_block(
    locator: EdgeLocator,
    fw: np.ndarray,
    w: np.ndarray,
    u: np.ndarray | None,
    edges: np.ndarray,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Core of `flux_conserving_resample` for one block of rows (no input checks).

    Parameters
    ----------
    locator : EdgeLocator
        The input pixel edges (``M + 1`` of them, shared or one set per row).
    fw : numpy.ndarray
        ``flux * weight``, shape ``(R, M)``, zero (not NaN) where the weight is 0.
    w : numpy.ndarray
        Weights, shape ``(R, M)``, non-negative.
    u : numpy.ndarray or None
        ``variance * weight**2``, shape ``(R, M)``, zero where the weight is 0, or `None`.
    edges : numpy.ndarray
        Strictly increasing output edges of one contiguous segment, shape ``(K + 1,)``
        or ``(R, K + 1)``, in the unit of the locator's edges.
    scale : numpy.ndarray or None, optional
        Positive factors, shape ``(R,)``: row ``i`` uses ``edges * scale[i]`` (1-D
        ``edges`` only). This is how per-spectrum Doppler shifts are applied.

    Returns
    -------
    flux_out, var_out, valid_fraction : numpy.ndarray
        Shape ``(R, K)``; ``var_out`` is `None` when ``u`` is `None`. See
        `flux_conserving_resample` for their meaning.

    Notes
    -----
    With ``k`` the pixel holding an edge and ``l``, ``r`` the parts of that pixel below
    and above it, the flux integral up to the edge is ``F(e) = cumF[k] + fw[k] * l``.
    The variance of a bin spanning several pixels is ``H(e2) - H(e1) - q(e1) - q(e2)``
    with ``H(e) = cumV[k] + u[k] * width[k] * l`` and ``q(e) = u[k] * l * r``, which
    replaces the linear share of each partial pixel by its exact quadratic share; a bin
    inside a single pixel needs ``2 * u[k] * l1 * r2`` more, which gives
    ``u[k] * (e2 - e1)**2``.
    """
    r, m = fw.shape
    if scale is not None and (locator.b.ndim != 1 or np.ndim(edges) != 1):
        raise ValueError("scale needs a shared input axis and 1-D edges")
    width = locator.width
    fww = fw * width
    cw = _exclusive_cumsum(w * width)
    if scale is not None:
        row_edges = np.multiply.outer(scale, edges)
        bin_width = np.multiply.outer(scale, np.diff(edges))
    else:
        row_edges = edges
        bin_width = np.diff(edges, axis=-1)
    e, k, left = locator.locate(row_edges)
    flat = k + (np.arange(r) * m)[:, None]
    same = np.broadcast_to(k[..., 1:] == k[..., :-1], (r, flat.shape[1] - 1))
    g = np.take(fw, flat)
    g *= left
    g_w = np.take(w, flat)
    g_w *= left
    g_w += np.take(cw, flat)
    w_out = g_w[:, 1:] - g_w[:, :-1]
    del g_w
    ok = w_out > _EMPTY_FRACTION * bin_width
    frac = w_out / bin_width
    # bins not entirely inside the coverage are invalid; those entirely outside have no
    # weight already, so with per-row scales only the (at most two) straddling bins of
    # each row need fixing
    if scale is not None:
        rows = np.arange(r)
        n_bins = len(edges) - 1
        for j in (
            np.searchsorted(edges, locator.inner_lo[0] / scale, side="left") - 1,
            np.searchsorted(edges, locator.inner_hi[0] / scale, side="right") - 1,
        ):
            sel = (j >= 0) & (j < n_bins)
            ok[rows[sel], j[sel]] = False
            frac[rows[sel], j[sel]] = 0.0
    else:
        inside = (edges[..., :-1] >= locator.inner_lo) & (edges[..., 1:] <= locator.inner_hi)
        ok &= inside
        frac *= inside
    np.maximum(frac, 0.0, out=frac)
    flux_out = np.full(w_out.shape, np.nan)
    num = _bin_sums(fww, flat, same)
    num += g[:, 1:]
    num -= g[:, :-1]
    np.divide(num, w_out, out=flux_out, where=ok)
    del g, num
    if u is None:
        return flux_out, None, frac

    uww = u * (width * width)
    if locator.step is not None:  # uniform pixels
        width_k = locator.step
        right = width_k - left
    else:
        width_k = np.take(width, flat) if width.ndim == 2 else np.take(width, k)
        right = width_k - left
    ul = np.take(u, flat)
    ul *= left
    h = ul * width_k
    v = _bin_sums(uww, flat, same)
    v += h[:, 1:]
    v -= h[:, :-1]
    del h
    if np.any(same):
        corr = ul[:, :-1] * right[..., 1:]
        corr *= 2.0 * same
        v += corr
    ul *= right  # q(e)
    v -= ul[:, 1:]
    v -= ul[:, :-1]
    np.maximum(v, 0.0, out=v)
    var_out = np.full(v.shape, np.nan)
    np.divide(v, w_out * w_out, out=var_out, where=ok)
    return flux_out, var_out, frac


def _bin_sums(a: np.ndarray, flat: np.ndarray, same: np.ndarray) -> np.ndarray:
    """``sum(a[i, k[i, j] : k[i, j + 1]])`` for every row ``i`` and bin ``j``, shape (R, E - 1).

    ``flat`` holds the pixel indices ``k`` of the E edges of each row into ``a.ravel()``
    (non-decreasing); ``same`` is True where a bin starts and ends in the same pixel. Each
    sum runs over the bin's own pixels only: differences of a running sum would lose the
    precision of every later bin to one huge value earlier in the row (a bad pixel of
    1e30), and would make a row depend on how far its input window reaches.
    """
    out = np.add.reduceat(a.ravel(), flat.ravel()).reshape(flat.shape)[:, :-1]
    out[same] = 0.0  # reduceat gives a[k] for an empty range
    return out


def _exclusive_cumsum(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    out[:, 0] = 0.0
    np.cumsum(a[:, :-1], axis=1, out=out[:, 1:])
    return out
