"""Walk specutils objects into blocks: rows that share one wavelength axis.

`_collect` takes what `~specutils_cinn.inputs.prepare_spectra` was given (a
`~specutils.Spectrum` of any dimension, a `~specutils.SpectrumCollection`, a
`~specutils.SpectrumList`, nested lists or tuples of them) and returns `_Block` objects:
views of the flux, mask and uncertainty of each object as rows ``(R, M)`` on an increasing
wavelength axis in Angstrom, with the units needed to convert them, each row's own Doppler
factor, its position in the input and the content hash of its data (`_block_hash`).
`_group_blocks` gathers the blocks with identical axes, which are resampled together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from specutils import Spectrum, SpectrumCollection

from .._hashing import hash_rows, hash_text, splitmix64
from .resampling import CHUNK_ELEMENTS
from .units import (
    _angstrom,
    _check_flux_unit,
    _dimensionless_scale,
    _memo,
    _monotonic,
    _own_doppler,
    _uncertainty_factor,
)

__all__: list[str] = []


@dataclass(eq=False)
class _Block:
    """Rows of one input object that share one wavelength axis (arrays are views)."""

    label: str
    wave: np.ndarray  # (M,) Angstrom, input medium, strictly increasing
    flux: np.ndarray  # (R, M)
    mask: np.ndarray | None  # (R, M), True = bad
    unc: np.ndarray | None  # (R, M) raw uncertainty values
    unc_kind: str | None  # "std", "var", "ivar"
    unc_factor: float  # raw uncertainty * factor = same kind in the working flux unit
    flux_scale: float  # raw flux * scale = working flux unit
    dimensionless: bool
    z_factor: np.ndarray  # (R,) 1 + z from the spectrum's own redshift
    source: int
    index: list[tuple[int, ...]]
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unit_key: str = ""  # flux unit, uncertainty kind and conversion: part of the content hash

    @property
    def n_rows(self) -> int:
        return int(self.flux.shape[0])


def _collect(spectra: Any) -> list[_Block]:
    if isinstance(spectra, Spectrum | SpectrumCollection):
        items: list[Any] = [spectra]
    elif isinstance(spectra, list | tuple):
        items = list(spectra)
        if not items:
            raise ValueError("no spectra given (empty list)")
    else:
        raise TypeError(
            f"unsupported input type {type(spectra).__name__}: expected a specutils Spectrum, "
            "SpectrumCollection, SpectrumList, or a list or tuple of them"
        )
    blocks: list[_Block] = []
    n_rows = [0]
    for i, item in enumerate(items):
        _walk(item, i, (), blocks, n_rows)
    return blocks


def _walk(
    item: Any, source: int, path: tuple[int, ...], blocks: list[_Block], n_rows: list[int]
) -> None:
    """Append the blocks of ``item``; ``n_rows[0]`` counts the rows so far."""
    label = f"#{source}" + "".join(f"[{j}]" for j in path)
    if isinstance(item, Spectrum):
        new = _spectrum_blocks(item, source, path, label)
    elif isinstance(item, SpectrumCollection):
        new = _collection_blocks(item, source, path, label)
    elif isinstance(item, list | tuple):
        for j, sub in enumerate(item):
            _walk(sub, source, path + (j,), blocks, n_rows)
        return
    else:
        raise TypeError(
            f"unsupported input type {type(item).__name__} (input {label}): expected a "
            "specutils Spectrum, SpectrumCollection, SpectrumList, or a list or tuple of them"
        )
    for b in new:  # rows hold positions inside the item until here
        b.rows = b.rows + n_rows[0]
    n_rows[0] += sum(b.n_rows for b in new)
    blocks.extend(new)


def _spectrum_blocks(s: Spectrum, source: int, path: tuple[int, ...], label: str) -> list[_Block]:
    flux_q = s.flux
    _check_flux_unit(flux_q.unit, label)
    axis = int(getattr(s, "spectral_axis_index", flux_q.ndim - 1)) % max(flux_q.ndim, 1)
    wave = _angstrom(s.spectral_axis, label)
    flux = np.moveaxis(np.asarray(flux_q.value), axis, -1)
    shape, m = flux.shape[:-1], flux.shape[-1]
    if wave.shape != (m,):
        raise ValueError(
            f"input {label}: spectral axis has shape {wave.shape}, flux {flux_q.shape}"
        )
    mask = _rows(s.mask, flux_q.shape, axis, m, label, "mask")
    unc, kind, factor, scale = _uncertainty(s.uncertainty, flux_q, axis, m, label)
    d = _own_doppler(s.spectral_axis)
    n_rows = int(np.prod(shape, dtype=np.int64))
    index = [path + ix for ix in np.ndindex(*shape)] if shape else [path]
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    blk = _make_block(
        label, wave, flux.reshape(n_rows, m), mask, unc, kind, factor, scale, flux_q.unit,
        np.full(n_rows, d), source, index,
    )  # fmt: skip
    blk.rows = np.arange(n_rows, dtype=np.int64)
    return [blk]


def _collection_blocks(
    sc: SpectrumCollection, source: int, path: tuple[int, ...], label: str
) -> list[_Block]:
    flux_q = sc.flux
    _check_flux_unit(flux_q.unit, label)
    if flux_q.ndim < 2:
        raise ValueError(f"input {label}: a SpectrumCollection needs 2-D flux, got {flux_q.shape}")
    m = flux_q.shape[-1]
    shape = flux_q.shape[:-1]
    n_rows = int(np.prod(shape, dtype=np.int64))
    flux = np.asarray(flux_q.value).reshape(n_rows, m)
    waves = _angstrom(sc.spectral_axis, label, monotonic=False)
    if waves.shape != flux_q.shape:
        raise ValueError(
            f"input {label}: spectral axes {waves.shape} do not match flux {flux_q.shape}"
        )
    waves = waves.reshape(n_rows, m)
    mask = _rows(sc.mask, flux_q.shape, flux_q.ndim - 1, m, label, "mask")
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    unc, kind, factor, scale = _uncertainty(sc.uncertainty, flux_q, flux_q.ndim - 1, m, label)
    d = _own_doppler(sc.spectral_axis)
    index = [path + ix for ix in np.ndindex(*shape)]
    if n_rows == 0:
        return []
    if np.array_equal(waves, np.broadcast_to(waves[0], waves.shape)):
        groups = [np.arange(n_rows)]
    else:
        _, inverse = np.unique(waves, axis=0, return_inverse=True)
        groups = [np.flatnonzero(inverse.ravel() == g) for g in range(inverse.max() + 1)]
    blocks = []
    for rows in groups:
        sub = slice(None) if len(rows) == n_rows else rows
        wave, flip = _monotonic(waves[rows[0]], label)
        order = slice(None, None, -1) if flip else slice(None)
        blk = _make_block(
            label, wave, flux[sub][:, order], None if mask is None else mask[sub][:, order],
            None if unc is None else unc[sub][:, order], kind, factor, scale, flux_q.unit,
            np.full(len(rows), d), source, [index[r] for r in rows],
        )  # fmt: skip
        blk.rows = rows.astype(np.int64)
        blocks.append(blk)
    return blocks


def _make_block(
    label: str,
    wave: np.ndarray,
    flux: np.ndarray,
    mask: np.ndarray | None,
    unc: np.ndarray | None,
    kind: str | None,
    unc_factor: float,
    flux_scale: float,
    unit: u.UnitBase,
    z_factor: np.ndarray,
    source: int,
    index: list[tuple[int, ...]],
) -> _Block:
    if wave.ndim == 1 and len(wave) >= 2 and wave[-1] < wave[0]:
        wave = wave[::-1]
        flux = flux[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
        unc = None if unc is None else unc[:, ::-1]
    return _Block(
        label=label,
        wave=wave,
        flux=flux,
        mask=mask,
        unc=unc,
        unc_kind=kind,
        unc_factor=unc_factor,
        flux_scale=flux_scale,
        dimensionless=_memo(_dimensionless_scale, unit) is not None,
        z_factor=z_factor,
        source=source,
        index=index,
        unit_key=f"{unit}|{kind}|{unc_factor!r}|{flux_scale!r}",
    )


_SALT_FLUX, _SALT_UNC = 0x1F1, 0x2E2


def _block_hash(b: _Block) -> np.ndarray:
    """`PreparedSpectra.content_hash` of the rows of a block (see there).

    Unusable pixels (masked, non-finite flux, an uncertainty that is not a positive finite
    number) hash as NaN flux and NaN uncertainty whatever their values, so that a pixel
    marked bad through its uncertainty gives the same hash, hence the same draws, as the
    same pixel masked.
    """
    h = np.empty(b.n_rows, dtype=np.uint64)
    step = max(1, CHUNK_ELEMENTS // max(len(b.wave), 1))
    for r0 in range(0, b.n_rows, step):
        sl = slice(r0, r0 + step)
        f = np.asarray(b.flux[sl], dtype=np.float64)  # raw values: the unit is in unit_key
        ok = np.isfinite(f)
        if b.mask is not None:
            ok &= ~b.mask[sl]
        if b.unc is not None:
            a = np.asarray(b.unc[sl], dtype=np.float64)
            ok &= np.isfinite(a) & (a > 0)
        hr = hash_rows(np.where(ok, f, np.nan), _SALT_FLUX)
        if b.unc is not None:
            hr = splitmix64(hr ^ hash_rows(np.where(ok, a, np.nan), _SALT_UNC))
        h[sl] = hr
    return splitmix64(h ^ hash_text(b.unit_key))


def _rows(
    arr: Any, shape: tuple[int, ...], axis: int, m: int, label: str, what: str
) -> np.ndarray | None:
    """An array with the flux's shape as (rows, M) with the spectral axis last."""
    if arr is None:
        return None
    a = np.asarray(arr)
    if a.shape != shape:
        try:
            a = np.broadcast_to(a, shape)
        except ValueError as exc:
            raise ValueError(
                f"input {label}: {what} shape {a.shape} does not match flux {shape}"
            ) from exc
    return np.moveaxis(a, axis, -1).reshape(-1, m)


