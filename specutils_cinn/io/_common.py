"""Helpers shared by the readers: opening files, units, medium and metadata keys."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

__all__ = [
    "ARMS_HRS",
    "ARMS_LRS",
    "META_KEYS",
    "medium_from_header",
    "medium_from_ucd",
    "normalize_medium",
    "parse_unit",
]

#: The 4MOST high-resolution arms, blue to red (delivered as separate files).
ARMS_HRS = ("HB", "HG", "HR")
#: The 4MOST low-resolution modes: joined (``LJ``) and the single arms.
ARMS_LRS = ("LJ", "LB", "LG", "LR")

#: Keys the readers of `specutils_cinn.io` put into ``Spectrum.meta`` (see :ref:`readers`).
META_KEYS = {
    "header": "primary FITS header (astropy Header), as specutils' own loaders store it",
    "data_header": "header of the HDU the spectrum was read from",
    "format": "name of the loader that read the file, e.g. '4MOST-L1'",
    "filename": "file name without directories (None for file objects without a name)",
    "medium": "'air' or 'vacuum': medium of the wavelengths; None when the file does not say",
    "specsys": "reference frame of the spectral axis (FITS SPECSYS, e.g. 'HELIOCEN'), or None",
    "resolving_power": "resolving power lambda / FWHM (SPEC_RES), float or None",
    "arm": "4MOST arm or mode: 'LJ', 'LB', 'LG', 'LR', 'HB', 'HG', 'HR' (4MOST only)",
    "object": "object name (CNAME, OBJ_NME or OBJECT), or None",
    "group_id": "4MOST: the arms of one object's observation share it (see group_arms)",
    "segments": "4MOST HRS grouped by group_arms: one dict per arm (arm, pixel range, ...)",
    "fiber": "4MOST-MEC, SpectrumList: the FIBMETATAB row of the fiber (dict)",
    "fibers": "4MOST-MEC, 2-D Spectrum: FIBMETATAB rows of the flux rows (astropy Table)",
    "fibre": "the same as 'fiber' (British spelling; this release only, deprecated)",
    "fibres": "the same as 'fibers' (British spelling; this release only, deprecated)",
}

#: Pixel-center ranges of the HRS arms (Angstrom, air), for files whose name does not say.
_HRS_RANGES = {"HB": (3926.0, 4355.0), "HG": (5160.0, 5730.0), "HR": (6100.0, 6790.0)}
_RELATIVE = re.compile(r"relative|normali[sz]ed|arbitrary|dimensionless|unitless|^none$|^-$", re.I)
_UNIT_FORMATS = (None, "fits", "cds", "ogip")


@contextlib.contextmanager
def open_fits(source: Any) -> Iterator[fits.HDUList]:
    """Open a path, file object or HDUList (left open if it was given open)."""
    if isinstance(source, fits.HDUList):
        yield source
        return
    if hasattr(source, "read"):
        hdul = fits.open(source)
        try:
            yield hdul
        finally:
            with contextlib.suppress(AttributeError, io.UnsupportedOperation, ValueError):
                source.seek(0)
        return
    with fits.open(os.fspath(source)) as hdul:
        yield hdul


def identify_args(args: tuple[Any, ...]) -> Any:
    """What to open in an identifier called as ``identifier(origin, path, fileobj, *args)``."""
    path, fileobj = (args + (None, None))[:2]
    if fileobj is not None:
        return fileobj
    if len(args) > 2 and isinstance(args[2], (fits.HDUList, str, os.PathLike)):
        return args[2]
    return path


def source_name(source: Any) -> str | None:
    """File name (no directories) of a path, file object or HDUList, if it has one."""
    if isinstance(source, str | os.PathLike):
        return os.path.basename(os.fspath(source))
    if isinstance(source, fits.HDUList):
        name = getattr(source, "_file", None)
        name = getattr(name, "name", None)
    else:
        name = getattr(source, "name", None)
    return os.path.basename(name) if isinstance(name, str) else None


def parse_unit(
    text: Any,
    override: Any = None,
    *,
    what: str = "flux",
    source: str | None = None,
) -> u.UnitBase | None:
    """Parse a FITS unit string leniently.

    Parameters
    ----------
    text : str or None
        The unit string from the file (``BUNIT``, ``TUNITn``).
    override : str or `~astropy.units.Unit`, optional
        The user's choice (the readers' ``flux_unit=``); wins over ``text``.
    what : str, optional
        What the unit is of, for messages.
    source : str, optional
        File name, for messages.

    Returns
    -------
    `~astropy.units.UnitBase` or None
        None when there is neither an override nor a unit string. Strings that astropy
        cannot parse in any of its FITS, CDS or OGIP dialects give dimensionless: silently
        when they say "relative", "normalized", "arbitrary" and the like, otherwise with an
        `~astropy.utils.exceptions.AstropyUserWarning` suggesting ``flux_unit=``.

    Raises
    ------
    ValueError
        If ``override`` is not a unit.
    """
    if override is not None:
        try:
            return u.Unit(override)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what}_unit={override!r} is not a unit astropy knows") from exc
    if text is None:
        return None
    s = str(text).strip()
    if not s:
        return None
    unit = _parse_strict(s)
    if unit is not None:
        return unit
    if not _RELATIVE.search(s):
        where = f" in {source}" if source else ""
        warnings.warn(
            f"{what} unit {s!r}{where} is not a unit astropy can parse: {what} read as "
            f"dimensionless (pass {what}_unit=... to choose the unit)",
            AstropyUserWarning,
            stacklevel=3,
        )
    return u.dimensionless_unscaled


@functools.lru_cache(maxsize=256)
def _parse_strict(s: str) -> u.UnitBase | None:
    """The unit in any of astropy's dialects (also lower-cased), or None."""
    for fmt in _UNIT_FORMATS:
        for cand in (s, s.lower()):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return u.Unit(cand, format=fmt)
            except (ValueError, TypeError):
                continue
    return None


