"""Turning posterior summaries and draws into `~astropy.table.QTable` objects, and writing
and reading them.

Units and display formats (see :ref:`output-units`): every parameter column is a
`~astropy.units.Quantity` in the parameter's physical unit (``logg`` in
``dex(cm / s2)``, i.e. log10 of g in cm s-2), with a display format so that tables print with
sensible digits (`column_format`). `unit_string` gives a unit as astronomers write it in FITS
(``log(cm s-2)``, ``dex``, ``km s-1``). `write_table` writes ECSV or FITS without astropy's
warnings about dex units, `read_table` reads either back with every unit restored.

`summary_table` and `samples_table` build the tables from two records: the posterior
(`PosteriorSummary`, or the draws) and the per-spectrum diagnostics (`SpectrumDiagnostics`:
S/N, coverage, goodness of fit and flags).

The module is somewhat above 600 lines because it still accepts the 0.1 call forms of
`summary_table` and `samples_table` (positional arrays); they go away in the next release.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ._checks import check_quantiles
from .flags import QualityFlag

__all__ = [
    "PosteriorSummary",
    "SpectrumDiagnostics",
    "column_format",
    "quantile_column_name",
    "read_table",
    "samples_table",
    "std_unit",
    "summary_table",
    "unit_string",
    "write_table",
]

#: Display formats of the columns that every results table has (values are not rounded).
COMMON_FORMATS = {
    "snr": ".1f",
    "coverage": ".3f",
    "fit_chi2": ".2f",
    "feature_sigma": ".1f",
    "fit_mismatch": ".4f",
}


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


def column_format(unit: u.UnitBase | None) -> str | None:
    """Display format of a parameter column in ``unit``.

    The format only changes how a table prints (``print(table)``, ``table.pprint()``) and the
    ``TDISP`` keyword of FITS files; the values keep their full precision.

    Parameters
    ----------
    unit : `~astropy.units.UnitBase` or None
        The column's unit.

    Returns
    -------
    str or None
        ``".0f"`` for temperatures (whole kelvin), ``".3f"`` for logarithmic units (dex,
        ``dex(cm / s2)``), ``".2f"`` for velocities, ``".4g"`` for anything else with a unit,
        None without a unit.

    Examples
    --------
    >>> from astropy import units as u
    >>> from specutils_cinn.results import column_format
    >>> column_format(u.K), column_format(u.dex(u.cm / u.s**2)), column_format(u.km / u.s)
    ('.0f', '.3f', '.2f')
    """
    if unit is None:
        return None
    if hasattr(unit, "function_unit") or unit == u.dex:
        return ".3f"
    if unit.is_equivalent(u.K):
        return ".0f"
    if unit.is_equivalent(u.km / u.s):
        return ".2f"
    return ".4g"


def unit_string(unit: u.UnitBase | None) -> str | None:
    """A unit as astronomers write it in FITS headers and text.

    Parameters
    ----------
    unit : `~astropy.units.UnitBase` or None
        The unit.

    Returns
    -------
    str or None
        The FITS standard's string where the unit has one (``K``, ``km s-1``); for
        logarithmic units the FITS standard's function notation, ``log(cm s-2)`` for
        ``dex(cm / s2)`` (log g), and ``dex`` for a plain ``dex`` (abundance ratios, spreads of
        logarithmic quantities); astropy's own string for anything else. None for None.

    Examples
    --------
    >>> from astropy import units as u
    >>> from specutils_cinn.results import unit_string
    >>> unit_string(u.dex(u.cm / u.s**2)), unit_string(u.dex), unit_string(u.km / u.s)
    ('log(cm s-2)', 'dex', 'km s-1')
    """
    if unit is None:
        return None
    physical = getattr(unit, "physical_unit", None)
    if physical is not None and getattr(unit, "function_unit", None) == u.dex:
        if physical == u.dimensionless_unscaled:
            return "dex"
        try:
            return f"log({physical.to_string(format='fits')})"
        except ValueError:
            return unit.to_string()
    try:
        return unit.to_string(format="fits")
    except ValueError:
        return unit.to_string()


def _parse_unit_string(text: str) -> u.UnitBase | None:
    """Inverse of `unit_string` for the logarithmic forms; None if ``text`` is not one."""
    text = text.strip()
    if text == "dex":
        return u.dex
    m = re.fullmatch(r"log\((.+)\)", text)
    if m is None:
        if text.startswith("dex("):  # astropy < 7 wrote its own notation into TUNIT
            try:
                unit = u.Unit(text)
            except ValueError:
                return None
            return unit if getattr(unit, "function_unit", None) == u.dex else None
        return None
    try:
        return u.dex(u.Unit(m.group(1), format="fits"))
    except ValueError:
        return None


def _is_logarithmic(unit: u.UnitBase | None) -> bool:
    return unit is not None and (unit == u.dex or hasattr(unit, "function_unit"))


def _set_formats(table: QTable) -> None:
    for name in table.colnames:
        fmt = COMMON_FORMATS.get(name)
        if fmt is None and name != "flags":
            fmt = column_format(getattr(table[name], "unit", None))
        if fmt is not None:
            table[name].info.format = fmt


def _quantity(values: np.ndarray, unit: u.UnitBase, masked: bool = False) -> u.Quantity:
    q = u.Quantity(values, unit) if not hasattr(unit, "function_unit") else values * unit
    if masked:
        from astropy.utils.masked import Masked

        return Masked(q, mask=np.ones(np.shape(values), bool))
    return q


@dataclasses.dataclass(frozen=True, eq=False)
class SpectrumDiagnostics:
    """The per-spectrum columns of every results table, next to the parameters.

    Each field holds one value per spectrum (N of them). The arrays are stored converted:
    float64 for the measurements, int32 for ``flags``; an optional field left None is NaN.

    Parameters
    ----------
    snr : array-like, shape (N,)
        Median S/N per Angstrom over the valid model pixels.
    coverage : array-like, shape (N,)
        Fraction of the model's pixels (outside its pixel mask, if it has one) covered by valid
        data.
    flags : array-like of int, shape (N,)
        Bitwise OR of `~specutils_cinn.flags.QualityFlag` values.
    fit_chi2 : array-like, shape (N,), optional
        Reduced chi-square of the spectrum emulated at the posterior median; NaN (the
        default) where unknown.
    feature_sigma : array-like, shape (N,), optional
        Significance of the stellar features; NaN (the default) where unknown.
    fit_mismatch : array-like, shape (N,), optional
        Residual RMS that noise and emulator error do not explain; NaN (the default) where
        unknown.

    Raises
    ------
    ValueError
        If ``snr``, ``coverage`` or ``flags`` is None, or a field is not one-dimensional or
        its length differs from that of ``snr``.
    """

    snr: np.ndarray
    coverage: np.ndarray
    flags: np.ndarray
    fit_chi2: np.ndarray | None = None
    feature_sigma: np.ndarray | None = None
    fit_mismatch: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = None
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                if f.name in ("snr", "coverage", "flags"):
                    raise ValueError(f"{f.name} is required (one value per spectrum)")
                value = np.full(n, np.nan)
            arr = np.asarray(value, dtype=np.int32 if f.name == "flags" else float)
            if arr.ndim != 1 or (n is not None and len(arr) != n):
                want = "one-dimensional" if n is None else f"of length {n} (as snr)"
                raise ValueError(f"{f.name} must be {want}, got shape {arr.shape}")
            n = len(arr)
            object.__setattr__(self, f.name, arr)  # frozen: the converted arrays, once

    def __len__(self) -> int:
        return len(self.snr)


@dataclasses.dataclass(frozen=True, eq=False)
class PosteriorSummary:
    """Posterior medians, quantiles and standard deviations of N spectra and D parameters.

    Parameters
    ----------
    median : ndarray, shape (N, D)
        Posterior medians.
    quantiles : ndarray, shape (N, Q, D)
        Posterior quantiles at ``quantile_levels``.
    quantile_levels : sequence of float
        The Q quantile levels, each in (0, 1); stored as a tuple of floats.
    std : ndarray, shape (N, D)
        Posterior standard deviations.

    Raises
    ------
    ValueError
        If a level is not in (0, 1) or the shapes do not fit each other.
    """

    median: np.ndarray
    quantiles: np.ndarray
    quantile_levels: Sequence[float]
    std: np.ndarray

    def __post_init__(self) -> None:
        levels = check_quantiles(self.quantile_levels)
        median, quantiles, std = (np.asarray(a) for a in (self.median, self.quantiles, self.std))
        if median.ndim != 2:
            raise ValueError(f"median must have shape (N, D), got {median.shape}")
        n, d = median.shape
        if quantiles.shape != (n, len(levels), d):
            raise ValueError(f"quantiles must have shape (N, Q, D) = {(n, len(levels), d)}, "
                             f"got {quantiles.shape}")
        if std.shape != (n, d):
            raise ValueError(f"std must have shape (N, D) = {(n, d)}, got {std.shape}")
        for name, arr in (("median", median), ("quantiles", quantiles), ("std", std)):
            object.__setattr__(self, name, arr)  # frozen: the converted arrays, once
        object.__setattr__(self, "quantile_levels", levels)


def _common_columns(table: QTable, diagnostics: SpectrumDiagnostics) -> None:
    d = diagnostics
    table["snr"] = d.snr
    table["snr"].description = "median S/N per Angstrom over valid model pixels"
    table["coverage"] = d.coverage
    table["coverage"].description = "fraction of unmasked model pixels covered by valid data"
    table["fit_chi2"] = d.fit_chi2
    table["fit_chi2"].description = (
        "reduced chi-square of the spectrum emulated at the posterior median (with the "
        "emulator error floor); NaN without emulator"
    )
    table["feature_sigma"] = d.feature_sigma
    table["feature_sigma"].description = (
        "significance (standard deviations) of the emulated stellar features against a "
        "featureless continuum; NaN without emulator"
    )
    table["fit_mismatch"] = d.fit_mismatch
    table["fit_mismatch"].description = (
        "residual RMS (continuum units) against the spectrum emulated at the posterior median "
        "that noise and emulator error do not explain; NaN without emulator"
    )
    table["flags"] = d.flags
    table["flags"].description = (
        "bitwise OR of QualityFlag values; 0 means no warning (names: flag_names)"
    )
    _set_formats(table)


def _table_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    # Keys are FITS-safe (<= 8 upper-case characters, scalar or list values) so that the
    # metadata survives a FITS round trip as well as an ECSV one.
    out = dict(meta or {})
    out["FLAGBITS"] = " ".join(f"{f.name}={int(f.value)}" for f in QualityFlag if f.value)
    return out


def summary_table(
    parameters: Sequence[str],
    units: Sequence[u.UnitBase],
    posterior: PosteriorSummary,
    diagnostics: SpectrumDiagnostics,
    *args: Any,
    meta: Mapping[str, Any] | None = None,
    unconstrained: Sequence[str] = (),
    **kwargs: Any,
) -> QTable:
    """Build the one-row-per-spectrum table of posterior summaries.

    Parameters
    ----------
    parameters : sequence of str
        Parameter names, in the model's order.
    units : sequence of `~astropy.units.UnitBase`
        Unit of each parameter.
    posterior : `PosteriorSummary`
        Medians, quantiles and standard deviations of the N spectra.
    diagnostics : `SpectrumDiagnostics`
        S/N, coverage, goodness of fit and flags of the N spectra.
    *args, **kwargs
        Only for the call form of version 0.1 (``summary_table(parameters, units, median,
        quantiles, quantile_levels, std, snr, coverage, flags, meta=None, fit_chi2=None,
        feature_sigma=None, fit_mismatch=None, unconstrained=())``), which is still accepted
        and goes away in the next release.
    meta : mapping, optional
        Stored in ``table.meta``, together with the flag bit definitions.
    unconstrained : sequence of str, optional
        Parameters the model does not constrain: their columns are masked (the values are
        kept underneath, ``table[col].unmasked``).

    Returns
    -------
    `~astropy.table.QTable`
        For each parameter ``p``: ``p`` (median), ``p_p<100 q>`` for each quantile level and
        ``p_std``; then ``snr``, ``coverage``, ``fit_chi2``, ``feature_sigma``,
        ``fit_mismatch`` and ``flags``.

    Raises
    ------
    TypeError
        If the arguments fit neither call form.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy import units as u
    >>> from specutils_cinn.results import PosteriorSummary, SpectrumDiagnostics, summary_table
    >>> median = np.array([[5772.0], [4800.0]])
    >>> posterior = PosteriorSummary(median, np.stack([median - 50, median + 50], axis=1),
    ...                              (0.16, 0.84), np.full((2, 1), 50.0))
    >>> diagnostics = SpectrumDiagnostics(snr=[100.0, 20.0], coverage=[1.0, 0.9], flags=[0, 0])
    >>> summary_table(["teff"], [u.K], posterior, diagnostics).colnames[:4]
    ['teff', 'teff_p16', 'teff_p84', 'teff_std']
    """
    if not isinstance(posterior, PosteriorSummary):
        posterior, diagnostics, meta, unconstrained = _summary_v01(
            posterior, diagnostics, *args, **_given(meta, unconstrained), **kwargs
        )
    else:
        _no_extra("summary_table", args, kwargs)
    table = QTable(meta=_table_meta(meta))
    for j, (name, unit) in enumerate(zip(parameters, units, strict=True)):
        m = name in unconstrained
        note = " (masked: not constrained by this model)" if m else ""
        table[name] = _quantity(posterior.median[:, j], unit, m)
        table[name].description = f"posterior median of {name}{note}"
        for k, q in enumerate(posterior.quantile_levels):
            col = quantile_column_name(name, q)
            table[col] = _quantity(posterior.quantiles[:, k, j], unit, m)
            table[col].description = f"posterior {q:g} quantile of {name}{note}"
        table[f"{name}_std"] = _quantity(posterior.std[:, j], std_unit(unit), m)
        table[f"{name}_std"].description = f"posterior standard deviation of {name}{note}"
    _common_columns(table, diagnostics)
    return table


def samples_table(
    parameters: Sequence[str],
    units: Sequence[u.UnitBase],
    draws: np.ndarray,
    diagnostics: SpectrumDiagnostics,
    *args: Any,
    meta: Mapping[str, Any] | None = None,
    unconstrained: Sequence[str] = (),
    **kwargs: Any,
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
    diagnostics : `SpectrumDiagnostics`
        As in `summary_table`.
    *args, **kwargs
        Only for the call form of version 0.1 (``samples_table(parameters, units, draws, snr,
        coverage, flags, meta=None, fit_chi2=None, feature_sigma=None, fit_mismatch=None,
        unconstrained=())``), which is still accepted and goes away in the next release.
    meta : mapping, optional
        Stored in ``table.meta``.
    unconstrained : sequence of str, optional
        As in `summary_table`.

    Returns
    -------
    `~astropy.table.QTable`
        Column ``p`` holds an (N, S) Quantity of draws for each parameter, then ``snr``,
        ``coverage``, ``fit_chi2``, ``feature_sigma``, ``fit_mismatch`` and ``flags``.

    Raises
    ------
    TypeError
        If the arguments fit neither call form.
    """
    if not isinstance(diagnostics, SpectrumDiagnostics):
        diagnostics, meta, unconstrained = _samples_v01(
            diagnostics, *args, **_given(meta, unconstrained), **kwargs
        )
    else:
        _no_extra("samples_table", args, kwargs)
    table = QTable(meta=_table_meta(meta))
    for j, (name, unit) in enumerate(zip(parameters, units, strict=True)):
        m = name in unconstrained
        table[name] = _quantity(draws[:, :, j], unit, m)
        table[name].description = f"posterior draws of {name}" + (
            " (masked: not constrained by this model)" if m else "")
    _common_columns(table, diagnostics)
    return table