def _uncertainty(
    unc: Any, flux_q: u.Quantity, axis: int, m: int, label: str
) -> tuple[np.ndarray | None, str | None, float, float]:
    """Uncertainty rows, kind, factor to the working unit, and the flux scale."""
    unit = flux_q.unit
    scale = _memo(_dimensionless_scale, unit) or 1.0
    if unc is None:
        return None, None, 1.0, scale
    if isinstance(unc, StdDevUncertainty):
        kind = "std"
    elif isinstance(unc, VarianceUncertainty):
        kind = "var"
    elif isinstance(unc, InverseVariance):
        kind = "ivar"
    else:
        try:
            unc = unc.represent_as(StdDevUncertainty)
        except Exception as exc:
            raise ValueError(
                f"input {label}: cannot use an uncertainty of type {type(unc).__name__}; use "
                "StdDevUncertainty, VarianceUncertainty or InverseVariance"
            ) from exc
        kind = "std"
    try:
        factor = _memo(_uncertainty_factor, kind, unc.unit, unit)
    except u.UnitsError as exc:
        raise ValueError(
            f"input {label}: uncertainty unit '{unc.unit}' does not match the flux unit '{unit}'"
        ) from exc
    return _rows(unc.array, flux_q.shape, axis, m, label, "uncertainty"), kind, factor, scale


def _group_blocks(blocks: list[_Block]) -> list[list[_Block]]:
    """Blocks with identical wavelength axes, in order of first appearance."""
    groups: list[list[_Block]] = []
    keys: dict[tuple[int, float, float], list[int]] = {}
    for b in blocks:
        if b.n_rows == 0:
            continue
        key = (len(b.wave), float(b.wave[0]), float(b.wave[-1]))
        for gi in keys.get(key, []):
            first = groups[gi][0].wave
            if first is b.wave or np.array_equal(first, b.wave):
                groups[gi].append(b)
                break
        else:
            keys.setdefault(key, []).append(len(groups))
            groups.append([b])
    return groups
