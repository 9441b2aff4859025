"""Turn specutils spectra into arrays on a model's wavelength grid.

`prepare_spectra` takes any mix of `~specutils.Spectrum` (1-D or N-D),
`~specutils.SpectrumCollection`, `~specutils.SpectrumList` and lists or tuples of
them, and returns a `PreparedSpectra`: continuum-normalized flux, uncertainties and a
validity mask, one row per spectrum, on the model's
`~specutils_cinn.wavelength_grid.WavelengthGrid`.

Everything is vectorized over spectra: arrays are pulled out of each specutils object
once ((``collect``)), spectra that share a wavelength axis are resampled
together with numpy ((``chunks``)), and per-spectrum radial velocities
shift the model grid's bin edges row by row instead of the input axis.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy import units as u

from ..constants import C_KMS
from ..flags import QualityFlag
from ..wavelength_grid import WavelengthGrid
from .chunks import _Geometry, _Output, _process_group
from .collect import _Block, _block_hash, _collect, _group_blocks
from .pixel_mask import PixelMask
from .units import doppler_factor

__all__ = ["PreparedSpectra", "prepare_spectra"]


@dataclass(frozen=True, eq=False)
class PreparedSpectra:
    """Spectra on a model's wavelength grid, ready for the network.

    One row per input spectrum, in input order (N-D spectra and collections are
    flattened in C order, nested lists depth first). Rows are never dropped: a spectrum
    that cannot be used gets a row with no valid pixel and its `flags` set.

    Parameters
    ----------
    flux : numpy.ndarray
        Continuum-normalized flux, shape ``(N, grid.npix)``, float32, finite;
        `FILL_FLUX` at invalid pixels.
    sigma : numpy.ndarray
        Flux uncertainty (standard deviation) in the same normalized units, same shape,
        float32, finite and positive; `FILL_SIGMA` at invalid pixels.
    valid : numpy.ndarray
        Boolean, same shape: pixels with data (never a pixel of ``pixel_mask``).
    snr : numpy.ndarray
        Median S/N per Angstrom over the valid pixels, shape ``(N,)``, float64; NaN for
        rows without a valid pixel.
    coverage : numpy.ndarray
        Fraction of the grid's pixels outside ``pixel_mask`` that are valid, shape ``(N,)``,
        float64.
    flags : numpy.ndarray
        `~specutils_cinn.flags.QualityFlag` bits, shape ``(N,)``, int32.
    normalized : numpy.ndarray
        Boolean, shape ``(N,)``: whether a continuum was fitted and divided out (False
        for input treated as already normalized).
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
    pixel_mask : numpy.ndarray or None, optional
        Boolean, shape ``(grid.npix,)``: the model's masked pixels (True), invalid in every row
        and left out of ``coverage``; None when no mask was applied.
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
    pixel_mask: np.ndarray | None = None

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
        if self.pixel_mask is not None and np.shape(self.pixel_mask) != (npix,):
            raise ValueError(f"pixel_mask must have shape ({npix},)")

    @property
    def n_rows(self) -> int:
        """Number of spectra (rows)."""
        return int(self.flux.shape[0])

    @property
    def wavelength(self) -> u.Quantity:
        """Rest-frame pixel centers of the grid (Angstrom, in the grid's medium)."""
        return self.grid.wavelength


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
    pixel_mask: PixelMask | np.ndarray | None = None,
    continuum_floor: float = 0.0,
) -> PreparedSpectra:
    """Resample, shift and normalize spectra onto a model's wavelength grid.

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
        where the continuum is the fitted one (or 1 for input that is not normalized
        here). ``"estimate"`` estimates the noise per pixel from the flux with DER_SNR
        and sets the ``NOISE_ESTIMATED`` flag.
    normalize : bool or "auto", optional
        Whether to fit and divide out a continuum (after resampling, per grid segment).
        ``"auto"`` treats a spectrum as already normalized when its flux unit is
        dimensionless and the 90th percentile of its valid input pixels that reach the
        grid (after the shift to the rest frame) lies in `AUTO_NORMALIZED_RANGE` (0.8 to
        1.2), and normalizes it otherwise. The decision is made for each spectrum on its
        own data.
    continuum_degree : int, optional
        Degree of the Legendre polynomial continuum of each grid segment.
    min_valid_fraction : float, optional
        An output pixel is valid when at least this fraction of it is covered by valid
        input pixels (and it lies entirely inside the input's wavelength coverage).
    min_coverage : float, optional
        Rows with a smaller fraction of valid grid pixels, overall or in any one segment of
        the grid (e.g. a 4MOST HR spectrum without its HB arm), get the ``LOW_COVERAGE`` flag.
    continuum_iterations : int, optional
        Clipping iterations of the continuum fit. ``continuum_degree``, this and
        ``continuum_floor`` must match the normalization of the model's training spectra
        (`~specutils_cinn.inputs.normalization.normalize_continuum` with ``degree``,
        ``n_iter`` and ``floor``; `~specutils_cinn.inputs.Normalization.prepare_arguments`
        gives all three).
    pixel_mask : PixelMask or numpy.ndarray, optional
        The model's poorly modeled pixels (`~specutils_cinn.inputs.PixelMask`, or a boolean
        array of ``grid.npix`` values, True = masked). They are invalid in every row, exactly
        as if the input had no data there: left out of the continuum fit, the ``snr`` median
        and everything downstream. They are also left out of ``coverage``: the fraction of
        the grid's *unmasked* pixels that are valid, so a model's mask never counts against
        a spectrum (``LOW_COVERAGE``).
    continuum_floor : float, optional
        Lowest continuum, as a fraction (0 to 1) of the highest value of each segment's
        continuum (`~specutils_cinn.inputs.normalization.fit_continuum`); 0 for none.

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
    - Resampling is flux conserving (`~specutils_cinn.inputs.resampling.flux_conserving_resample`):
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
    - ``pixel_mask`` acts on the grid's pixels, after resampling; the DER_SNR noise estimate of
      ``snr="estimate"`` is of the input's pixels and does not see it (a poorly modeled
      line is no noisier than another).
    """
    _check_arguments(grid, medium, normalize, continuum_degree, min_valid_fraction, min_coverage)
    masked = _masked_pixels(pixel_mask, grid)
    if (
        isinstance(continuum_iterations, bool)
        or not isinstance(continuum_iterations, int | np.integer)
        or continuum_iterations < 0
    ):
        raise ValueError(
            f"continuum_iterations must be a non-negative integer, got {continuum_iterations!r}"
        )
    if isinstance(continuum_floor, bool) or not isinstance(
            continuum_floor, int | float | np.integer | np.floating) \
            or not 0.0 <= continuum_floor < 1.0:
        raise ValueError(
            f"continuum_floor must be a number from 0 to below 1, got {continuum_floor!r}"
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

    out = _Output(n, grid, masked)
    if isinstance(normalize, bool | np.bool_):
        out.normalized[:] = bool(normalize)
    for geo in groups:
        _process_group(
            geo, factor, snr_rows, estimate, normalize,
            (continuum_degree, continuum_iterations, float(continuum_floor)),
            min_valid_fraction, out,
        )  # fmt: skip

    flags = np.zeros(n, dtype=np.int32)
    flags[(out.coverage < min_coverage) | (out.coverage == 0)] |= QualityFlag.LOW_COVERAGE
    # a segment (an arm) mostly missing: the models never saw spectra without one
    for sl in grid.segment_slices:
        n_seg = sl.stop - sl.start if masked is None else int(np.count_nonzero(~masked[sl]))
        if n_seg:
            seg_cov = np.count_nonzero(out.valid[:, sl], axis=1) / n_seg
            flags[seg_cov < min_coverage] |= QualityFlag.LOW_COVERAGE
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
        pixel_mask=masked,
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


def _masked_pixels(pixel_mask: Any, grid: WavelengthGrid) -> np.ndarray | None:
    """The masked pixels of ``grid`` (None: no mask), checked."""
    if pixel_mask is None:
        return None
    if isinstance(pixel_mask, PixelMask):
        return pixel_mask.on_grid(grid)
    masked = np.asarray(pixel_mask)
    if masked.dtype != bool or masked.shape != (grid.npix,):
        raise ValueError(f"pixel_mask must be a PixelMask or a boolean array of {grid.npix} "
                         f"values (one per grid pixel), got {masked.dtype} {masked.shape}")
    return masked


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
