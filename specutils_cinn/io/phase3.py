"""ESO Phase 3 one-dimensional spectra (``SCIENCE.SPECTRUM``), generic and 4MOST L1.

Layout (ESO Science Data Products standard): a primary HDU without data carrying the product
keywords (``PRODCATG``, ``SPECSYS``, ``SPEC_RES``, ...) and a binary table (4MOST:
``PHASE3SPECTRUM``) with ONE row of array columns: wavelength, flux, error, quality. specutils'
own ``tabular-fits`` reader takes such a row for a table of length one and fails
("lookup_table should be an array with 1 dimensions").
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum
from specutils.io.registers import data_loader

from ._common import (
    arm_from_range,
    as_float,
    as_text,
    header_value,
    identify_args,
    medium_from_header,
    medium_from_ucd,
    normalize_medium,
    open_fits,
    parse_unit,
    source_name,
)

__all__ = ["eso_sdp_loader", "fourmost_l1_loader", "identify_eso_sdp", "identify_fourmost_l1"]

#: Column names tried in order for each role, before the IVOA utypes (``TUTYPn``).
COLUMN_NAMES = {
    "wave": ("WAVE", "WAVELENGTH", "LAMBDA"),
    "flux": ("FLUX", "FLUX_REDUCED"),
    "err": ("ERR_FLUX", "ERR", "ERROR", "ERR_REDUCED"),
    "qual": ("QUAL", "QUALITY"),
}
_UTYPES = {
    "wave": "spectralaxis.value",
    "flux": "fluxaxis.value",
    "err": "fluxaxis.accuracy.staterror",
    "qual": "fluxaxis.accuracy.qualitystatus",
}
#: 4MOST L1 file names: ``..._<arm><n>.fits`` with arm LJ, LB, LG, LR, HB, HG or HR.
_L1_NAME = re.compile(r"_(LJ|LB|LG|LR|HB|HG|HR)(\d)\.fits(\.gz|\.fz)?$", re.IGNORECASE)
FORMAT_SDP = "ESO-SDP"
FORMAT_L1 = "4MOST-L1"


# ----------------------------------------------------------------------------- identify


def _is_phase3_spectrum(hdul: fits.HDUList) -> bool:
    if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
        return False
    return _is_phase3_headers(hdul[0].header, hdul[1].header)


def _is_phase3_headers(h0: fits.Header, h1: fits.Header) -> bool:
    """`_is_phase3_spectrum` from the primary header and the binary table's header."""
    prodcatg = str(h0.get("PRODCATG", "")).strip().upper()
    if not (prodcatg.startswith("SCIENCE.SPECTRUM") or h1.get("EXTNAME") == "PHASE3SPECTRUM"):
        return False
    if h1.get("NAXIS2") != 1:
        return False
    names = {str(h1.get(f"TTYPE{i}", "")).strip().upper() for i in range(1, h1["TFIELDS"] + 1)}
    return bool(names & set(COLUMN_NAMES["flux"])) or any(
        "fluxaxis.value" in str(h1.get(f"TUTYP{i}", "")).lower()
        for i in range(1, h1["TFIELDS"] + 1)
    )


def _is_fourmost(hdul: fits.HDUList) -> bool:
    return _is_fourmost_header(hdul[0].header)


def _is_fourmost_header(h0: fits.Header) -> bool:
    return (
        str(h0.get("INSTRUME", "")).strip().upper() == "QMOST"
        or "4MOST" in str(h0.get("TELESCOP", "")).upper()
    )


def identify_eso_sdp(origin: str, *args: Any, **kwargs: Any) -> bool:
    """Identifier of ``ESO-SDP``: a Phase 3 one-row spectrum table, not from 4MOST."""
    with open_fits(identify_args(args)) as hdul:
        return _is_phase3_spectrum(hdul) and not _is_fourmost(hdul)


def identify_fourmost_l1(origin: str, *args: Any, **kwargs: Any) -> bool:
    """Identifier of ``4MOST-L1``: a Phase 3 one-row spectrum table with INSTRUME='QMOST'."""
    with open_fits(identify_args(args)) as hdul:
        return _is_phase3_spectrum(hdul) and _is_fourmost(hdul)


# ----------------------------------------------------------------------------- read


def _find_column(names: list[str], header: fits.Header, role: str, name: str | None,
                 where: str) -> str | None:  # fmt: skip
    upper = {n.upper(): n for n in names}
    if name is not None:
        if name.upper() not in upper:
            raise ValueError(f"no column {name!r} in {where}; columns: {', '.join(names)}")
        return upper[name.upper()]
    for cand in COLUMN_NAMES[role]:
        if cand in upper:
            return upper[cand]
    for i, n in enumerate(names, start=1):
        utype = str(header.get(f"TUTYP{i}", "")).lower()
        if utype.endswith(_UTYPES[role]):
            return n
    return None


def _column_keyword(names: list[str], header: fits.Header, column: str, key: str) -> Any:
    i = names.index(column) + 1
    return header.get(f"{key}{i}")


def read_phase3(
    source: Any,
    *,
    label: str,
    hdu: int | str = 1,
    flux_unit: Any = None,
    medium: str | None = None,
    default_medium: str | None = None,
    wave_column: str | None = None,
    flux_column: str | None = None,
    err_column: str | None = None,
    qual_column: str | None = None,
) -> Spectrum:
    """Read a Phase 3 one-row spectrum table into a 1-D `~specutils.Spectrum`.

    See `eso_sdp_loader` for the parameters; ``default_medium`` is the medium assumed when
    neither ``medium`` nor the file says.
    """
    return read_phase3_arrays(
        source, label=label, hdu=hdu, flux_unit=flux_unit, medium=medium,
        default_medium=default_medium, wave_column=wave_column, flux_column=flux_column,
        err_column=err_column, qual_column=qual_column,
    ).spectrum()  # fmt: skip


def read_phase3_arrays(
    source: Any,
    *,
    label: str,
    hdu: int | str = 1,
    flux_unit: Any = None,
    medium: str | None = None,
    default_medium: str | None = None,
    wave_column: str | None = None,
    flux_column: str | None = None,
    err_column: str | None = None,
    qual_column: str | None = None,
) -> Phase3Arrays:
    """`read_phase3` without the final `~specutils.Spectrum` (same parameters).

    Returns
    -------
    Phase3Arrays
        The spectrum's arrays, units and ``meta``; ``.spectrum()`` is what `read_phase3`
        returns.
    """
    name = source_name(source)
    medium = normalize_medium(medium)
    with open_fits(source) as hdul:
        primary, table = hdul[0].header, hdul[hdu]
        if not isinstance(table, fits.BinTableHDU):
            raise ValueError(f"HDU {hdu!r} of {name} is not a binary table")
        arrays = phase3_arrays(
            primary, table.header, table.columns.names, lambda: table.data[0], name=name,
            label=label, hdu=hdu, flux_unit=flux_unit, medium=medium,
            default_medium=default_medium, wave_column=wave_column, flux_column=flux_column,
            err_column=err_column, qual_column=qual_column, hdu_name=table.name,
        )  # fmt: skip
    return arrays


class Phase3Arrays:
    """The arrays, units and ``meta`` of a Phase 3 spectrum, before a `~specutils.Spectrum`.

    What `read_phase3` builds its spectrum from; ``flux``, ``spectral_axis``,
    ``uncertainty``, ``mask`` and ``meta`` are those of that spectrum, so that
    `~specutils_cinn.io.join_arms` takes these in its place (survey runs join the arms of
    an object without a spectrum per arm).
    """

    __slots__ = ("flux", "mask", "meta", "spectral_axis", "uncertainty")

    def __init__(self, flux: u.Quantity, spectral_axis: u.Quantity,
                 uncertainty: StdDevUncertainty | None, mask: np.ndarray,
                 meta: dict[str, Any]) -> None:  # fmt: skip
        self.flux = flux
        self.spectral_axis = spectral_axis
        self.uncertainty = uncertainty
        self.mask = mask
        self.meta = meta

    def spectrum(self) -> Spectrum:
        """The `~specutils.Spectrum` that the readers return."""
        return Spectrum(flux=self.flux, spectral_axis=self.spectral_axis,
                        uncertainty=self.uncertainty, mask=self.mask, meta=self.meta)


def phase3_arrays(
    primary: fits.Header,
    header: fits.Header,
    names: list[str],
    row: Any,
    *,
    name: str | None,
    label: str,
    hdu: int | str = 1,
    flux_unit: Any = None,
    medium: str | None = None,
    default_medium: str | None = None,
    wave_column: str | None = None,
    flux_column: str | None = None,
    err_column: str | None = None,
    qual_column: str | None = None,
    hdu_name: str | None = None,
) -> Phase3Arrays:
    """The spectrum of a Phase 3 one-row table from its headers and its row.

    ``names`` are the table's column names (``TTYPEn``) and ``row()`` returns its row
    (called after the headers have been checked); ``hdu_name`` names the table in messages
    (default its ``EXTNAME``); the other parameters as `read_phase3`.
    Shared by `read_phase3` (astropy's table reader) and the survey's direct reader
    (`specutils_cinn.io.read_arms_direct`), so that both give the same arrays and ``meta``.

    Returns
    -------
    Phase3Arrays
        The flux and wavelength (Quantities), uncertainty, mask and ``meta`` of the spectrum.

    Raises
    ------
    ValueError
        If the table has not one row, lacks a wavelength or flux column or the wavelength
        unit, or its columns differ in length.
    """
    medium = normalize_medium(medium)
    if header.get("NAXIS2") != 1:
        raise ValueError(
            f"{name}: a Phase 3 spectrum table has one row, HDU {hdu!r} has "
            f"{header.get('NAXIS2')}"
        )
    where = str(header.get("EXTNAME", "")) if hdu_name is None else hdu_name
    cols = {role: _find_column(names, header, role, col, where) for role, col in (
        ("wave", wave_column), ("flux", flux_column), ("err", err_column),
        ("qual", qual_column))}  # fmt: skip
    for role in ("wave", "flux"):
        if cols[role] is None:
            raise ValueError(f"{name}: no {role} column found in HDU {hdu!r}")
    data = row()
    wave = np.array(data[cols["wave"]], dtype=np.float64).ravel()
    flux = np.array(data[cols["flux"]]).ravel()
    err = None if cols["err"] is None else np.array(data[cols["err"]]).ravel()
    qual = None if cols["qual"] is None else np.array(data[cols["qual"]]).ravel()
    wunit = parse_unit(_column_keyword(names, header, cols["wave"], "TUNIT"), what="wavelength")
    funit = parse_unit(
        _column_keyword(names, header, cols["flux"], "TUNIT"), flux_unit, source=name
    ) or u.dimensionless_unscaled
    eunit = funit
    if err is not None and flux_unit is None:
        eunit = parse_unit(_column_keyword(names, header, cols["err"], "TUNIT"),
                           source=name) or funit  # fmt: skip
    file_medium = medium_from_ucd(_column_keyword(names, header, cols["wave"], "TUCD"))
    if file_medium is None:
        file_medium = medium_from_header(primary) or medium_from_header(header)
    headers = (primary, header)
    meta = {
        "header": primary,
        "data_header": header,
        "format": label,
        "filename": name,
        "medium": medium or file_medium or default_medium,
        "specsys": as_text(header_value(headers, "SPECSYS")),
        "resolving_power": as_float(header_value(headers, "SPEC_RES")),
        "object": as_text(header_value(headers, "CNAME", "OBJECT")),
    }
    if wunit is None:
        raise ValueError(f"{name}: the wavelength column {cols['wave']!r} has no unit (TUNIT)")
    n = min(len(wave), len(flux))
    if len(wave) != len(flux) or (err is not None and len(err) != n):
        raise ValueError(f"{name}: wavelength, flux and error columns differ in length")
    good_axis = np.isfinite(wave)
    mask = ~np.isfinite(flux)
    if qual is not None:
        mask |= qual != 0
    uncertainty = None
    if err is not None:
        mask |= ~np.isfinite(err)
        if eunit != funit:
            err = (err * eunit).to_value(funit)
        uncertainty = StdDevUncertainty(err[good_axis], unit=funit)
    if not np.all(good_axis):
        wave, flux, mask = wave[good_axis], flux[good_axis], mask[good_axis]
    return Phase3Arrays(flux * funit, wave * wunit, uncertainty, mask, meta)


def fourmost_arm(name: str | None, spectrum: Any = None) -> str | None:
    """4MOST arm from a file name (``..._HG1.fits``) or, failing that, the wavelength range."""
    if name:
        m = _L1_NAME.search(name)
        if m:
            return m.group(1).upper()
    if spectrum is None:
        return None
    return arm_from_range(spectrum.spectral_axis.to_value(u.AA, equivalencies=u.spectral()))


def fourmost_l1_meta(arrays: Phase3Arrays) -> Phase3Arrays:
    """Add the 4MOST keys ``arm`` and ``group_id`` to the ``meta`` of a Phase 3 spectrum.

    Returns
    -------
    Phase3Arrays
        ``arrays`` itself, its ``meta`` updated.
    """
    name = arrays.meta["filename"]
    arrays.meta["arm"] = fourmost_arm(name, arrays)
    arrays.meta["group_id"] = fourmost_group_id(arrays.meta, name)
    return arrays


def fourmost_group_id(meta: dict[str, Any], name: str | None) -> str:
    """Identifier shared by the arm files of one object's observation (see `group_arms`)."""
    h = (meta.get("header"), meta.get("data_header"))
    obj = meta.get("object") or as_text(header_value(h, "TRG_UID", "TRG_NME"))
    if obj:
        ob = as_text(header_value(h, "OBID1", "OBID"))
        mjd = as_float(header_value(h, "MJD-OBS"))
        return "|".join([obj, ob or "", "" if mjd is None else f"{mjd:.6f}"])
    if name:
        m = _L1_NAME.search(name)
        if m:
            return name[: m.start()]
    return name or ""


# ----------------------------------------------------------------------------- loaders


@data_loader(FORMAT_SDP, identifier=identify_eso_sdp, dtype=Spectrum,
             extensions=["fits", "fit", "fits.gz"], priority=15)  # fmt: skip
def eso_sdp_loader(
    file_obj: Any,
    *,
    hdu: int | str = 1,
    flux_unit: Any = None,
    medium: str | None = None,
    wave_column: str | None = None,
    flux_column: str | None = None,
    err_column: str | None = None,
    qual_column: str | None = None,
) -> Spectrum:
    """Read an ESO Phase 3 one-dimensional spectrum (``PRODCATG = 'SCIENCE.SPECTRUM*'``).

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The file.
    hdu : int or str, optional
        The binary table with the one-row spectrum.
    flux_unit : str or `~astropy.units.Unit`, optional
        Unit of the flux and error columns, overriding their ``TUNITn`` (e.g. when astropy
        cannot parse it).
    medium : {"air", "vacuum"}, optional
        Medium of the wavelengths, overriding the file: by default the wavelength column's
        UCD (``em.wl;obs.atmos`` air, ``em.wl`` vacuum), else the header keywords
        ``AIRORVAC`` or ``CTYPE1`` (``AWAV``/``WAVE``), else unknown (``meta["medium"]``
        None).
    wave_column, flux_column, err_column, qual_column : str, optional
        Column names; by default the first present of ``WAVE``/``WAVELENGTH``/``LAMBDA``,
        ``FLUX``/``FLUX_REDUCED``, ``ERR_FLUX``/``ERR``/``ERROR``/``ERR_REDUCED``,
        ``QUAL``/``QUALITY``, else the column with the matching IVOA utype (``TUTYPn``).

    Returns
    -------
    `~specutils.Spectrum`
        1-D spectrum with a `~astropy.nddata.StdDevUncertainty` (when there is an error
        column), ``mask`` True where the quality is non-zero or flux or error is not finite,
        and ``meta`` keys ``header``, ``data_header``, ``format``, ``filename``, ``medium``,
        ``specsys``, ``resolving_power`` (``SPEC_RES``) and ``object`` (see :ref:`readers`).
        Pixels whose wavelength is not finite are dropped.
    """
    return read_phase3(
        file_obj, label=FORMAT_SDP, hdu=hdu, flux_unit=flux_unit, medium=medium,
        wave_column=wave_column, flux_column=flux_column, err_column=err_column,
        qual_column=qual_column,
    )  # fmt: skip


@data_loader(FORMAT_L1, identifier=identify_fourmost_l1, dtype=Spectrum,
             extensions=["fits", "fit", "fits.gz"], priority=20)  # fmt: skip
def fourmost_l1_loader(
    file_obj: Any,
    *,
    hdu: int | str = 1,
    flux_unit: Any = None,
    medium: str | None = None,
    wave_column: str | None = None,
    flux_column: str | None = None,
    err_column: str | None = None,
    qual_column: str | None = None,
) -> Spectrum:
    """Read a 4MOST L1 single spectrum (one object, one arm or the joined LRS ``LJ``).

    The layout is the ESO Phase 3 one (`eso_sdp_loader`, same parameters) with
    ``INSTRUME = 'QMOST'``: table ``PHASE3SPECTRUM`` with columns ``WAVE``, ``FLUX``,
    ``ERR_FLUX``, ``QUAL`` (``flux_column="FLUX_NOSS"`` picks the spectrum without sky
    subtraction). Wavelengths are air unless the wavelength column's UCD says ``em.wl``
    without ``obs.atmos``, or ``medium=`` says otherwise.

    Returns
    -------
    `~specutils.Spectrum`
        As `eso_sdp_loader`, plus ``meta["arm"]`` (from the file name ``..._HG1.fits``, else
        from the wavelength range) and ``meta["group_id"]``, shared by the HRS arm files of
        one object's observation (``CNAME|OBID1|MJD-OBS``, else the file name without the
        arm suffix); `~specutils_cinn.io.group_arms` joins such arms into one spectrum.
        L1 spectra are heliocentric (``meta["specsys"]``), not in the stellar rest frame.
    """
    return fourmost_l1_meta(read_phase3_arrays(
        file_obj, label=FORMAT_L1, hdu=hdu, flux_unit=flux_unit, medium=medium,
        default_medium="air", wave_column=wave_column, flux_column=flux_column,
        err_column=err_column, qual_column=qual_column,
    )).spectrum()  # fmt: skip

