"""Write small files in the 4MOST and ESO Phase 3 layouts (look-alikes for tests and benchmarks).

No real 4MOST file may be shipped, so tests, examples and survey-scale benchmarks write files
with the same layout: the keywords and columns that the readers of `specutils_cinn.io` use,
following a checked 4MOST QL1 header (see :ref:`readers`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.decorators import deprecated_renamed_argument

__all__ = ["cname", "write_fourmost_container", "write_phase3_spectrum"]

_FLUX_UNIT = "erg s-1 cm-2 Angstrom-1"


def cname(ra: float, dec: float) -> str:
    """4MOST object name from coordinates (degrees): ``J<hhmmss.ss><+|->ddmmss.s``."""
    h = (ra % 360.0) / 15.0
    hh, mm = int(h), int((h * 60) % 60)
    ss = (h * 3600) % 60
    sign = "-" if dec < 0 else "+"
    d = abs(dec)
    dd, dm = int(d), int((d * 60) % 60)
    ds = (d * 3600) % 60
    return f"J{hh:02d}{mm:02d}{ss:05.2f}{sign}{dd:02d}{dm:02d}{ds:04.1f}"


_DTYPES = {"E": ">f4", "D": ">f8", "J": ">i4", "K": ">i8", "I": ">i2"}


def _table(columns: list[tuple[str, str, np.ndarray, dict[str, Any]]], name: str
           ) -> fits.BinTableHDU:  # fmt: skip
    """A binary table of numeric columns ``(name, code, array (rows, ...), keywords)``.

    The data are handed to astropy as a big-endian record array: astropy then writes them as
    they are, instead of byte-swapping vector columns element by element (tens of ms a file).
    """
    arrays = [np.asarray(a, dtype=_DTYPES[code]) for _, code, a, _ in columns]
    nrows = arrays[0].shape[0]
    dtype = np.dtype([(n, a.dtype, a.shape[1:]) for (n, _, _, _), a in
                      zip(columns, arrays, strict=True)])  # fmt: skip
    rec = np.empty(nrows, dtype=dtype)
    for (n, _, _, _), a in zip(columns, arrays, strict=True):
        rec[n] = a
    cols = [fits.Column(n, f"{int(np.prod(a.shape[1:], dtype=int))}{code}"
                        if a.ndim > 1 else code, **kw)
            for (n, code, _, kw), a in zip(columns, arrays, strict=True)]  # fmt: skip
    hdu = fits.BinTableHDU.from_columns(cols, nrows=nrows, name=name)
    hdu.data = rec  # drops TUNITn and TNULLn: put them back
    for i, (_, _, _, kw) in enumerate(columns, start=1):
        if kw.get("unit") is not None:
            hdu.header.set(f"TUNIT{i}", kw["unit"], after=f"TFORM{i}")
        if kw.get("null") is not None:
            hdu.header.set(f"TNULL{i}", kw["null"], after=f"TFORM{i}")
    return hdu


def _primary(keys: Mapping[str, Any]) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    for k, v in keys.items():
        if v is not None:
            hdu.header[k] = v
    return hdu


def write_phase3_spectrum(
    path: str | os.PathLike,
    wave: np.ndarray,
    flux: np.ndarray,
    err: np.ndarray | None = None,
    qual: np.ndarray | None = None,
    *,
    instrument: str = "QMOST",
    flux_unit: str | None = _FLUX_UNIT,
    wave_unit: str = "Angstrom",
    wave_ucd: str | None = "em.wl;obs.atmos",
    err_name: str = "ERR_FLUX",
    primary: Mapping[str, Any] | None = None,
    table: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write an ESO Phase 3 one-dimensional spectrum (4MOST L1 by default).

    Parameters
    ----------
    path : path-like
        Output file.
    wave, flux : numpy.ndarray
        Wavelengths (in ``wave_unit``) and flux, 1-D, same length.
    err, qual : numpy.ndarray, optional
        Flux error (standard deviation) and quality (0 = good).
    instrument : str, optional
        ``INSTRUME``: ``"QMOST"`` makes a 4MOST L1 file, anything else a generic ESO one.
    flux_unit : str or None, optional
        ``TUNIT`` of the flux and error columns (None: no unit).
    wave_unit : str, optional
        ``TUNIT`` of the wavelength column.
    wave_ucd : str or None, optional
        ``TUCD`` of the wavelength column: ``"em.wl;obs.atmos"`` (air, the 4MOST default),
        ``"em.wl"`` (vacuum) or None (not written).
    err_name : str, optional
        Name of the error column (4MOST: ``ERR_FLUX``; many ESO products: ``ERR``).
    primary, table : mapping, optional
        Extra or replacement keywords of the primary header and the table header (None values
        remove a default keyword).
    overwrite : bool, optional
        Overwrite an existing file.
    """
    wave = np.asarray(wave)
    n = wave.size
    keys: dict[str, Any] = {
        "PRODCATG": "SCIENCE.SPECTRUM",
        "TELESCOP": "ESO-VISTA" if instrument == "QMOST" else "ESO-VLT-U2",
        "INSTRUME": instrument,
        "ORIGIN": "ESO",
        "SPECSYS": "HELIOCEN",
        "FLUXCAL": "ABSOLUTE",
        "CONTNORM": False,
        "WAVELMIN": float(np.nanmin(wave)) / 10.0 if wave_unit == "Angstrom" else None,
        "WAVELMAX": float(np.nanmax(wave)) / 10.0 if wave_unit == "Angstrom" else None,
    }
    keys.update(primary or {})
    cols = [
        ("WAVE", "E", wave.reshape(1, n), {"unit": wave_unit}),
        ("FLUX", "E", np.reshape(flux, (1, n)), {"unit": flux_unit}),
    ]
    if err is not None:
        cols.append((err_name, "E", np.reshape(err, (1, n)), {"unit": flux_unit}))
    if qual is not None:
        cols.append(("QUAL", "J", np.reshape(qual, (1, n)), {"null": -1}))
    hdu = _table(cols, "PHASE3SPECTRUM")
    h = hdu.header
    h["NELEM"] = n
    h["TUTYP1"] = "spec:Data.SpectralAxis.Value"
    if wave_ucd:
        h["TUCD1"] = wave_ucd
    h["TUTYP2"] = "spec:Data.FluxAxis.Value"
    for k, v in (table or {}).items():
        if v is None:
            h.remove(k, ignore_missing=True)
        else:
            h[k] = v
    fits.HDUList([_primary(keys), hdu]).writeto(path, overwrite=overwrite)


@deprecated_renamed_argument("fibres", "fibers", "0.1")
def write_fourmost_container(
    path: str | os.PathLike,
    wave_start: float,
    wave_step: float,
    flux: np.ndarray,
    ivar: np.ndarray | None = None,
    qual: np.ndarray | None = None,
    fibers: Table | Mapping[str, Any] | None = None,
    *,
    flux_unit: str | None = _FLUX_UNIT,
    wave_unit: str = "Angstrom",
    ivar_name: str = "FLUX_IVAR",
    primary: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write a 4MOST nightly multi-fiber container (OBMETATAB, SPECTAB, FIBMETATAB, PROVTAB).

    Parameters
    ----------
    path : path-like
        Output file; name it like ``20260120_LJ11_20260121.fits`` (the mode is read from it).
    wave_start, wave_step : float
        First pixel center and step of the linear wavelength axis (``1CRVL1``, ``1CDLT1``).
    flux : numpy.ndarray
        Flux, shape ``(n_fibers, n_pixels)``.
    ivar, qual : numpy.ndarray, optional
        Inverse variance (or, with ``ivar_name="ERR_FLUX"``, the error) and quality
        (0 = good), same shape.
    fibers : `~astropy.table.Table` or mapping of columns, optional
        FIBMETATAB columns, one row per fiber (default: ``FIB_ID`` and ``FIB_ST = 2``).

        .. deprecated:: 0.1
           The British spelling ``fibres=`` still works for this release, with an
           `~astropy.utils.exceptions.AstropyDeprecationWarning`; use ``fibers=``.
    flux_unit : str or None, optional
        ``TUNIT1`` of ``FLUX`` (None: not written, as in some real files).
    wave_unit : str, optional
        ``1CUNI1``.
    ivar_name : str, optional
        ``FLUX_IVAR`` or, for older files, ``ERR_FLUX``.
    primary : mapping, optional
        Extra primary header keywords.
    overwrite : bool, optional
        Overwrite an existing file.
    """
    flux = np.atleast_2d(flux)
    nf = flux.shape[0]
    specuid = np.arange(1, nf + 1, dtype=np.int64)
    cols = [("FLUX", "E", flux, {"unit": flux_unit})]
    if ivar is not None:
        unit = flux_unit if ivar_name == "ERR_FLUX" else None
        cols.append((ivar_name, "E", np.reshape(ivar, flux.shape), {"unit": unit}))
    if qual is not None:
        cols.append(("QUAL", "J", np.reshape(qual, flux.shape), {}))
    cols.append(("SPECUID", "K", specuid, {}))
    spec = _table(cols, "SPECTAB")
    h = spec.header
    h["1CTYP1"] = "AWAV"
    h["1CRPX1"] = 1.0
    h["1CRVL1"] = float(wave_start)
    h["1CDLT1"] = float(wave_step)
    h["1CUNI1"] = wave_unit
    fib = Table(fibers) if fibers is not None else Table()
    if "FIB_ID" not in fib.colnames:
        fib["FIB_ID"] = np.arange(1, nf + 1, dtype=np.int32)
    if "FIB_ST" not in fib.colnames:
        fib["FIB_ST"] = np.full(nf, 2, dtype=np.int16)
    if "SPECUID" not in fib.colnames:
        fib["SPECUID"] = specuid
    fibhdu = fits.table_to_hdu(fib)
    fibhdu.name = "FIBMETATAB"
    ob = fits.BinTableHDU.from_columns([fits.Column("OBID", "K", array=np.array([1]))],
                                       name="OBMETATAB")  # fmt: skip
    prov = fits.BinTableHDU.from_columns(
        [fits.Column("SPECUID", "K", array=specuid),
         fits.Column("FILENAME", "40A", array=np.array([os.path.basename(path)] * nf))],
        name="PROVTAB",
    )  # fmt: skip
    keys = {"INSTRUME": "QMOST", "TELESCOP": "ESO-VISTA", "SPECSYS": "HELIOCEN"}
    keys.update(primary or {})
    fits.HDUList([_primary(keys), ob, spec, fibhdu, prov]).writeto(path, overwrite=overwrite)