# The call forms of version 0.1 (positional arrays), accepted until the next release.
def _given(meta: Any, unconstrained: Any) -> dict[str, Any]:
    """The keyword-only arguments that were given, to pass on to a 0.1 call form."""
    out: dict[str, Any] = {} if meta is None else {"meta": meta}
    if len(unconstrained):
        out["unconstrained"] = unconstrained
    return out


def _no_extra(function: str, args: tuple, kwargs: dict) -> None:
    if args or kwargs:
        extra = [f"{len(args)} positional"] if args else []
        raise TypeError(
            f"{function}() got unexpected arguments: {', '.join(extra + sorted(kwargs))} "
            "(pass meta and unconstrained by keyword)"
        )


def _summary_v01(
    median: np.ndarray, quantiles: np.ndarray, quantile_levels: Sequence[float],
    std: np.ndarray, snr: np.ndarray, coverage: np.ndarray, flags: np.ndarray,
    meta: Mapping[str, Any] | None = None, fit_chi2: np.ndarray | None = None,
    feature_sigma: np.ndarray | None = None, fit_mismatch: np.ndarray | None = None,
    unconstrained: Sequence[str] = (),
) -> tuple[PosteriorSummary, SpectrumDiagnostics, Mapping[str, Any] | None, Sequence[str]]:
    return (PosteriorSummary(median, quantiles, quantile_levels, std),
            SpectrumDiagnostics(snr, coverage, flags, fit_chi2, feature_sigma, fit_mismatch),
            meta, unconstrained)


