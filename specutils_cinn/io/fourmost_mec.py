"""4MOST nightly multi-fiber containers (MEC): ``SPECTAB`` spectra plus ``FIBMETATAB`` metadata.

Layout: [1] ``OBMETATAB``, [2] ``SPECTAB`` (one row per fiber spectrum: ``FLUX``,
``FLUX_IVAR`` or, in older files, ``ERR_FLUX``, ``QUAL``, ``SPECUID``), [3] ``FIBMETATAB``
(one row per fiber spectrum, same order), [4] ``PROVTAB``. There is no wavelength column: the
axis is linear, ``lambda_i = 1CRVL1 + (i + 1 - 1CRPX1) * 1CDLT1`` in unit ``1CUNI1``. The file
name holds the mode, e.g. ``20260120_LJ11_20260121.fits``; the HRS arms come in separate
``HB``/``HG``/``HR`` files.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty
from astropy.table import Table
from astropy.utils.decorators import deprecated_renamed_argument
from astropy.utils.exceptions import AstropyDeprecationWarning, AstropyUserWarning
from specutils import Spectrum, SpectrumCollection, SpectrumList
from specutils.io.registers import data_loader

from ._common import (
    arm_from_range,
    as_float,
    as_text,
    header_value,
    identify_args,
    normalize_medium,
    open_fits,
    parse_unit,
    source_name,
)

__all__ = [
    "fourmost_mec_collection_loader",
    "fourmost_mec_list_loader",
    "fourmost_mec_loader",
    "identify_fourmost_mec",
]

FORMAT_MEC = "4MOST-MEC"
#: The mode in a container's file name: ``_<LJ|HR|HG|HB><1-4><1-4>_``.
_MEC_NAME = re.compile(r"_(LJ|LB|LG|LR|HB|HG|HR)([1-4][1-4])_", re.IGNORECASE)
#: Fiber-table columns naming the object, tried in order (for ``object`` and ``group_id``).
OBJECT_COLUMNS = ("CNAME", "OBJ_NME", "OBJECT", "TRG_UID", "TARGUID", "OBJ_UID")
#: Fiber status kept by default (``FIB_ST``; 2: fiber on a target with a spectrum). The British
#: spelling ``DEFAULT_FIBRE_STATUS`` is a deprecated alias for this release.
DEFAULT_FIBER_STATUS = 2

#: Names renamed to American spelling in 0.1: old name -> new name. The old names work, with
#: an `~astropy.utils.exceptions.AstropyDeprecationWarning`, for this release only.
_RENAMED = {"DEFAULT_FIBRE_STATUS": "DEFAULT_FIBER_STATUS"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(
            f"{__name__}.{name} is deprecated since 0.1 and goes away in the next release; "
            f"use {new}",
            AstropyDeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def identify_fourmost_mec(origin: str, *args: Any, **kwargs: Any) -> bool:
    """Identifier of ``4MOST-MEC``: binary tables ``SPECTAB`` and ``FIBMETATAB``."""
    with open_fits(identify_args(args)) as hdul:
        names = {h.name for h in hdul}
        return "SPECTAB" in names and "FIBMETATAB" in names


class _Container:
    """Arrays and metadata of the selected rows of one container."""

    def __init__(
        self,
        source: Any,
        flux_unit: Any,
        medium: str | None,
        fiber_status: Any,
        rows: Any,
    ) -> None:
        self.name = source_name(source)
        medium = normalize_medium(medium)
        with open_fits(source) as hdul:
            self.primary = hdul[0].header
            spec, fib = hdul["SPECTAB"], hdul["FIBMETATAB"]
            self.spec_header = spec.header
            names = {n.upper(): n for n in spec.columns.names}
            if "FLUX" not in names:
                raise ValueError(f"{self.name}: SPECTAB has no FLUX column")
            n_spec = int(spec.header["NAXIS2"])
            fibers = Table(fib.data, copy=True) if fib.data is not None else Table()
            index = self._select(n_spec, fibers, spec, fiber_status, rows)
            self.fibers = fibers[index] if len(fibers) else fibers
            self.rows = index
            data = spec.data
            col = names["FLUX"]
            self.flux = np.array(data[col][index])
            if self.flux.ndim == 1:
                self.flux = self.flux[:, None]
            self.wave_unit, self.wave = self._axis(spec.header, spec.columns.names.index(col) + 1,
                                                   self.flux.shape[1])
            self.unit = self._flux_unit(spec.header, spec.columns.names.index(col) + 1, flux_unit)
            self.kind, self.unc = None, None
            if "FLUX_IVAR" in names:
                self.kind = "ivar"
                self.unc = np.array(data[names["FLUX_IVAR"]][index]).reshape(self.flux.shape)
            elif "ERR_FLUX" in names:
                self.kind = "std"
                self.unc = np.array(data[names["ERR_FLUX"]][index]).reshape(self.flux.shape)
            qual = None
            if "QUAL" in names:
                qual = np.array(data[names["QUAL"]][index]).reshape(self.flux.shape)
            self.specuid = (
                np.array(data[names["SPECUID"]][index]) if "SPECUID" in names else None
            )
        mask = ~np.isfinite(self.flux)
        if qual is not None:
            mask |= qual != 0
        if self.kind == "ivar":
            mask |= ~(self.unc > 0)
        elif self.kind == "std":
            mask |= ~np.isfinite(self.unc)
        self.mask = mask
        ctype = str(header_value((self.spec_header,), "1CTYP1", "CTYPE1") or "").upper()[:4]
        self.medium = medium or {"AWAV": "air", "WAVE": "vacuum"}.get(ctype) or "air"
        m = _MEC_NAME.search(self.name or "")
        self.arm = m.group(1).upper() if m else arm_from_range(self.wave.to_value(u.AA))
        self.file_key = self.name or ""
        if m and self.arm in ("HB", "HG", "HR"):  # the three arm files share this key
            self.file_key = self.name[: m.start()] + f"_H{m.group(2)}_" + self.name[m.end():]
        self.resolving_power = as_float(header_value((self.primary,), "SPEC_RES"))
        self.specsys = as_text(header_value((self.primary, self.spec_header), "SPECSYS"))

    def _select(
        self, n_spec: int, fibers: Table, spec: fits.BinTableHDU, status: Any, rows: Any
    ) -> np.ndarray:
        index = np.arange(n_spec)
        if rows is not None:
            index = index[rows] if not isinstance(rows, int | np.integer) else index[[rows]]
        if len(fibers) == 0:
            return index
        if len(fibers) != n_spec:
            raise ValueError(
                f"{self.name}: FIBMETATAB has {len(fibers)} rows, SPECTAB {n_spec}"
            )
        if status is not None and "FIB_ST" in fibers.colnames:
            keep = np.isin(np.asarray(fibers["FIB_ST"])[index], np.atleast_1d(status))
            index = index[keep]
        return index

    def _axis(self, h: fits.Header, n: int, npix: int) -> tuple[u.UnitBase, u.Quantity]:
        hv = header_value
        crval = as_float(hv((h,), f"1CRVL{n}", "1CRVL1", "CRVAL1"))
        cdelt = as_float(hv((h,), f"1CDLT{n}", "1CDLT1", "CDELT1", "CD1_1"))
        crpix = as_float(hv((h,), f"1CRPX{n}", "1CRPX1", "CRPIX1"))
        if crval is None or cdelt is None:
            raise ValueError(
                f"{self.name}: no wavelength keywords (1CRVL{n}/1CDLT{n} or CRVAL1/CDELT1) "
                "in SPECTAB"
            )
        crpix = 1.0 if crpix is None else crpix
        unit = parse_unit(hv((h,), f"1CUNI{n}", "1CUNI1", "CUNIT1"), what="wavelength")
        if unit is None:  # 4MOST covers 370-950 nm: the value tells nm from Angstrom
            unit = u.nm if crval < 2000.0 else u.AA
        wave = crval + (np.arange(npix) + 1.0 - crpix) * cdelt
        return unit, wave * unit

    def _flux_unit(self, h: fits.Header, n: int, override: Any) -> u.UnitBase:
        text = header_value((h,), f"TUNIT{n}", "BUNIT", "1CUNI2")
        unit = parse_unit(text, override, source=self.name)
        if unit is None:
            warnings.warn(
                f"{self.name}: no flux unit (TUNIT{n}) in SPECTAB: flux read as dimensionless "
                "(pass flux_unit=... to choose the unit)",
                AstropyUserWarning,
                stacklevel=4,
            )
            unit = u.dimensionless_unscaled
        return unit

    def uncertainty(self, sl: Any = slice(None)) -> Any:
        if self.kind is None:
            return None
        if self.kind == "ivar":
            return InverseVariance(self.unc[sl], unit=self.unit**-2)
        return StdDevUncertainty(self.unc[sl], unit=self.unit)

    def meta(self) -> dict[str, Any]:
        return {
            "header": self.primary,
            "data_header": self.spec_header,
            "format": FORMAT_MEC,
            "filename": self.name,
            "medium": self.medium,
            "specsys": self.specsys,
            "resolving_power": self.resolving_power,
            "arm": self.arm,
        }

    def fiber_dict(self, i: int) -> dict[str, Any]:
        if not len(self.fibers):
            return {}
        row = self.fibers[i]
        return {c: _plain(row[c]) for c in self.fibers.colnames}

    def object_of(self, fiber: dict[str, Any]) -> str | None:
        for c in OBJECT_COLUMNS:
            value = as_text(fiber.get(c))
            if value:
                return value
        return None

    def group_id(self, i: int, obj: str | None) -> str:
        return f"{self.file_key}|{obj if obj else f'row{int(self.rows[i])}'}"

    def fibers_table(self) -> Table:
        t = self.fibers.copy(copy_data=False) if len(self.fibers) else Table()
        objs = [self.object_of(self.fiber_dict(i)) for i in range(len(self.rows))]
        t["row"] = self.rows
        t["group_id"] = [self.group_id(i, o) for i, o in enumerate(objs)]
        return t


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").strip()
    if isinstance(value, np.generic):
        value = value.item()
        return value.strip() if isinstance(value, str) else value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@data_loader(FORMAT_MEC, identifier=identify_fourmost_mec, dtype=SpectrumList,
             extensions=["fits", "fits.gz"], priority=20)  # fmt: skip
@deprecated_renamed_argument("fibre_status", "fiber_status", "0.1")
def fourmost_mec_list_loader(
    file_obj: Any,
    *,
    flux_unit: Any = None,
    medium: str | None = None,
    fiber_status: Any = DEFAULT_FIBER_STATUS,
    rows: Any = None,
) -> SpectrumList:
    """Read a 4MOST nightly container as one 1-D spectrum per fiber.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The container.
    flux_unit : str or `~astropy.units.Unit`, optional
        Flux unit, overriding ``TUNITn`` of ``FLUX`` (missing in some files; then the flux is
        dimensionless with a warning).
    medium : {"air", "vacuum"}, optional
        Medium of the wavelengths; by default ``1CTYP1`` (``AWAV`` air, ``WAVE`` vacuum),
        else air (4MOST).
    fiber_status : int, sequence of int or None, optional
        Keep the fibers whose ``FIB_ST`` is one of these (default 2,
        ``DEFAULT_FIBER_STATUS``); None keeps all.

        .. deprecated:: 0.1
           The British spelling ``fibre_status`` still works for this release, with an
           `~astropy.utils.exceptions.AstropyDeprecationWarning`; use ``fiber_status``.
    rows : slice, int or array of int, optional
        Only these rows of ``SPECTAB`` (before the status selection), e.g. ``slice(0, 10000)``
        to read a large container in chunks.

    Returns
    -------
    `~specutils.SpectrumList`
        One `~specutils.Spectrum` per kept fiber, in file order, sharing one spectral axis,
        with an `~astropy.nddata.InverseVariance` (``FLUX_IVAR``) or
        `~astropy.nddata.StdDevUncertainty` (``ERR_FLUX``), ``mask`` True where ``QUAL`` is
        non-zero, the flux is not finite or the inverse variance not positive, and ``meta``
        keys ``header``, ``data_header``, ``format``, ``filename``, ``medium``, ``specsys``,
        ``resolving_power``, ``arm``, ``fiber`` (the fiber's ``FIBMETATAB`` row as a dict),
        ``row`` (its ``SPECTAB`` row), ``object`` and ``group_id`` (see :ref:`readers`).
        For this release ``meta["fibre"]`` holds the same dict as ``meta["fiber"]``; the
        British key goes away in the next release.
    """
    c = _Container(file_obj, flux_unit, medium, fiber_status, rows)
    out = SpectrumList()
    base = c.meta()
    for i in range(len(c.rows)):
        fiber = c.fiber_dict(i)
        obj = c.object_of(fiber)
        meta = dict(base)
        meta.update(
            fiber=fiber,
            fibre=fiber,  # the British key, for this release only
            row=int(c.rows[i]),
            object=obj,
            group_id=c.group_id(i, obj),
            resolving_power=as_float(fiber.get("SPEC_RES")) or c.resolving_power,
        )
        if c.specuid is not None:
            meta["specuid"] = _plain(c.specuid[i])
        out.append(
            Spectrum(flux=c.flux[i] * c.unit, spectral_axis=c.wave,
                     uncertainty=c.uncertainty(i), mask=c.mask[i], meta=meta)
        )  # fmt: skip
    return out


@data_loader(FORMAT_MEC, identifier=identify_fourmost_mec, dtype=Spectrum,
             extensions=["fits", "fits.gz"], priority=20,
             autogenerate_spectrumlist=False)  # fmt: skip
@deprecated_renamed_argument("fibre_status", "fiber_status", "0.1")
def fourmost_mec_loader(
    file_obj: Any,
    *,
    flux_unit: Any = None,
    medium: str | None = None,
    fiber_status: Any = DEFAULT_FIBER_STATUS,
    rows: Any = None,
) -> Spectrum:
    """Read a 4MOST nightly container as one 2-D spectrum (fibers x pixels).

    The fastest way to hand a container to the estimator: one row per fiber.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The container.
    flux_unit : str or `~astropy.units.Unit`, optional
        Flux unit, overriding ``TUNITn`` of ``FLUX`` (missing in some files; then the flux is
        dimensionless with a warning).
    medium : {"air", "vacuum"}, optional
        Medium of the wavelengths; by default ``1CTYP1`` (``AWAV`` air, ``WAVE`` vacuum),
        else air (4MOST).
    fiber_status : int, sequence of int or None, optional
        Keep the fibers whose ``FIB_ST`` is one of these (default 2,
        ``DEFAULT_FIBER_STATUS``); None keeps all.

        .. deprecated:: 0.1
           The British spelling ``fibre_status`` still works for this release, with an
           `~astropy.utils.exceptions.AstropyDeprecationWarning`; use ``fiber_status``.
    rows : slice, int or array of int, optional
        Only these rows of ``SPECTAB`` (before the status selection), e.g. ``slice(0, 10000)``
        to read a large container in chunks.

    Returns
    -------
    `~specutils.Spectrum`
        Flux of shape ``(n_fibers, n_pixels)`` on the common spectral axis, uncertainty and
        mask as in `fourmost_mec_list_loader`, and ``meta["fibers"]``: the kept
        ``FIBMETATAB`` rows as a `~astropy.table.Table` in flux-row order, with columns
        ``row`` (the ``SPECTAB`` row) and ``group_id`` added. For this release
        ``meta["fibres"]`` holds the same table; the British key goes away in the next
        release.
    """
    c = _Container(file_obj, flux_unit, medium, fiber_status, rows)
    meta = c.meta()
    meta["fibers"] = meta["fibres"] = c.fibers_table()  # "fibres": this release only
    return Spectrum(flux=c.flux * c.unit, spectral_axis=c.wave, uncertainty=c.uncertainty(),
                    mask=c.mask, meta=meta)  # fmt: skip


@data_loader(FORMAT_MEC, identifier=identify_fourmost_mec, dtype=SpectrumCollection,
             extensions=["fits", "fits.gz"], priority=20)  # fmt: skip
@deprecated_renamed_argument("fibre_status", "fiber_status", "0.1")
def fourmost_mec_collection_loader(
    file_obj: Any,
    *,
    flux_unit: Any = None,
    medium: str | None = None,
    fiber_status: Any = DEFAULT_FIBER_STATUS,
    rows: Any = None,
) -> SpectrumCollection:
    """Read a 4MOST nightly container as a `~specutils.SpectrumCollection`.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The container.
    flux_unit : str or `~astropy.units.Unit`, optional
        Flux unit, overriding ``TUNITn`` of ``FLUX`` (missing in some files; then the flux is
        dimensionless with a warning).
    medium : {"air", "vacuum"}, optional
        Medium of the wavelengths; by default ``1CTYP1`` (``AWAV`` air, ``WAVE`` vacuum),
        else air (4MOST).
    fiber_status : int, sequence of int or None, optional
        Keep the fibers whose ``FIB_ST`` is one of these (default 2,
        ``DEFAULT_FIBER_STATUS``); None keeps all.

        .. deprecated:: 0.1
           The British spelling ``fibre_status`` still works for this release, with an
           `~astropy.utils.exceptions.AstropyDeprecationWarning`; use ``fiber_status``.
    rows : slice, int or array of int, optional
        Only these rows of ``SPECTAB`` (before the status selection), e.g. ``slice(0, 10000)``
        to read a large container in chunks.

    Returns
    -------
    `~specutils.SpectrumCollection`
        As `fourmost_mec_loader`, with the spectral axis repeated per fiber.
    """
    c = _Container(file_obj, flux_unit, medium, fiber_status, rows)
    meta = c.meta()
    meta["fibers"] = meta["fibres"] = c.fibers_table()  # "fibres": this release only
    axis = np.broadcast_to(c.wave.value, c.flux.shape) * c.wave_unit
    return SpectrumCollection(flux=c.flux * c.unit, spectral_axis=axis,
                              uncertainty=c.uncertainty(), mask=c.mask, meta=meta)  # fmt: skip

