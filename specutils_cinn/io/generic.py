"""Lenient versions of specutils' generic FITS readers, for flux units astropy cannot parse.

specutils' ``wcs1d-fits`` fails on a ``BUNIT`` astropy does not know (e.g. ``'Relative Flux'``
in IRAF-written HARPS spectra), and its ``tabular-fits`` reader cannot find a flux column
without a flux-like unit, so that it does not read back its own output for dimensionless flux.
These loaders take such files (and any file of those layouts read with ``flux_unit=``) with a
higher priority; every other file stays with specutils' readers.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from astropy.wcs import FITSFixedWarning
from specutils import Spectrum
from specutils.io.default_loaders.wcs_fits import identify_wcs1d_fits, wcs1d_fits_loader
from specutils.io.registers import data_loader

from ._common import (
    as_float,
    as_text,
    header_value,
    identify_args,
    medium_from_header,
    normalize_medium,
    open_fits,
    parse_unit,
    source_name,
)

__all__ = [
    "identify_tabular_fits_relaxed",
    "identify_wcs1d_fits_relaxed",
    "tabular_fits_relaxed_loader",
    "wcs1d_fits_relaxed_loader",
]

FORMAT_WCS1D = "wcs1d-fits-relaxed"
FORMAT_TABULAR = "tabular-fits-relaxed"

_SPECTRAL_NAMES = ("wavelength", "wave", "lambda", "frequency", "energy", "wavenumber",
                   "spectral_axis")  # fmt: skip
_FLUX_NAMES = ("flux",)
_UNCERTAINTY_NAMES = {
    "uncertainty": StdDevUncertainty, "err": StdDevUncertainty, "error": StdDevUncertainty,
    "flux_err": StdDevUncertainty, "flux_error": StdDevUncertainty, "sigma": StdDevUncertainty,
    "ivar": InverseVariance, "flux_ivar": InverseVariance, "var": VarianceUncertainty,
}  # fmt: skip


def _parses(text: Any) -> bool:
    if text is None or not str(text).strip():
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u.Unit(str(text).strip())
    except (ValueError, TypeError):
        return False
    return True


def _common_meta(meta: dict[str, Any], label: str, name: str | None, headers: tuple,
                 medium: str | None) -> dict[str, Any]:  # fmt: skip
    meta.update(
        format=label,
        filename=name,
        medium=normalize_medium(medium) or next(
            (m for m in (medium_from_header(h) for h in headers if h is not None) if m), None
        ),
        specsys=as_text(header_value(headers, "SPECSYS")),
        resolving_power=as_float(header_value(headers, "SPEC_RES")),
        object=as_text(header_value(headers, "OBJECT")),
    )
    return meta


# ------------------------------------------------------------------------- 1-D images


def _image_hdu(hdul: fits.HDUList, hdu: Any) -> Any:
    if hdu is not None:
        return hdu
    for ext in ("FLUX", "SCI", "DATA", "PRIMARY"):  # as specutils' wcs1d-fits
        if ext in hdul and isinstance(hdul[ext], fits.ImageHDU | fits.PrimaryHDU) and (
            hdul[ext].header.get("NAXIS", 0) > 0
        ):
            return ext
    return 0


def identify_wcs1d_fits_relaxed(origin: str, *args: Any, **kwargs: Any) -> bool:
    """A ``wcs1d-fits`` file whose ``BUNIT`` astropy cannot parse, or one read with
    ``flux_unit=``."""
    source = identify_args(args)
    with open_fits(source) as hdul:
        if not identify_wcs1d_fits(origin, None, None, hdul, hdu=kwargs.get("hdu") or 0):
            return False
        if kwargs.get("flux_unit") is not None:
            return True
        header = hdul[_image_hdu(hdul, kwargs.get("hdu"))].header
        return not _parses(header.get("BUNIT"))


@data_loader(FORMAT_WCS1D, identifier=identify_wcs1d_fits_relaxed, dtype=Spectrum,
             extensions=["fits", "fit"], priority=7)  # fmt: skip
def wcs1d_fits_relaxed_loader(
    file_obj: Any,
    *,
    flux_unit: Any = None,
    medium: str | None = None,
    hdu: Any = None,
    **kwargs: Any,
) -> Spectrum:
    """Read a 1-D FITS image spectrum (linear WCS) whatever its ``BUNIT`` says.

    specutils' ``wcs1d-fits`` reader, except for the flux unit.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The file.
    flux_unit : str or `~astropy.units.Unit`, optional
        Flux unit, overriding ``BUNIT`` (not a conversion: the values are kept). Without it, a
        ``BUNIT`` astropy cannot parse gives dimensionless flux, silently when it reads
        "relative", "normalized" or "arbitrary" (``'Relative Flux'``), else with a warning.
    medium : {"air", "vacuum"}, optional
        Medium of the wavelengths, stored in ``meta["medium"]``; by default from the header
        (``AIRORVAC``, or ``CTYPE1`` ``AWAV``/``WAVE``), else None (unknown).
    hdu : int or str, optional
        The HDU with the flux (default: as ``wcs1d-fits``, the first of FLUX, SCI, DATA,
        PRIMARY).
    **kwargs
        Passed to specutils' ``wcs1d-fits`` reader (``spectral_axis_unit``, ``mask_hdu``,
        ``uncertainty_hdu``, ``uncertainty_type``).

    Returns
    -------
    `~specutils.Spectrum`
        With ``meta`` keys ``header`` (the flux HDU's header, as ``wcs1d-fits``),
        ``format``, ``filename``, ``medium``, ``specsys``, ``resolving_power`` and
        ``object`` (see :ref:`readers`).
    """
    name = source_name(file_obj)
    with open_fits(file_obj) as hdul:
        ext = _image_hdu(hdul, hdu)
        header = hdul[ext].header
        bunit = header.get("BUNIT")
        unit = parse_unit(bunit, flux_unit, source=name)
        if "BUNIT" in header:
            del header["BUNIT"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                spec = wcs1d_fits_loader(hdul, flux_unit=unit, hdu=ext, **kwargs)
        finally:
            if bunit is not None:
                header["BUNIT"] = bunit
    primary = hdul[0].header if ext not in (0, "PRIMARY") else None
    _common_meta(spec.meta, FORMAT_WCS1D, name, (header, primary), medium)
    return spec


# ------------------------------------------------------------------------- tables


def _column(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def identify_tabular_fits_relaxed(origin: str, *args: Any, **kwargs: Any) -> bool:
    """A table spectrum (``tabular-fits`` layout, one pixel per row) with a column named
    ``flux`` that has no unit or one astropy cannot parse, or one read with ``flux_unit=``."""
    source = identify_args(args)
    hdu = kwargs.get("hdu", 1)
    with open_fits(source) as hdul:
        if len(hdul) <= hdu or not isinstance(hdul[hdu], fits.BinTableHDU):
            return False
        h = hdul[hdu].header
        if h.get("NAXIS2", 0) < 2:
            return False
        names = [str(h.get(f"TTYPE{i}", "")) for i in range(1, h["TFIELDS"] + 1)]
        flux = _column(names, _FLUX_NAMES)
        spectral = _column(names, _SPECTRAL_NAMES)
        if flux is None or spectral is None:
            return False
        if kwargs.get("flux_unit") is not None:
            return True
        text = h.get(f"TUNIT{names.index(flux) + 1}")
        return text is None or not str(text).strip() or not _parses(text)


@data_loader(FORMAT_TABULAR, identifier=identify_tabular_fits_relaxed, dtype=Spectrum,
             extensions=["fits", "fit"], priority=7)  # fmt: skip
def tabular_fits_relaxed_loader(
    file_obj: Any,
    *,
    flux_unit: Any = None,
    medium: str | None = None,
    hdu: int = 1,
) -> Spectrum:
    """Read a table spectrum by column name, whatever the flux unit.

    The layout of specutils' ``tabular-fits`` (one pixel per row; what
    ``Spectrum.write(..., format="tabular-fits")`` writes): a spectral column named
    ``wavelength`` (or ``wave``, ``lambda``, ``frequency``, ``energy``, ``wavenumber``) with a
    unit, a ``flux`` column, optionally an uncertainty (``uncertainty``, ``err``, ``error``,
    ``flux_err``, ``sigma``: standard deviation; ``ivar``: inverse variance; ``var``) and a
    ``mask`` (non-zero: bad). Column names are matched without regard to case.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The file.
    flux_unit : str or `~astropy.units.Unit`, optional
        Flux unit, overriding the flux column's ``TUNITn``; without it, no unit means
        dimensionless and an unparseable one dimensionless (see `wcs1d_fits_relaxed_loader`).
    medium : {"air", "vacuum"}, optional
        Medium of the wavelengths; by default from the primary header (``AIRORVAC``), else
        None (unknown).
    hdu : int, optional
        The table HDU.

    Returns
    -------
    `~specutils.Spectrum`
        With ``meta`` keys ``header`` (primary header), ``data_header``, ``format``,
        ``filename``, ``medium``, ``specsys``, ``resolving_power`` and ``object``.
    """
    name = source_name(file_obj)
    with open_fits(file_obj) as hdul:
        primary, table = hdul[0].header, hdul[hdu]
        names = table.columns.names
        spectral = _column(names, _SPECTRAL_NAMES)
        flux_name = _column(names, _FLUX_NAMES)
        if spectral is None or flux_name is None:
            raise ValueError(f"{name}: no spectral or flux column in HDU {hdu}")
        units = {n: table.header.get(f"TUNIT{i}") for i, n in enumerate(names, start=1)}
        wunit = parse_unit(units[spectral], what="spectral axis")
        if wunit is None:
            raise ValueError(f"{name}: the spectral column {spectral!r} has no unit")
        funit = parse_unit(units[flux_name], flux_unit, source=name) or u.dimensionless_unscaled
        data = table.data
        axis = np.array(data[spectral], dtype=np.float64)
        flux = np.array(data[flux_name])
        unc_name = _column(names, tuple(_UNCERTAINTY_NAMES))
        unc = None if unc_name is None else np.array(data[unc_name])
        mask_name = _column(names, ("mask",))
        mask = None if mask_name is None else np.array(data[mask_name]) != 0
        data_header = table.header
    if flux.ndim > 1:  # as tabular-fits: N-D flux is stored with the spectral axis first
        flux = flux.T
        unc = None if unc is None else unc.T
        mask = None if mask is None else mask.T
    uncertainty = None
    if unc is not None:
        kind = _UNCERTAINTY_NAMES[unc_name.lower()]
        power = {StdDevUncertainty: 1, VarianceUncertainty: 2, InverseVariance: -2}[kind]
        uncertainty = kind(unc, unit=funit**power)
    spec = Spectrum(flux=flux * funit, spectral_axis=axis * wunit, uncertainty=uncertainty,
                    mask=mask, meta={"header": primary, "data_header": data_header})  # fmt: skip
    _common_meta(spec.meta, FORMAT_TABULAR, name, (primary, data_header), medium)
    return spec
