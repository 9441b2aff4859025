"""Resample groups of blocks onto the model grid, chunk by chunk.

The second half of `~specutils_cinn.inputs.prepare_spectra`: for each group of blocks that
share a wavelength axis (`_Geometry`: where that axis meets each grid segment), rows are
processed in chunks of about `~specutils_cinn.inputs.resampling.CHUNK_ELEMENTS` array
elements. For each chunk the usable input pixels and their variances are extracted
(`_extract`), ``normalize="auto"`` is decided per row (`_auto_normalize`), noise is
estimated where asked (`_estimate_noise`), and every segment is resampled, divided by its
continuum and stored in the result arrays (`_resample_chunk`, `_Output`).

`FILL_FLUX`, `FILL_SIGMA` and `AUTO_NORMALIZED_RANGE` are public through
`specutils_cinn.inputs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from specutils.utils.wcs_utils import air_to_vac, vac_to_air

from ..wavelength_grid import WavelengthGrid
from .collect import _Block
from .noise_estimate import der_snr, masked_quantile
from .normalization import fit_segment_continuum
from .pixel_mask import mask_pixels
from .resampling import CHUNK_ELEMENTS, EdgeLocator, gap_edges, insert_gaps, resample_block

__all__ = ["AUTO_NORMALIZED_RANGE", "FILL_FLUX", "FILL_SIGMA"]

#: Flux stored at invalid pixels (the continuum level of a normalized spectrum).
FILL_FLUX = 1.0
#: Uncertainty stored at invalid pixels: effectively infinite for normalized flux.
FILL_SIGMA = 1.0e3
#: ``normalize="auto"`` treats dimensionless flux as normalized when the median over
#: the spectra of an input of their 90th flux percentiles lies in this range.
AUTO_NORMALIZED_RANGE = (0.8, 1.2)
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
_ABSOLUTE, _RELATIVE, _ESTIMATED = 0, 1, 2


@dataclass(eq=False)
class _Segment:
    index: int  # segment number in the grid
    out: slice  # its pixels in the grid
    edges: np.ndarray  # rest-frame bin edges (K + 1,)
    cols: slice  # input pixels that can overlap it for any row of the group
    locator: EdgeLocator  # edges of those pixels and of the gaps between them
    step: float
    size: int  # number of pixels of the locator: len(cols) plus the gaps among them
    gap_cols: np.ndarray | None  # where the pixels ``cols`` go among them (None: no gap)
    pix_lo: np.ndarray  # (size,) lower and upper edges of the locator's pixels
    pix_hi: np.ndarray

    def own(self, d: np.ndarray) -> np.ndarray:
        """(rows, size) bool: the pixels that overlap this segment for each row's own Doppler
        factor ``d`` (the group's window is wider when the rows' velocities differ)."""
        lo, hi = self.edges[0] * d[:, None], self.edges[-1] * d[:, None]
        return (self.pix_hi[None, :] > lo) & (self.pix_lo[None, :] < hi)


class _Geometry:
    """One group of blocks sharing an axis, and how that axis meets the grid."""

    def __init__(self, blocks: list[_Block], grid: WavelengthGrid, medium: str, factor: np.ndarray):
        self.blocks = blocks
        self.rows = np.concatenate([b.rows for b in blocks])
        wave = blocks[0].wave
        if medium != grid.medium:
            convert = air_to_vac if medium == "air" else vac_to_air
            wave = convert(wave * u.AA).to_value(u.AA)
        # edges of the input pixels with a pixel without data in each gap of the axis
        self.b, columns = gap_edges(wave)
        b = self.b
        self.width = np.diff(b) if columns is None else np.diff(b)[columns]
        d = factor[self.rows]
        d_lo, d_hi = float(d.min()), float(d.max())
        self.overlap = np.zeros(len(self.rows), dtype=bool)
        self.segments: list[_Segment] = []
        for i, (seg, sl) in enumerate(zip(grid.segments, grid.segment_slices, strict=True)):
            e = seg.edges
            self.overlap |= (e[-1] * d > b[0]) & (e[0] * d < b[-1])
            lo, hi = e[0] * d_lo, e[-1] * d_hi
            if hi <= b[0] or lo >= b[-1]:
                continue
            c0 = max(int(np.searchsorted(b, lo, side="right")) - 1, 0)
            c1 = min(int(np.searchsorted(b, hi, side="left")), len(b) - 1)
            c1 = max(c1, c0 + 1)
            locator = EdgeLocator(b[c0 : c1 + 1])
            cols, gap_cols = slice(c0, c1), None
            if columns is not None:  # c0, c1 count gap pixels too: the input pixels in them
                p0, p1 = np.searchsorted(columns, [c0, c1])
                cols = slice(int(p0), int(p1))
                if p1 - p0 != c1 - c0:
                    gap_cols = columns[cols] - c0
            self.segments.append(_Segment(i, sl, e, cols, locator, seg.step, c1 - c0, gap_cols,
                                          b[c0:c1], b[c0 + 1 : c1 + 1]))

    @property
    def max_width(self) -> int:
        return max([1] + [max(s.size, len(s.edges)) for s in self.segments])


# ------------------------------------------------------------------------- processing


class _Output:
    """The result arrays, filled group by group; ``masked`` (or None) are the model's masked
    pixels, invalid in every row and not counted in the coverage."""

    def __init__(self, n: int, grid: WavelengthGrid, masked: np.ndarray | None = None) -> None:
        self.flux = np.full((n, grid.npix), FILL_FLUX, dtype=np.float32)
        self.sigma = np.full((n, grid.npix), FILL_SIGMA, dtype=np.float32)
        self.valid = np.zeros((n, grid.npix), dtype=bool)
        self.snr = np.full(n, np.nan)
        self.coverage = np.zeros(n)
        self.overlap = np.zeros(n, dtype=bool)
        self.any_usable = np.zeros(n, dtype=bool)
        self.normalized = np.ones(n, dtype=bool)
        self.masked = masked
        self.n_unmasked = grid.npix if masked is None else int(np.count_nonzero(~masked))


def _chunks(blocks: list[_Block], n_rows: int) -> Iterator[list[tuple[_Block, slice]]]:
    """Pieces of blocks adding up to ``n_rows`` rows (the last chunk may be shorter)."""
    pending: list[tuple[_Block, slice]] = []
    count = 0
    for b in blocks:
        r0 = 0
        while r0 < b.n_rows:
            take = min(b.n_rows - r0, n_rows - count)
            pending.append((b, slice(r0, r0 + take)))
            count += take
            r0 += take
            if count == n_rows:
                yield pending
                pending, count = [], 0
    if pending:
        yield pending


def _as64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _process_group(
    geo: _Geometry,
    factor: np.ndarray,
    snr_rows: np.ndarray | None,
    estimate: bool,
    normalize: bool | str,
    continuum: tuple[int, int, float],
    min_valid_fraction: float,
    out: _Output,
) -> None:
    out.overlap[geo.rows] = geo.overlap
    if not geo.segments:
        return
    chunk_rows = max(1, CHUNK_ELEMENTS // geo.max_width)
    for pieces in _chunks(geo.blocks, chunk_rows):
        gids = np.concatenate([b.rows[sl] for b, sl in pieces])
        mode = np.concatenate(
            [
                np.full(
                    sl.stop - sl.start,
                    _ABSOLUTE if b.unc_kind else (_ESTIMATED if estimate else _RELATIVE),
                )
                for b, sl in pieces
            ]
        )
        inputs = [_extract(pieces, seg, geo, snr_rows) for seg in geo.segments]
        # each row's own input pixels: decisions and estimates use no pixel beyond them
        own = [seg.own(factor[gids]) for seg in geo.segments]
        if normalize == "auto":
            dimensionless = np.concatenate(
                [np.full(sl.stop - sl.start, b.dimensionless) for b, sl in pieces]
            )
            out.normalized[gids] = _auto_normalize(inputs, own, dimensionless)
        est = mode == _ESTIMATED
        if np.any(est):
            _estimate_noise(inputs, est, own)
        any_usable = np.zeros(len(gids), dtype=bool)
        for _, usable, _ in inputs:
            any_usable |= usable.any(axis=1)
        out.any_usable[gids] = any_usable
        _resample_chunk(
            gids, inputs, mode, geo, factor[gids], out.normalized[gids], continuum,
            min_valid_fraction, out,
        )


def _extract(
    pieces: list[tuple[_Block, slice]], seg: _Segment, geo: _Geometry, snr_rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flux, usable, variance) of the chunk's input pixels that can reach a segment.

    Consecutive pieces of the same kind (e.g. many one-row spectra) are stacked and
    converted with one set of numpy calls.
    """
    runs: list[list[tuple[_Block, slice]]] = []
    for b, sl in pieces:
        if runs and _signature(runs[-1][0][0]) == _signature(b):
            runs[-1].append((b, sl))
        else:
            runs.append([(b, sl)])
    parts = [_extract_run(run, seg.cols, geo.width, snr_rows) for run in runs]
    if len(parts) == 1:
        f, usable, var = parts[0]
    else:
        f, usable, var = (np.concatenate([p[i] for p in parts]) for i in range(3))
    if seg.gap_cols is None:
        return f, usable, var
    # gaps in the axis become pixels without data
    return (
        insert_gaps(f, seg.gap_cols, seg.size, np.nan),
        insert_gaps(usable, seg.gap_cols, seg.size, False),
        insert_gaps(var, seg.gap_cols, seg.size, 0.0),
    )