def normalize_medium(value: Any) -> str | None:
    """``"air"`` or ``"vacuum"`` from a user's or header's spelling (None stays None).

    Raises
    ------
    ValueError
        For anything but air/vacuum spellings (``"air"``, ``"vac"``, ``"vacuum"``, any case).
    """
    if value is None:
        return None
    s = str(value).strip().lower()
    if s == "air":
        return "air"
    if s in ("vac", "vacuum"):
        return "vacuum"
    raise ValueError(f"medium must be 'air' or 'vacuum', got {value!r}")


def medium_from_ucd(ucd: Any) -> str | None:
    """Medium from a wavelength column's UCD: ``em.wl;obs.atmos`` is air, ``em.wl`` vacuum."""
    if not ucd:
        return None
    parts = [p.strip().lower() for p in str(ucd).split(";")]
    if "em.wl" not in parts:
        return None
    return "air" if "obs.atmos" in parts else "vacuum"


def medium_from_header(header: fits.Header, axis: int = 1) -> str | None:
    """Medium from header keywords: ``AIRORVAC``, or WCS ``CTYPEn`` ``AWAV`` (air) / ``WAVE``."""
    value = header.get("AIRORVAC")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return normalize_medium(value)
    ctype = str(header.get(f"CTYPE{axis}", "")).strip().upper()[:4]
    return {"AWAV": "air", "WAVE": "vacuum"}.get(ctype)


def header_value(headers: tuple[fits.Header, ...], *keys: str) -> Any:
    """The first of ``keys`` found in any of ``headers`` (in order), else None."""
    for key in keys:
        for h in headers:
            if h is not None and key in h:
                value = h[key]
                if value is not None and not isinstance(value, fits.card.Undefined):
                    return value
    return None


def as_float(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def as_text(value: Any) -> str | None:
    """A stripped non-empty string, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    s = str(value).strip()
    return s or None


def arm_from_range(wave_aa: np.ndarray) -> str | None:
    """4MOST arm from the wavelength range (Angstrom): ``LJ`` if it spans more than 4000 A,
    an HRS arm if it lies within one (50 A slack), else None."""
    w = np.asarray(wave_aa, dtype=np.float64)
    w = w[np.isfinite(w)]
    if w.size == 0:
        return None
    lo, hi = float(w.min()), float(w.max())
    if hi - lo > 4000.0:
        return "LJ"
    for arm, (a, b) in _HRS_RANGES.items():
        if a - 50.0 <= lo and hi <= b + 50.0:
            return arm
    return None
