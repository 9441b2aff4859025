"""Turning posterior summaries and draws into `~astropy.table.QTable` objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .flags import QualityFlag

__all__ = ["quantile_column_name", "summary_table", "samples_table", "std_unit"]


def quantile_column_name(parameter: str, q: float) -> str:
    """Name of the column holding quantile ``q`` of ``parameter``, e.g. ``teff_p16``.

    Parameters
    ----------
    parameter : str
        Parameter name, e.g. ``"teff"``.
    q : float
        Quantile level in (0, 1).

    Returns
    -------
    str
        ``f"{parameter}_p{100 * q:g}"``; a decimal point becomes ``"_"`` (``teff_p2_5``)
        so that the name stays a valid identifier.
    """
    return f"{parameter}_p{100 * q:g}".replace(".", "_")


def std_unit(unit: u.UnitBase) -> u.UnitBase:
    """Unit of a standard deviation of a quantity in ``unit``.

    A spread of a logarithmic quantity such as ``dex(cm / s2)`` is a plain ``dex``.
    """
    function_unit = getattr(unit, "function_unit", None)
    return function_unit if function_unit is not None else unit


def _quantity(values: np.ndarray, unit: u.UnitBase, masked: bool = False) -> u.Quantity:
    q = u.Quantity(values, unit) if not hasattr(unit, "function_unit") else values * unit
    if masked:
        from astropy.utils.masked import Masked

        return Masked(q, mask=np.ones(np.shape(values), bool))
    return q


def _common_columns(
    table: QTable,
    snr: np.ndarray,
    coverage: np.ndarray,
    flags: np.ndarray,
    fit_chi2: np.ndarray | None,
    feature_sigma: np.ndarray | None,
    fit_mismatch: np.ndarray | None = None,
) -> None:
    table["snr"] = np.asarray(snr, dtype=float)
    table["snr"].description = "median S/N per Angstrom over valid model pixels"
    table["coverage"] = np.asarray(coverage, dtype=float)
    table["coverage"].description = "fraction of model pixels covered by valid data"
    chi2 = np.full(len(table["snr"]), np.nan) if fit_chi2 is None else fit_chi2
    table["fit_chi2"] = np.asarray(chi2, dtype=float)
    table["fit_chi2"].description = (
        "reduced chi-square of the spectrum emulated at the posterior median (with the "
        "emulator error floor); NaN without emulator"
    )
    sig = np.full(len(table["snr"]), np.nan) if feature_sigma is None else feature_sigma
    table["feature_sigma"] = np.asarray(sig, dtype=float)
    table["feature_sigma"].description = (
        "significance (standard deviations) of the emulated stellar features against a "
        "featureless continuum; NaN without emulator"
    )
    mis = np.full(len(table["snr"]), np.nan) if fit_mismatch is None else fit_mismatch
    table["fit_mismatch"] = np.asarray(mis, dtype=float)
    table["fit_mismatch"].description = (
        "residual RMS (continuum units) against the spectrum emulated at the posterior median "
        "that noise and emulator error do not explain; NaN without emulator"
    )
    table["flags"] = np.asarray(flags, dtype=np.int32)
    table["flags"].description = "bitwise OR of QualityFlag values; 0 means no warning"


def _table_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    # Keys are FITS-safe (<= 8 upper-case characters, scalar or list values) so that the
    # metadata survives a FITS round trip as well as an ECSV one.
    out = dict(meta or {})
    out["FLAGBITS"] = " ".join(f"{f.name}={int(f.value)}" for f in QualityFlag if f.value)
    return out


def summary_table(
    parameters: Sequence[str],
    units: Sequence[u.UnitBase],
    median: np.ndarray,
    quantiles: np.ndarray,
    quantile_levels: Sequence[float],
    std: np.ndarray,
    snr: np.ndarray,
    coverage: np.ndarray,
    flags: np.ndarray,
    meta: Mapping[str, Any] | None = None,
    fit_chi2: np.ndarray | None = None,
    feature_sigma: np.ndarray | None = None,
    fit_mismatch: np.ndarray | None = None,
    unconstrained: Sequence[str] = (),
) -> QTable:
    """Build the one-row-per-spectrum table of posterior summaries.

    Parameters
    ----------
    parameters : sequence of str
        Parameter names, in the model's order.
    units : sequence of `~astropy.units.UnitBase`
        Unit of each parameter.
    median : ndarray, shape (N, D)
        Posterior medians.
    quantiles : ndarray, shape (N, Q, D)
        Posterior quantiles at ``quantile_levels``.
    quantile_levels : sequence of float
        The Q quantile levels.
    std : ndarray, shape (N, D)
        Posterior standard deviations.
    snr, coverage, flags : ndarray, shape (N,)
        Per-spectrum S/N per Angstrom, valid-pixel fraction and quality bit flags.
    meta : mapping, optional
        Stored in ``table.meta``, together with the flag bit definitions.
    fit_chi2 : ndarray, shape (N,), optional
        Goodness-of-fit reduced chi-square per spectrum; NaN (the default) where unknown.
    feature_sigma : ndarray, shape (N,), optional
        Significance of the stellar features per spectrum; NaN (the default) where unknown.
    fit_mismatch : ndarray, shape (N,), optional
        Unexplained residual RMS per spectrum; NaN (the default) where unknown.
    unconstrained : sequence of str, optional
        Parameters the model does not constrain: their columns are masked (the values are
        kept underneath, ``table[col].unmasked``).

    Returns
    -------
    `~astropy.table.QTable`
        For each parameter ``p``: ``p`` (median), ``p_p<100 q>`` for each quantile level and
        ``p_std``; then ``snr``, ``coverage``, ``fit_chi2``, ``feature_sigma``,
        ``fit_mismatch`` and ``flags``.
    """
    table = QTable(meta=_table_meta(meta))
    for j, (name, unit) in enumerate(zip(parameters, units, strict=True)):
        m = name in unconstrained
        note = " (masked: not constrained by this model)" if m else ""
        table[name] = _quantity(median[:, j], unit, m)
        table[name].description = f"posterior median of {name}{note}"
        for k, q in enumerate(quantile_levels):
            col = quantile_column_name(name, q)
            table[col] = _quantity(quantiles[:, k, j], unit, m)
            table[col].description = f"posterior {q:g} quantile of {name}{note}"
        table[f"{name}_std"] = _quantity(std[:, j], std_unit(unit), m)
        table[f"{name}_std"].description = f"posterior standard deviation of {name}{note}"
    _common_columns(table, snr, coverage, flags, fit_chi2, feature_sigma, fit_mismatch)
    return table


def samples_table(
    parameters: Sequence[str],
    units: Sequence[u.UnitBase],
    draws: np.ndarray,
    snr: np.ndarray,
    coverage: np.ndarray,
    flags: np.ndarray,
    meta: Mapping[str, Any] | None = None,
    fit_chi2: np.ndarray | None = None,
    feature_sigma: np.ndarray | None = None,
    fit_mismatch: np.ndarray | None = None,
    unconstrained: Sequence[str] = (),
) -> QTable:
    """Build a table of posterior draws, one row per spectrum.

    Parameters
    ----------
    parameters : sequence of str
        Parameter names.
    units : sequence of `~astropy.units.UnitBase`
        Unit of each parameter.
    draws : ndarray, shape (N, S, D)
        S posterior draws for each of N spectra.
    snr, coverage, flags : ndarray, shape (N,)
        As in `summary_table`.
    meta : mapping, optional
        Stored in ``table.meta``.
    fit_chi2, feature_sigma, fit_mismatch : ndarray, shape (N,), optional
        As in `summary_table`.
    unconstrained : sequence of str, optional
        As in `summary_table`.

    Returns
    -------
    `~astropy.table.QTable`
        Column ``p`` holds an (N, S) Quantity of draws for each parameter, then ``snr``,
        ``coverage``, ``fit_chi2``, ``feature_sigma``, ``fit_mismatch`` and ``flags``.
    """
    table = QTable(meta=_table_meta(meta))
    for j, (name, unit) in enumerate(zip(parameters, units, strict=True)):
        m = name in unconstrained
        table[name] = _quantity(draws[:, :, j], unit, m)
        table[name].description = f"posterior draws of {name}" + (
            " (masked: not constrained by this model)" if m else "")
    _common_columns(table, snr, coverage, flags, fit_chi2, feature_sigma, fit_mismatch)
    return table