def _samples_v01(
    snr: np.ndarray, coverage: np.ndarray, flags: np.ndarray,
    meta: Mapping[str, Any] | None = None, fit_chi2: np.ndarray | None = None,
    feature_sigma: np.ndarray | None = None, fit_mismatch: np.ndarray | None = None,
    unconstrained: Sequence[str] = (),
) -> tuple[SpectrumDiagnostics, Mapping[str, Any] | None, Sequence[str]]:
    return (SpectrumDiagnostics(snr, coverage, flags, fit_chi2, feature_sigma, fit_mismatch),
            meta, unconstrained)


#: astropy warns once per column whose unit the FITS standard cannot express (the dex columns),
#: although its serialized-column metadata restores those units when the file is read back.
_UNIT_LOST_WARNING = r"The unit '.*' could not be saved in native FITS format"
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")


def _is_fits(path: str | os.PathLike[str], fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "fits"
    return str(path).lower().endswith(_FITS_SUFFIXES)


def write_table(
    table: QTable,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    fits_units: str = "astropy",
    format: str | None = None,
    **kwargs: Any,
) -> None:
    """Write a results table to ECSV, FITS or any other astropy table format.

    For ECSV this is ``table.write(path, overwrite=overwrite, format=format, **kwargs)``; other
    formats except FITS are written without the display formats (CSV and the other text
    writers would write the rounded display digits instead of the values). For FITS it does
    what ``table.write`` does, without astropy's warning per dex column ("could not be saved
    in native FITS format"; the units are kept in astropy's metadata, see
    :ref:`output-units`), and labels every column with its unit for other software.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        The table (from `~specutils_cinn.CINNParameterEstimator.predict` or
        `~specutils_cinn.CINNParameterEstimator.sample_posterior`).
    path : str or path-like
        Output file; the format follows from the extension unless ``format`` is given.
    overwrite : bool, optional
        Replace an existing file.
    fits_units : {"astropy", "standard"}, optional
        FITS only. ``"astropy"`` (default): the dex columns get no ``TUNIT`` (astropy cannot
        read a logarithmic ``TUNIT`` back) and carry their unit in the comment of ``TTYPEn``
        (``[log(cm s-2)]``); ``QTable.read`` restores every unit from astropy's metadata.
        ``"standard"``: the dex columns get a ``TUNIT`` in the FITS standard's notation
        (`unit_string`: ``log(cm s-2)``, ``dex``) for TOPCAT, fitsio, IDL and other
        software; read such a file back with `read_table` (``QTable.read`` does not
        understand these ``TUNIT`` values).
    format : str, optional
        astropy table format, e.g. ``"ascii.ecsv"`` or ``"fits"``.
    **kwargs
        Passed to ``table.write`` (formats other than FITS).

    Raises
    ------
    ValueError
        If ``fits_units`` is not one of the two values.
    OSError
        If the file exists and ``overwrite`` is false.
    """
    if fits_units not in ("astropy", "standard"):
        raise ValueError(f"fits_units must be 'astropy' or 'standard', got {fits_units!r}")
    if not _is_fits(path, format):
        is_ecsv = format == "ascii.ecsv" or (format is None and str(path).endswith(".ecsv"))
        if not is_ecsv:
            # text writers such as CSV write the display digits: keep the full values
            table = table.copy(copy_data=False)
            for name in table.colnames:
                table[name].info.format = None
        table.write(path, overwrite=overwrite, format=format, **kwargs)
        return
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_UNIT_LOST_WARNING, category=AstropyUserWarning)
        # astropy < 7 writes dex(...) into TUNIT and warns that it does not parse
        warnings.filterwarnings("ignore", message=".*did not parse as fits unit",
                                category=u.UnitsWarning)
        table.write(path, overwrite=overwrite, format="fits")
    with fits.open(path, mode="update") as hdul:
        header = hdul[1].header
        for i in range(1, header["TFIELDS"] + 1):
            name = header[f"TTYPE{i}"]
            unit = getattr(table[name], "unit", None) if name in table.colnames else None
            if not _is_logarithmic(unit):
                continue
            text = unit_string(unit)
            if fits_units == "standard":
                if f"TUNIT{i}" in header:
                    header[f"TUNIT{i}"] = (text, "unit (FITS standard notation)")
                else:
                    header.set(f"TUNIT{i}", text, "unit (FITS standard notation)",
                               after=f"TFORM{i}")
            else:
                if f"TUNIT{i}" in header:  # astropy < 7: a TUNIT it cannot read back
                    del header[f"TUNIT{i}"]
                header.comments[f"TTYPE{i}"] = f"[{text}]"