def _signature(b: _Block) -> tuple[Any, ...]:
    return (b.unc_kind, b.unc_factor, b.flux_scale, b.mask is None)


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


def _extract_run(
    run: list[tuple[_Block, slice]], cols: slice, width: np.ndarray, snr_rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_extract` for pieces that share uncertainty kind, units and mask presence."""
    first = run[0][0]
    f = _as64(_stack([b.flux[sl, cols] for b, sl in run]))
    if first.flux_scale != 1.0:
        f = f * first.flux_scale
    ok = np.isfinite(f)
    if first.mask is not None:
        ok &= ~_stack([b.mask[sl, cols] for b, sl in run])
    if first.unc_kind is not None:
        a = _as64(_stack([b.unc[sl, cols] for b, sl in run]))
        if first.unc_factor != 1.0:
            a = a * first.unc_factor
        if first.unc_kind == "std":
            # a non-positive standard deviation marks a bad pixel (sigma = -1 is a common
            # flag value): squaring would drop its sign and make it valid
            var = np.where(a > 0, a * a, np.nan)
        elif first.unc_kind == "var":
            var = a
        else:
            var = np.full(a.shape, np.inf)
            np.divide(1.0, a, out=var, where=a > 0)
        ok &= np.isfinite(var) & (var > 0)
    elif snr_rows is not None:
        # relative variance: (continuum / (snr * sqrt(width)))**2 with continuum 1
        snr = snr_rows[np.concatenate([b.rows[sl] for b, sl in run])]
        var = (1.0 / (snr * snr))[:, None] / width[cols][None, :]
    else:
        var = np.zeros(f.shape)  # filled in by _estimate_noise
    return f, ok, var


def _auto_normalize(
    inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    own: list[np.ndarray],
    dimensionless: np.ndarray,
) -> np.ndarray:
    """``normalize="auto"``: which rows get a continuum fit, each on its own pixels."""
    f = np.concatenate([f for f, _, _ in inputs], axis=1)
    ok = np.concatenate([o & w for (_, o, _), w in zip(inputs, own, strict=True)], axis=1)
    with np.errstate(invalid="ignore"):
        p90 = masked_quantile(f, ok, 0.9)
    lo, hi = AUTO_NORMALIZED_RANGE
    return ~(dimensionless & (p90 >= lo) & (p90 <= hi))  # NaN: normalize


def _estimate_noise(
    inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    est: np.ndarray,
    own: list[np.ndarray],
) -> None:
    """DER_SNR noise of rows ``est`` over their own input pixels of all segments (in place)."""
    gap_f = np.full((int(est.sum()), 2), np.nan)
    gap_ok = np.zeros(gap_f.shape, dtype=bool)
    f = np.concatenate([x for f, _, _ in inputs for x in (f[est], gap_f)], axis=1)
    ok = np.concatenate(
        [x for (_, o, _), w in zip(inputs, own, strict=True) for x in ((o & w)[est], gap_ok)],
        axis=1,
    )
    _, noise, _ = der_snr(f, ok)
    good = np.isfinite(noise) & (noise > 0)
    noise2 = np.where(good, noise, 1.0) ** 2
    for _, usable, var in inputs:
        var[est] = noise2[:, None]
        usable[est] &= good[:, None]


def _resample_chunk(
    gids: np.ndarray,
    inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    mode: np.ndarray,
    geo: _Geometry,
    d: np.ndarray,
    norm: np.ndarray,
    continuum: tuple[int, int, float],
    min_valid_fraction: float,
    out: _Output,
) -> None:
    """Resample, normalize and store one chunk of rows for every segment."""
    degree, n_iter, floor = continuum
    rows = _as_slice(gids)
    shared = bool(np.all(d == d[0]))
    all_norm, any_norm = bool(np.all(norm)), bool(np.any(norm))
    sigma_by_cont = norm & (mode != _RELATIVE)
    all_sigma_by_cont = bool(np.all(sigma_by_cont))
    n_cols = sum(len(seg.edges) - 1 for seg in geo.segments)
    ratio = np.empty((len(gids), n_cols))
    valid_all = np.empty((len(gids), n_cols), dtype=bool)
    col = 0
    for seg, (f, usable, var) in zip(geo.segments, inputs, strict=True):
        fo, vo, frac = resample_block(
            seg.locator,
            np.where(usable, f, 0.0),
            usable.astype(np.float64),
            np.where(usable, var, 0.0),
            seg.edges * d[0] if shared else seg.edges,
            scale=None if shared else d,
        )
        valid = frac >= min_valid_fraction  # implies a finite fo and vo
        # the model's masked pixels: as if the input had no data there (before the continuum)
        valid = mask_pixels(valid, None if out.masked is None else out.masked[seg.out])
        if any_norm:
            if all_norm:
                cont = fit_segment_continuum(fo, valid, degree, n_iter, floor=floor)[0]
            else:
                cont = np.ones(fo.shape)
                cont[norm] = fit_segment_continuum(fo[norm], valid[norm], degree, n_iter,
                                                   floor=floor)[0]
            valid &= cont > 0  # False where the fit failed (NaN)
            np.divide(fo, cont, out=fo, where=valid)  # rows not normalized have cont == 1
            cont *= cont
            if not all_sigma_by_cont:
                cont[~sigma_by_cont] = 1.0
            np.divide(vo, cont, out=vo, where=valid)
        sig = np.sqrt(vo)
        # values that float32 cannot hold (no overflow, no zero uncertainty)
        valid &= (np.abs(fo) < _F32_MAX) & (sig < _F32_MAX) & (sig > _F32_TINY)
        dest = slice(col, col + fo.shape[1])
        np.divide(fo, sig, out=ratio[:, dest], where=valid)
        valid_all[:, dest] = valid
        col = dest.stop
        if isinstance(rows, slice):
            np.copyto(out.flux[rows, seg.out], fo, where=valid, casting="same_kind")
            np.copyto(out.sigma[rows, seg.out], sig, where=valid, casting="same_kind")
        else:
            out.flux[rows, seg.out] = np.where(valid, fo, FILL_FLUX)
            out.sigma[rows, seg.out] = np.where(valid, sig, FILL_SIGMA)
        out.valid[rows, seg.out] = valid
        per_aa = ratio[:, dest]
        np.multiply(per_aa, 1.0 / np.sqrt(seg.step), out=per_aa, where=valid)  # S/N per Angstrom
    out.coverage[gids] = np.count_nonzero(valid_all, axis=1) / max(out.n_unmasked, 1)
    out.snr[gids] = masked_quantile(ratio, valid_all, 0.5)


def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
    """A slice for consecutive indices (fast writes), else the index array."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx
