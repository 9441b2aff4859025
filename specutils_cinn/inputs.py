"""Turn specutils spectra into arrays on a model's wavelength grid.

`prepare_spectra` takes any mix of `~specutils.Spectrum` (1-D or N-D),
`~specutils.SpectrumCollection`, `~specutils.SpectrumList` and lists or tuples of
them, and returns a `PreparedSpectra`: continuum-normalised flux, uncertainties and a
validity mask, one row per spectrum, on the model's `~specutils_cinn.grid.WavelengthGrid`.

Everything is vectorised over spectra: arrays are pulled out of each specutils object
once, spectra that share a wavelength axis are resampled together with numpy, and
per-spectrum radial velocities shift the model grid's bin edges row by row instead of
the input axis.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from astropy import units as u
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from specutils import Spectrum, SpectrumCollection
from specutils.utils.wcs_utils import air_to_vac, vac_to_air

from ._hashing import hash_rows, hash_text, splitmix64
from .constants import C_KMS
from .flags import QualityFlag
from .grid import WavelengthGrid
from .noise_estimate import der_snr, masked_quantile
from .normalisation import fit_segment_continuum
from .resampling import CHUNK_ELEMENTS, EdgeLocator, gap_edges, insert_gaps, resample_block

__all__ = [
    "AUTO_NORMALIZED_RANGE",
    "FILL_FLUX",
    "FILL_SIGMA",
    "PreparedSpectra",
    "doppler_factor",
    "prepare_spectra",
]

#: Flux stored at invalid pixels (the continuum level of a normalised spectrum).
FILL_FLUX = 1.0
#: Uncertainty stored at invalid pixels: effectively infinite for normalised flux.
FILL_SIGMA = 1.0e3
#: ``normalize="auto"`` treats dimensionless flux as normalised when the median over
#: the spectra of an input of their 90th flux percentiles lies in this range.
AUTO_NORMALIZED_RANGE = (0.8, 1.2)
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
_ABSOLUTE, _RELATIVE, _ESTIMATED = 0, 1, 2


@dataclass(frozen=True, eq=False)
class PreparedSpectra:
    """Spectra on a model's wavelength grid, ready for the network.

    One row per input spectrum, in input order (N-D spectra and collections are
    flattened in C order, nested lists depth first). Rows are never dropped: a spectrum
    that cannot be used gets a row with no valid pixel and its `flags` set.

    Parameters
    ----------
    flux : numpy.ndarray
        Continuum-normalised flux, shape ``(N, grid.npix)``, float32, finite;
        `FILL_FLUX` at invalid pixels.
    sigma : numpy.ndarray
        Flux uncertainty (standard deviation) in the same normalised units, same shape,
        float32, finite and positive; `FILL_SIGMA` at invalid pixels.
    valid : numpy.ndarray
        Boolean, same shape: pixels with data.
    snr : numpy.ndarray
        Median S/N per Angstrom over the valid pixels, shape ``(N,)``, float64; NaN for
        rows without a valid pixel.
    coverage : numpy.ndarray
        Fraction of the grid's pixels that are valid, shape ``(N,)``, float64.
    flags : numpy.ndarray
        `~specutils_cinn.flags.QualityFlag` bits, shape ``(N,)``, int32.
    normalized : numpy.ndarray
        Boolean, shape ``(N,)``: whether a continuum was fitted and divided out (False
        for input treated as already normalised).
    radial_velocity : astropy.units.Quantity
        Radial velocity used for the shift to the rest frame, shape ``(N,)``, km/s.
    source : numpy.ndarray
        Index of the top-level input item each row comes from, shape ``(N,)``, int64
        (0 for every row when a single object was given).
    source_index : tuple of tuple of int
        Position of each row inside its top-level item: list positions of nested lists
        followed by the index into an N-D spectrum or collection, e.g. ``()`` for a 1-D
        `~specutils.Spectrum`, ``(3,)`` for row 3 of a 2-D one, ``(1, 3)`` for row 3 of
        the second element of a `~specutils.SpectrumList`.
    grid : WavelengthGrid
        The grid the arrays are sampled on.
    content_hash : numpy.ndarray or None, optional
        A 64-bit hash of each input spectrum's own data, shape ``(N,)``, uint64: the flux and
        uncertainty values of its usable pixels in order of increasing wavelength, which
        pixels are unusable (masked, non-finite flux, uncertainty not positive and finite:
        however they are marked), the flux unit and the uncertainty's type and unit. It
        does not depend on the other spectra, the position of the spectrum, the unit or
        direction of its spectral axis (float rounding in a unit conversion must not change
        it), or the arguments of `prepare_spectra`; the estimator keys each spectrum's random
        draws on it. None when not known.
    resolving_power : numpy.ndarray or None, optional
        ``meta["resolving_power"]`` of the spectrum behind each row (a number, or the median
        of its per-segment values), NaN where a spectrum has none; None when no input has one.
        The estimator compares it with the model's (``RESOLUTION_MISMATCH``).
    """

    flux: np.ndarray
    sigma: np.ndarray
    valid: np.ndarray
    snr: np.ndarray
    coverage: np.ndarray
    flags: np.ndarray
    normalized: np.ndarray
    radial_velocity: u.Quantity
    source: np.ndarray
    source_index: tuple[tuple[int, ...], ...]
    grid: WavelengthGrid
    content_hash: np.ndarray | None = None
    resolving_power: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, npix = self.flux.shape
        if npix != self.grid.npix:
            raise ValueError(f"flux has {npix} pixels, the grid {self.grid.npix}")
        for name in ("sigma", "valid"):
            if getattr(self, name).shape != (n, npix):
                raise ValueError(f"{name} must have shape {(n, npix)}")
        for name in ("snr", "coverage", "flags", "normalized", "radial_velocity", "source"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if len(self.source_index) != n:
            raise ValueError(f"source_index must have {n} entries")
        if self.content_hash is not None and np.shape(self.content_hash) != (n,):
            raise ValueError(f"content_hash must have shape ({n},)")

    @property
    def n_rows(self) -> int:
        """Number of spectra (rows)."""
        return int(self.flux.shape[0])

    @property
    def wavelength(self) -> u.Quantity:
        """Rest-frame pixel centres of the grid (Angstrom, in the grid's medium)."""
        return self.grid.wavelength


def doppler_factor(radial_velocity: u.Quantity) -> np.ndarray:
    """Relativistic Doppler factor ``lambda_obs / lambda_rest`` for radial velocities.

    Parameters
    ----------
    radial_velocity : astropy.units.Quantity
        Velocities (positive: receding), any velocity unit, any shape.

    Returns
    -------
    numpy.ndarray
        ``sqrt((1 + beta) / (1 - beta))`` with ``beta = v / c``, the same factor as
        ``1 + z`` in `~specutils.Spectrum` and `~astropy.coordinates.SpectralCoord`.

    Raises
    ------
    ValueError
        If a velocity is not finite, not a velocity, or not slower than light.
    """
    try:
        v = u.Quantity(radial_velocity).to_value(u.km / u.s)
    except (u.UnitsError, TypeError) as exc:
        raise ValueError(
            f"radial_velocity must be a Quantity with velocity units (e.g. 12.3 * u.km / u.s), "
            f"got {radial_velocity!r}"
        ) from exc
    beta = np.asarray(v, dtype=np.float64) / C_KMS
    if not np.all(np.isfinite(beta)) or np.any(np.abs(beta) >= 1):
        raise ValueError("radial velocities must be finite and slower than light")
    return np.sqrt((1.0 + beta) / (1.0 - beta))


def prepare_spectra(
    spectra: Any,
    grid: WavelengthGrid,
    *,
    radial_velocity: u.Quantity | None = None,
    medium: Literal["air", "vacuum"] = "air",
    snr: float | np.ndarray | Literal["estimate"] | None = None,
    normalize: bool | Literal["auto"] = "auto",
    continuum_degree: int = 3,
    min_valid_fraction: float = 0.5,
    min_coverage: float = 0.5,
    continuum_iterations: int = 5,
) -> PreparedSpectra:
    """Resample, shift and normalise spectra onto a model's wavelength grid.

    Parameters
    ----------
    spectra : Spectrum, SpectrumCollection, SpectrumList, list or tuple
        A `~specutils.Spectrum` (1-D, or N-D with the spectral axis anywhere: every
        1-D slice along the spectral axis is one spectrum), a
        `~specutils.SpectrumCollection` (one spectral axis per row), a
        `~specutils.SpectrumList`, or a (nested) list or tuple of these. The deprecated
        ``Spectrum1D`` is a `~specutils.Spectrum` and works too. The spectral axis may
        be in any unit convertible to a wavelength (wavelength, frequency, wavenumber,
        energy) and increasing or decreasing.
    grid : WavelengthGrid
        The model's grid (rest frame, in the grid's medium).
    radial_velocity : astropy.units.Quantity, optional
        Radial velocity of each spectrum: a scalar for all, or one value per spectrum
        (length ``N``, the number of rows of the result). If not given, each
        spectrum's own ``redshift`` / ``radial_velocity`` is used (zero if not set).
    medium : {"air", "vacuum"}, optional
        Medium of the INPUT wavelengths; converted to the grid's medium when they
        differ (`~specutils.utils.wcs_utils.air_to_vac` /
        `~specutils.utils.wcs_utils.vac_to_air`). 4MOST delivers air wavelengths.
    snr : float, array-like or "estimate", optional
        Only used for spectra without an uncertainty. A number (or one per row,
        length ``N``) is the S/N per Angstrom of the input's continuum: each input
        pixel of width ``d`` Angstrom gets ``sigma = continuum / (snr * sqrt(d))``,
        where the continuum is the fitted one (or 1 for input that is not normalised
        here). ``"estimate"`` estimates the noise per pixel from the flux with DER_SNR
        and sets the ``NOISE_ESTIMATED`` flag.
    normalize : bool or "auto", optional
        Whether to fit and divide out a continuum (after resampling, per grid segment).
        ``"auto"`` treats a spectrum as already normalised when its flux unit is
        dimensionless and the 90th percentile of its valid input pixels that reach the
        grid (after the shift to the rest frame) lies in `AUTO_NORMALIZED_RANGE` (0.8 to
        1.2), and normalises it otherwise. The decision is made for each spectrum on its
        own data.
    continuum_degree : int, optional
        Degree of the Legendre polynomial continuum of each grid segment.
    min_valid_fraction : float, optional
        An output pixel is valid when at least this fraction of it is covered by valid
        input pixels (and it lies entirely inside the input's wavelength coverage).
    min_coverage : float, optional
        Rows with a smaller fraction of valid grid pixels get the ``LOW_COVERAGE`` flag.
    continuum_iterations : int, optional
        Clipping iterations of the continuum fit. ``continuum_degree`` and this must
        match the normalisation of the model's training spectra
        (`~specutils_cinn.normalisation.normalize_continuum` with ``degree`` and
        ``n_iter``).

    Returns
    -------
    PreparedSpectra
        The arrays on the grid, S/N, coverage, flags and bookkeeping.

    Raises
    ------
    TypeError
        If an input is not a specutils spectrum, collection or list of them.
    ValueError
        If the spectral axis cannot be converted to a wavelength, is not monotonic, or
        holds pixel numbers (0, 1, 2, ... or 1, 2, 3, ...: a spectrum without a wavelength
        solution), a spectrum has no uncertainty and ``snr`` is not given, ``snr`` is not
        finite and positive, ``radial_velocity`` has the wrong length or unit, or another
        argument is out of range.
    astropy.units.UnitConversionError
        If the flux unit is not a flux (e.g. kelvin): accepted are dimensionless flux and
        an energy or a count, optionally per time, per area, per wavelength, frequency or
        energy, and per pixel or solid angle. It is a `ValueError` too.

    Notes
    -----
    Conventions:

    - Rest frame: ``lambda_rest = lambda_obs / D`` with the relativistic Doppler factor
      ``D = sqrt((1 + v/c) / (1 - v/c))`` (`doppler_factor`), i.e. ``1 + z``. The
      grid's bin edges are multiplied by ``D`` of each spectrum. The medium conversion
      is applied to the observed wavelengths before the shift (the error of doing so
      is below 1e-8 relative).
    - Resampling is flux conserving (`~specutils_cinn.resampling.flux_conserving_resample`):
      masked, NaN and infinite pixels and pixels with a non-positive or non-finite
      uncertainty get weight 0; grid pixels not entirely inside the input's coverage or
      with less than ``min_valid_fraction`` of valid input are invalid. Grid segments
      are resampled independently and never stitched.
    - Uncertainties: `~astropy.nddata.StdDevUncertainty`,
      `~astropy.nddata.VarianceUncertainty` and `~astropy.nddata.InverseVariance`
      (zero inverse variance: invalid pixel) are converted to variances and propagated.
    - ``snr`` column: the median over valid pixels of ``flux / sigma / sqrt(w)`` with
      ``w`` the grid pixel width in Angstrom, i.e. S/N per Angstrom. When the grid is
      finer than the input the propagated noise is correlated and this overestimates
      the S/N per Angstrom by ``sqrt(input width / grid width)``.
    - ``snr="estimate"``: the DER_SNR noise of the input pixels (those overlapping the
      grid after this spectrum's shift to the rest frame) is taken as a constant uncertainty
      per input pixel.
    - Every row is a function of its own spectrum and the arguments alone: nothing is
      shared between spectra (other spectra, their order and number change a row by
      floating-point rounding at most).
    - Invalid pixels hold `FILL_FLUX` and `FILL_SIGMA`; the network sees ``valid``.
    """
    _check_arguments(grid, medium, normalize, continuum_degree, min_valid_fraction, min_coverage)
    if (
        isinstance(continuum_iterations, bool)
        or not isinstance(continuum_iterations, int | np.integer)
        or continuum_iterations < 0
    ):
        raise ValueError(
            f"continuum_iterations must be a non-negative integer, got {continuum_iterations!r}"
        )
    blocks = _collect(spectra)
    n = sum(b.n_rows for b in blocks)
    factor, rv_kms = _doppler(radial_velocity, blocks, n)
    snr_rows, estimate = _check_snr(snr, n)
    if snr_rows is None and not estimate:
        missing = [b for b in blocks if b.unc_kind is None]
        if missing:
            raise ValueError(
                f"input {missing[0].label} has no uncertainty: attach one (StdDevUncertainty, "
                "VarianceUncertainty or InverseVariance), pass snr=<S/N per Angstrom> "
                "(a number or one per spectrum), or snr='estimate' to estimate the noise "
                "from the flux (DER_SNR)"
            )
    groups = [_Geometry(g, grid, medium, factor) for g in _group_blocks(blocks)]

    out = _Output(n, grid)
    if isinstance(normalize, bool | np.bool_):
        out.normalized[:] = bool(normalize)
    for geo in groups:
        _process_group(
            geo, factor, snr_rows, estimate, normalize, (continuum_degree, continuum_iterations),
            min_valid_fraction, out,
        )  # fmt: skip

    flags = np.zeros(n, dtype=np.int32)
    flags[(out.coverage < min_coverage) | (out.coverage == 0)] |= QualityFlag.LOW_COVERAGE
    flags[~out.overlap] |= QualityFlag.NO_OVERLAP
    # overlaps the grid, but not one valid grid pixel: unusable input pixels, a failed
    # continuum fit (zero or negative flux), or too little input to cover a grid pixel
    flags[out.overlap & (~out.any_usable | (out.coverage == 0))] |= QualityFlag.NO_VALID_DATA
    if estimate:  # every spectrum without uncertainty, whether it reaches the grid or not
        for b in blocks:
            if b.unc_kind is None:
                flags[b.rows] |= QualityFlag.NOISE_ESTIMATED
    source = np.empty(n, dtype=np.int64)
    content_hash = np.zeros(n, dtype=np.uint64)
    index: list[tuple[int, ...]] = [()] * n
    for b in blocks:
        source[b.rows] = b.source
        content_hash[b.rows] = _block_hash(b)
        for r, ix in zip(b.rows.tolist(), b.index, strict=True):
            index[r] = ix
    return PreparedSpectra(
        flux=out.flux,
        sigma=out.sigma,
        valid=out.valid,
        snr=out.snr,
        coverage=out.coverage,
        flags=flags,
        normalized=out.normalized,
        radial_velocity=rv_kms * (u.km / u.s),
        source=source,
        source_index=tuple(index),
        grid=grid,
        content_hash=content_hash,
    )


# --------------------------------------------------------------------------- arguments


def _check_arguments(
    grid: Any,
    medium: Any,
    normalize: Any,
    degree: Any,
    min_valid_fraction: Any,
    min_coverage: Any,
) -> None:
    if not isinstance(grid, WavelengthGrid):
        raise TypeError(f"grid must be a WavelengthGrid, got {type(grid).__name__}")
    if medium not in ("air", "vacuum"):
        raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
    if not (isinstance(normalize, bool | np.bool_) or normalize == "auto"):
        raise ValueError(f"normalize must be True, False or 'auto', got {normalize!r}")
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < 0:
        raise ValueError(f"continuum_degree must be a non-negative integer, got {degree!r}")
    if not (_is_real(min_valid_fraction) and 0 < min_valid_fraction <= 1):
        raise ValueError(f"min_valid_fraction must be in (0, 1], got {min_valid_fraction!r}")
    if not (_is_real(min_coverage) and 0 <= min_coverage <= 1):
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage!r}")


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_snr(snr: Any, n: int) -> tuple[np.ndarray | None, bool]:
    """Return (per-row S/N per Angstrom or None, estimate?)."""
    if snr is None:
        return None, False
    if isinstance(snr, str):
        if snr != "estimate":
            raise ValueError(f"snr must be a number, an array or 'estimate', got {snr!r}")
        return None, True
    if isinstance(snr, u.Quantity):
        if not snr.unit.is_equivalent(u.one):
            raise ValueError(f"snr must be dimensionless, got unit {snr.unit}")
        snr = snr.to_value(u.one)
    try:
        arr = np.asarray(snr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snr must be a number, an array or 'estimate', got {snr!r}") from exc
    if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n):
        raise ValueError(
            f"snr must be a scalar or have one value per spectrum ({n}), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError("snr must be finite and positive")
    return np.broadcast_to(arr, (n,)).astype(np.float64), False


def _doppler(radial_velocity: Any, blocks: list[_Block], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Doppler factor and radial velocity (km/s) of every row."""
    if radial_velocity is None:
        factor = np.ones(n)
        for b in blocks:
            factor[b.rows] = b.z_factor
    else:
        if not isinstance(radial_velocity, u.Quantity):
            raise ValueError(
                "radial_velocity must be a Quantity with velocity units "
                f"(e.g. 12.3 * u.km / u.s), got {type(radial_velocity).__name__}"
            )
        d = doppler_factor(radial_velocity)
        if d.ndim > 1 or (d.ndim == 1 and len(d) != n):
            raise ValueError(
                f"radial_velocity must be a scalar or have one value per spectrum ({n}), "
                f"got shape {d.shape}"
            )
        factor = np.broadcast_to(d, (n,)).astype(np.float64)
    d2 = factor * factor
    return factor, C_KMS * (d2 - 1.0) / (d2 + 1.0)


# ------------------------------------------------------------------------ input blocks


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


def _own_doppler(axis: Any) -> float:
    """Doppler factor ``1 + z`` from the radial velocity stored on a spectral axis."""
    rv = getattr(axis, "radial_velocity", None)
    if rv is None:
        return 1.0
    rv = u.Quantity(rv)
    if rv.size != 1 or rv.value == 0:
        return 1.0 if rv.size == 1 else float(np.mean(doppler_factor(rv)))
    return float(doppler_factor(rv))


def _angstrom(axis: Any, label: str, monotonic: bool = True) -> np.ndarray:
    """Spectral axis values in Angstrom (any spectral unit); checked, maybe decreasing."""
    q = axis.view(u.Quantity) if isinstance(axis, u.Quantity) else u.Quantity(axis)
    if q.unit == u.pix:
        raise ValueError(
            f"input {label}: spectral axis unit '{q.unit}' cannot be converted to a wavelength: "
            f"the spectrum has no wavelength solution; {_NEED_WAVELENGTHS}"
        )
    first = _pixel_numbers(np.asarray(q.value))
    if first is not None:
        raise ValueError(
            f"input {label}: the spectral axis holds the pixel numbers {first}, {first + 1}, "
            f"{first + 2}, ... (in {q.unit}), not wavelengths: the spectrum has no wavelength "
            "solution (specutils reads a FITS spectrum without CRVAL1/CDELT1/CTYPE1 keywords "
            f"this way); {_NEED_WAVELENGTHS}"
        )
    try:
        if q.unit is u.AA:
            wave = np.asarray(q.value, dtype=np.float64)
        else:
            wave = np.asarray(q.to_value(u.AA, equivalencies=u.spectral()), dtype=np.float64)
    except u.UnitsError as exc:
        raise ValueError(
            f"input {label}: spectral axis unit '{q.unit}' cannot be converted to a wavelength"
        ) from exc
    if not (np.all(np.isfinite(wave)) and np.all(wave > 0)):
        raise ValueError(f"input {label}: spectral axis values must be finite and positive")
    if monotonic and wave.ndim == 1:
        _monotonic(wave, label)
    return wave


_NEED_WAVELENGTHS = (
    "give the spectrum a spectral axis in wavelength (or frequency, wavenumber, energy) units"
)


def _pixel_numbers(values: np.ndarray) -> int | None:
    """0 or 1 if every row of a spectral axis is the pixel numbers 0, 1, 2, ... or 1, 2, 3, ...

    That is what a spectrum without a wavelength solution gets: no real spectrum starts at
    0 or 1 Angstrom (or nm, Hz, ...) with a step of exactly 1.
    """
    rows = np.atleast_2d(values)
    if rows.shape[-1] < 2 or rows.dtype.kind not in "iuf":
        return None
    first = rows[..., 0]
    if not (np.all(first == first.flat[0]) and first.flat[0] in (0, 1)):
        return None
    start = int(first.flat[0])
    if np.array_equal(rows, np.broadcast_to(np.arange(start, start + rows.shape[-1]), rows.shape)):
        return start
    return None


#: Factors removed before a flux unit's dimensions are checked: counts of any kind and
#: "per pixel / channel / bin / beam / solid angle" (solid angles decompose to rad**2).
_COUNT_LIKE = frozenset({"ct", "electron", "adu", "ph", "DN", "chan", "pix", "bin", "vox",
                         "beam", "rad"})


def _flux_dimensions() -> tuple[u.UnitBase, ...]:
    """Every (energy or count) [per time] [per area] [per wavelength, frequency or energy].

    Counts per frequency without a time (dimension: time) are left out: a flux in seconds
    is a mistake far more often than a count spectrum per Hz.
    """
    out = []
    for amount in (u.J, u.one):
        for per_time in (u.one, u.s):
            for per_area in (u.one, u.m**2):
                for per_spectral in (u.one, u.m, u.Hz, u.J):
                    if amount is u.one and per_time is u.one and per_spectral is u.Hz:
                        continue
                    out.append(amount / (per_time * per_area * per_spectral))
    return tuple(out)


_FLUX_DIMENSIONS = _flux_dimensions()


def _is_flux_unit(unit: Any) -> bool:
    """Whether a flux unit is a flux: see `_check_flux_unit`."""
    if not isinstance(unit, u.UnitBase) or isinstance(unit, u.FunctionUnitBase):
        return False
    if unit.is_equivalent(u.one):
        return True
    try:
        d = unit.decompose()
    except u.UnitsError:  # pragma: no cover
        return False
    rest = u.Unit(1.0)
    for base, power in zip(d.bases, d.powers, strict=True):
        if base.name not in _COUNT_LIKE:
            rest = rest * base**power
    return any(rest.is_equivalent(dim) for dim in _FLUX_DIMENSIONS)


def _check_flux_unit(unit: Any, label: str) -> None:
    """Reject flux units that are not fluxes (kelvin, metres, magnitudes, ...).

    Accepted: dimensionless (normalised) flux, and an energy or a count (``ct``,
    ``electron``, ``adu``, ``ph``, ``DN``), optionally per time, per area and per
    wavelength, frequency or energy, optionally per pixel, channel, bin, beam or solid
    angle: spectral flux densities (``erg / (s cm2 Angstrom)``, ``Jy``), surface
    brightnesses, luminosity densities, photon and count rates, counts.
    """
    if not _memo(_is_flux_unit, unit):
        raise u.UnitConversionError(
            f"input {label}: flux unit '{unit}' is not a unit of flux; use a spectral flux "
            "density (e.g. erg / (s cm2 Angstrom), W / (m2 nm), Jy), counts or a count rate "
            "(ct, electron / s, adu), or dimensionless flux (normalised spectra)"
        )


def _monotonic(wave: np.ndarray, label: str) -> tuple[np.ndarray, bool]:
    """Return (increasing axis, whether it was flipped); error if not strictly monotonic."""
    if len(wave) < 2:
        raise ValueError(f"input {label}: a spectrum needs at least 2 pixels")
    d = np.diff(wave)
    if np.all(d > 0):
        return wave, False
    if np.all(d < 0):
        return wave[::-1], True
    raise ValueError(f"input {label}: the spectral axis is not strictly monotonic")


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


def _uncertainty_factor(kind: str, unc_unit: u.UnitBase | None, unit: u.UnitBase) -> float:
    """Factor from the uncertainty's values to the same kind in the working flux unit."""
    power = {"std": 1, "var": 2, "ivar": -2}[kind]
    factor = 1.0
    if unc_unit is not None and unc_unit is not unit:
        factor = float(u.Unit(unc_unit).to(unit**power))
    return factor * (_memo(_dimensionless_scale, unit) or 1.0) ** power


def _dimensionless_scale(unit: u.UnitBase) -> float | None:
    """Factor to dimensionless_unscaled, or None if the unit is not dimensionless."""
    return float(unit.to(u.one)) if unit.is_equivalent(u.one) else None


#: Results of unit computations, keyed by the structure of the units: comparing units
#: is slow, and every spectrum read from a file has its own (equal) unit objects.
_MEMO: dict[tuple[Any, ...], Any] = {}


def _unit_key(x: Any) -> Any:
    if isinstance(x, u.UnitBase):
        try:
            return (float(x.scale), tuple(b.name for b in x.bases), tuple(map(float, x.powers)))
        except (AttributeError, TypeError, ValueError):  # pragma: no cover
            return _NO_KEY
    return x


_NO_KEY = object()


def _memo(fn: Any, *args: Any) -> Any:
    key = (fn.__name__,) + tuple(_unit_key(a) for a in args)
    if _NO_KEY in key:  # pragma: no cover
        return fn(*args)
    if key in _MEMO:
        return _MEMO[key]
    value = fn(*args)
    if len(_MEMO) > 1024:
        _MEMO.clear()
    _MEMO[key] = value
    return value


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


# --------------------------------------------------------------------------- geometry


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
    """The result arrays, filled group by group."""

    def __init__(self, n: int, grid: WavelengthGrid) -> None:
        self.flux = np.full((n, grid.npix), FILL_FLUX, dtype=np.float32)
        self.sigma = np.full((n, grid.npix), FILL_SIGMA, dtype=np.float32)
        self.valid = np.zeros((n, grid.npix), dtype=bool)
        self.snr = np.full(n, np.nan)
        self.coverage = np.zeros(n)
        self.overlap = np.zeros(n, dtype=bool)
        self.any_usable = np.zeros(n, dtype=bool)
        self.normalized = np.ones(n, dtype=bool)
        self.npix = grid.npix


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
    continuum: tuple[int, int],
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
            out.normalized[gids] = _auto_normalise(inputs, own, dimensionless)
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


def _auto_normalise(
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
    return ~(dimensionless & (p90 >= lo) & (p90 <= hi))  # NaN: normalise


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
    continuum: tuple[int, int],
    min_valid_fraction: float,
    out: _Output,
) -> None:
    """Resample, normalise and store one chunk of rows for every segment."""
    degree, n_iter = continuum
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
        if any_norm:
            if all_norm:
                cont = fit_segment_continuum(fo, valid, degree, n_iter)[0]
            else:
                cont = np.ones(fo.shape)
                cont[norm] = fit_segment_continuum(fo[norm], valid[norm], degree, n_iter)[0]
            valid &= cont > 0  # False where the fit failed (NaN)
            np.divide(fo, cont, out=fo, where=valid)  # rows not normalised have cont == 1
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
    out.coverage[gids] = np.count_nonzero(valid_all, axis=1) / out.npix
    out.snr[gids] = masked_quantile(ratio, valid_all, 0.5)


def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
    """A slice for consecutive indices (fast writes), else the index array."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx
