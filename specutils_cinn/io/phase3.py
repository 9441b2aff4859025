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
    normalise_medium,
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
    h0, h1 = hdul[0].header, hdul[1].header
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
    h0 = hdul[0].header
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


def _find_column(hdu: fits.BinTableHDU, role: str, name: str | None) -> str | None:
    names = hdu.columns.names
    upper = {n.upper(): n for n in names}
    if name is not None:
        if name.upper() not in upper:
            raise ValueError(f"no column {name!r} in {hdu.name}; columns: {', '.join(names)}")
        return upper[name.upper()]
    for cand in COLUMN_NAMES[role]:
        if cand in upper:
            return upper[cand]
    for i, n in enumerate(names, start=1):
        utype = str(hdu.header.get(f"TUTYP{i}", "")).lower()
        if utype.endswith(_UTYPES[role]):
            return n
    return None


def _column_keyword(hdu: fits.BinTableHDU, column: str, key: str) -> Any:
    i = hdu.columns.names.index(column) + 1
    return hdu.header.get(f"{key}{i}")


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
    name = source_name(source)
    medium = normalise_medium(medium)
    with open_fits(source) as hdul:
        primary, table = hdul[0].header, hdul[hdu]
        if not isinstance(table, fits.BinTableHDU):
            raise ValueError(f"HDU {hdu!r} of {name} is not a binary table")
        if table.header.get("NAXIS2") != 1:
            raise ValueError(
                f"{name}: a Phase 3 spectrum table has one row, HDU {hdu!r} has "
                f"{table.header.get('NAXIS2')}"
            )
        cols = {
            "wave": _find_column(table, "wave", wave_column),
            "flux": _find_column(table, "flux", flux_column),
            "err": _find_column(table, "err", err_column),
            "qual": _find_column(table, "qual", qual_column),
        }
        for role in ("wave", "flux"):
            if cols[role] is None:
                raise ValueError(f"{name}: no {role} column found in HDU {hdu!r}")
        row = table.data[0]
        wave = np.array(row[cols["wave"]], dtype=np.float64).ravel()
        flux = np.array(row[cols["flux"]]).ravel()
        err = None if cols["err"] is None else np.array(row[cols["err"]]).ravel()
        qual = None if cols["qual"] is None else np.array(row[cols["qual"]]).ravel()
        wunit = parse_unit(_column_keyword(table, cols["wave"], "TUNIT"), what="wavelength")
        funit = parse_unit(
            _column_keyword(table, cols["flux"], "TUNIT"), flux_unit, source=name
        ) or u.dimensionless_unscaled
        eunit = funit
        if err is not None and flux_unit is None:
            eunit = parse_unit(_column_keyword(table, cols["err"], "TUNIT"), source=name) or funit
        file_medium = medium_from_ucd(_column_keyword(table, cols["wave"], "TUCD"))
        if file_medium is None:
            file_medium = medium_from_header(primary) or medium_from_header(table.header)
        headers = (primary, table.header)
        meta = {
            "header": primary,
            "data_header": table.header,
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
    return Spectrum(
        flux=flux * funit,
        spectral_axis=wave * wunit,
        uncertainty=uncertainty,
        mask=mask,
        meta=meta,
    )


def fourmost_arm(name: str | None, spectrum: Spectrum | None = None) -> str | None:
    """4MOST arm from a file name (``..._HG1.fits``) or, failing that, the wavelength range."""
    if name:
        m = _L1_NAME.search(name)
        if m:
            return m.group(1).upper()
    if spectrum is None:
        return None
    return arm_from_range(spectrum.spectral_axis.to_value(u.AA, equivalencies=u.spectral()))


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
    spec = read_phase3(
        file_obj, label=FORMAT_L1, hdu=hdu, flux_unit=flux_unit, medium=medium,
        default_medium="air", wave_column=wave_column, flux_column=flux_column,
        err_column=err_column, qual_column=qual_column,
    )  # fmt: skip
    name = spec.meta["filename"]
    spec.meta["arm"] = fourmost_arm(name, spec)
    spec.meta["group_id"] = fourmost_group_id(spec.meta, name)
    return spec

