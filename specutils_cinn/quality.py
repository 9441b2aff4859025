"""The quality flags the estimator adds to each output row, and the quantities behind them.

`~specutils_cinn.inputs.prepare_spectra` sets the flags about the input (coverage, overlap,
valid data, estimated noise). After inference, `output_flags` adds those about the result:
``PARAMETER_AT_EDGE``, ``OUTSIDE_TRAINING_RANGE``, ``LOW_SNR``, ``HIGH_SNR``,
``RESOLUTION_MISMATCH`` (from `row_resolving_power` and `typical_resolving_power`),
``VELOCITY_OFFSET`` (from `velocity_offset`), ``POOR_FIT`` (above `poor_fit_threshold`) and
``NO_FEATURES``. See `~specutils_cinn.flags.QualityFlag` for their meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u

from .fit_check import FEATURE_SIGMA_MIN, FitStatistics
from .flags import RESOLUTION_TOLERANCE, VELOCITY_TOLERANCE, QualityFlag
from .instruments import InstrumentSetup
from .sampling import inferred_rows

if TYPE_CHECKING:
    from .inputs import PreparedSpectra
    from .model import CINNModel, ModelMetadata

__all__ = [
    "EDGE_FRACTION",
    "VELOCITY_SEARCH",
    "meta_resolving_power",
    "output_flags",
    "poor_fit_threshold",
    "row_resolving_power",
    "typical_resolving_power",
    "velocity_offset",
]

#: Fraction of a parameter's training range next to each edge where PARAMETER_AT_EDGE fires.
EDGE_FRACTION = 0.02

#: Velocities (km/s) the rest-frame check of VELOCITY_OFFSET searches.
VELOCITY_SEARCH = (-300.0, 300.0)


def meta_resolving_power(meta: Any) -> float:
    """A spectrum's ``meta["resolving_power"]`` as one number.

    Parameters
    ----------
    meta : mapping
        The spectrum's ``meta``; ``resolving_power`` is a number, or a mapping of numbers
        (one per segment or arm, of which the median is taken).

    Returns
    -------
    float
        The resolving power; NaN if absent or not a positive finite number.
    """
    value = meta.get("resolving_power") if hasattr(meta, "get") else None
    if isinstance(value, dict):
        nums = [v for v in value.values() if isinstance(v, (int, float)) and not isinstance(
            v, bool)]
        value = float(np.median(nums)) if nums else None
    try:
        r = float(value)
    except (TypeError, ValueError):
        return np.nan
    return r if np.isfinite(r) and r > 0 else np.nan


def row_resolving_power(spectra: Any, prepared: PreparedSpectra) -> np.ndarray | None:
    """``meta["resolving_power"]`` of the spectrum behind each prepared row.

    Parameters
    ----------
    spectra : Spectrum, SpectrumCollection, SpectrumList or list of them
        The inputs that ``prepared`` was made from (file paths already read).
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        The prepared spectra; ``source`` and ``source_index`` lead back to the inputs.

    Returns
    -------
    numpy.ndarray or None
        Shape ``(N,)`` (`meta_resolving_power`, NaN where absent), or None when no input
        has one.
    """
    items = list(spectra) if isinstance(spectra, (list, tuple)) else [spectra]
    out = np.full(prepared.n_rows, np.nan)
    for row, (src, path) in enumerate(zip(prepared.source, prepared.source_index,
                                          strict=True)):
        obj = items[int(src)]
        for k in path:
            if not isinstance(obj, (list, tuple)):
                break
            obj = obj[k]
        out[row] = meta_resolving_power(getattr(obj, "meta", None) or {})
    return None if np.all(np.isnan(out)) else out


def typical_resolving_power(metadata: ModelMetadata) -> float:
    """The model's resolving power at the middle of each grid segment, median over segments.

    Parameters
    ----------
    metadata : `~specutils_cinn.model.ModelMetadata`
        The model's metadata.

    Returns
    -------
    float
    """
    setup = InstrumentSetup(metadata.full_name, metadata.grid, metadata.resolving_power)
    mid = np.array([0.5 * (s.start + s.stop) for s in metadata.grid.segments])
    return float(np.median(setup.resolving_power_at(mid)))


def poor_fit_threshold(metadata: ModelMetadata, override: float | None = None) -> float | None:
    """The ``fit_chi2`` above which ``POOR_FIT`` is set.

    Parameters
    ----------
    metadata : `~specutils_cinn.model.ModelMetadata`
        The model's metadata.
    override : float, optional
        A positive finite threshold (``fit_chi2_threshold``, as checked by
        `~specutils_cinn.options.PredictionOptions`) that replaces the model's.

    Returns
    -------
    float or None
        None for a model without a spectrum emulator (no fit, no ``POOR_FIT``); else
        ``override``, or the model's ``metadata.emulator.chi2_threshold``.
    """
    if metadata.emulator is None:
        return None
    return metadata.emulator.chi2_threshold if override is None else float(override)


def velocity_offset(
    model: CINNModel, prepared: PreparedSpectra, template: np.ndarray | None = None
) -> np.ndarray:
    """Rows whose rest-frame spectrum is offset in velocity (``VELOCITY_OFFSET``).

    The prepared spectra are compared with the emulated solar template over
    `VELOCITY_SEARCH`; a row is offset where the best velocity lies beyond
    `~specutils_cinn.flags.VELOCITY_TOLERANCE` and 3 standard deviations from zero.

    Parameters
    ----------
    model : `~specutils_cinn.model.CINNModel`
        The model (its grid, normalization and spectrum emulator).
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        The prepared spectra (in the rest frame).
    template : numpy.ndarray, optional
        The template, ``specutils_cinn.rv.emulated_template(model, None)``; built when None.
        Pass it to avoid building it again for every call.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(N,)``; all False for a model without an emulator, and for rows
        that were not inferred.
    """
    out = np.zeros(prepared.n_rows, bool)
    rows = np.flatnonzero(inferred_rows(prepared))
    if model.emulator is None or rows.size == 0:
        return out
    from .rv import emulated_template, velocity_of_prepared

    if template is None:
        template = emulated_template(model, None)
    # one search over all rows (vectorized); only the inferred rows are flagged
    v = velocity_of_prepared(model, prepared, template, VELOCITY_SEARCH, oversample=1)
    rv, err = v.rv.to_value(u.km / u.s), v.rv_err.to_value(u.km / u.s)
    with np.errstate(invalid="ignore"):
        out[rows] = ((np.abs(rv) > VELOCITY_TOLERANCE) & (np.abs(rv) > 3.0 * err))[rows]
    return out


def output_flags(
    metadata: ModelMetadata,
    prepared: PreparedSpectra,
    median: np.ndarray,
    *,
    fit: FitStatistics | None = None,
    threshold: float | None = None,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """The flags of each output row: the input's flags and those about the result.

    Parameters
    ----------
    metadata : `~specutils_cinn.model.ModelMetadata`
        The model's metadata (training ranges, S/N range, resolving power, unconstrained
        parameters).
    prepared : `~specutils_cinn.inputs.PreparedSpectra`
        The prepared spectra: their ``flags``, ``snr`` and ``resolving_power`` (None: no
        ``RESOLUTION_MISMATCH``).
    median : numpy.ndarray
        Posterior medians, shape ``(N, D)``.
    fit : `~specutils_cinn.fit_check.FitStatistics`, optional
        The goodness of fit; with ``threshold``, sets ``POOR_FIT`` and ``NO_FEATURES``.
    threshold : float, optional
        The ``POOR_FIT`` threshold (`poor_fit_threshold`); None: neither flag.
    offset : numpy.ndarray, optional
        Boolean ``(N,)`` from `velocity_offset`: rows that get ``VELOCITY_OFFSET``.

    Returns
    -------
    numpy.ndarray
        int32, shape ``(N,)``: bitwise OR of `~specutils_cinn.flags.QualityFlag` values.
    """
    md = metadata
    flags = prepared.flags.astype(np.int32).copy()
    # Parameters the model does not constrain (their posterior is the prior) say nothing
    # about whether a spectrum sits at the edge of the training range.
    cols = [j for j, p in enumerate(md.parameter_names) if p not in md.unconstrained]
    lo, hi = md.ranges[cols, 0], md.ranges[cols, 1]
    margin = EDGE_FRACTION * (hi - lo)
    med = median[:, cols]
    with np.errstate(invalid="ignore"):
        edge = ((med < lo + margin) | (med > hi - margin)).any(axis=1)
        inside = ((med >= lo) & (med <= hi)).all(axis=1)  # False for NaN
        low_snr = prepared.snr < md.snr_range[0]
        high_snr = prepared.snr > md.snr_range[1]
    flags[edge] |= int(QualityFlag.PARAMETER_AT_EDGE)
    flags[inferred_rows(prepared) & ~inside] |= int(QualityFlag.OUTSIDE_TRAINING_RANGE)
    flags[low_snr] |= int(QualityFlag.LOW_SNR)
    flags[high_snr] |= int(QualityFlag.HIGH_SNR)
    if offset is not None:
        flags[offset] |= int(QualityFlag.VELOCITY_OFFSET)
    if prepared.resolving_power is not None:
        with np.errstate(invalid="ignore"):
            off = np.abs(prepared.resolving_power / typical_resolving_power(md) - 1.0)
        flags[off > RESOLUTION_TOLERANCE] |= int(QualityFlag.RESOLUTION_MISMATCH)
    if threshold is not None and fit is not None:
        with np.errstate(invalid="ignore"):
            flags[fit.chi2 > threshold] |= int(QualityFlag.POOR_FIT)
            flags[fit.feature_sigma < FEATURE_SIGMA_MIN] |= int(QualityFlag.NO_FEATURES)
    return flags