def read_table(path: str | os.PathLike[str], **kwargs: Any) -> QTable:
    """Read a results table written by `write_table`, ``table.write`` or the command line.

    ``QTable.read(path)`` does the same for ECSV files and for FITS files written with the
    default ``fits_units="astropy"``; this function also reads FITS files whose dex columns have
    a logarithmic ``TUNIT`` (``log(cm s-2)``, ``dex``; `write_table` with
    ``fits_units="standard"``, or another program), which astropy cannot parse.

    Parameters
    ----------
    path : str or path-like
        The file.
    **kwargs
        Passed to ``QTable.read`` (e.g. ``format``, ``hdu``).

    Returns
    -------
    `~astropy.table.QTable`
        With ``logg`` in ``dex(cm / s2)``, abundance ratios in ``dex`` and every other unit as
        written. As with ``QTable.read``, NaN in a FITS file comes back masked.
    """
    if not _is_fits(path, kwargs.get("format")):
        return QTable.read(path, **kwargs)
    from astropy.io import fits

    kwargs.pop("format", None)
    hdu_index = kwargs.pop("hdu", None)
    with fits.open(path, memmap=False) as hdul:
        if hdu_index is None:
            hdu_index = next(
                (i for i, h in enumerate(hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))),
                1,
            )
        hdu = hdul[hdu_index]
        restore = {}
        for col in hdu.columns:
            parsed = _parse_unit_string(col.unit) if col.unit else None
            if parsed is not None:
                restore[col.name] = parsed
                col.unit = None  # in memory only: astropy cannot parse it
        table = QTable.read(hdu, **kwargs)
    for name, unit in restore.items():
        if name in table.colnames and getattr(table[name], "unit", None) is None:
            col = table[name]
            data = np.ma.getdata(col)
            mask = np.ma.getmaskarray(col)
            q = _quantity(np.asarray(data, dtype=float), unit, masked=False)
            if mask.any():
                from astropy.utils.masked import Masked

                q = Masked(q, mask=mask)
            q.info.description = col.info.description
            q.info.format = col.info.format
            table.replace_column(name, q)
    return table
