"""Direct reading of Phase 3 one-row spectra for survey runs: the same spectra, less work.

`read_phase3_direct` reads a plain ESO Phase 3 / 4MOST L1 spectrum file (a primary header
without data and one binary table with one row of numeric array columns) with a few reads
and one `numpy.fromfile`, instead of opening it with `astropy.io.fits.open` twice
(identification, then the loader) and building a `~astropy.io.fits.FITS_rec` and its
`~astropy.io.fits.ColDefs`. Header values are astropy's (`RawHeader`: each distinct card
image parsed once by `astropy.io.fits.Card`, only the cards asked for), and the arrays, units
and ``meta`` are built by the very code of the ``4MOST-L1`` and ``ESO-SDP`` loaders
(`specutils_cinn.io.phase3.phase3_arrays`): the result is what ``Spectrum.read`` gives,
value for value, except that ``meta["header"]`` and ``meta["data_header"]`` are
`RawHeader` objects (``.header()`` gives the `~astropy.io.fits.Header`). Anything this
does not read exactly so (compressed files, scaled columns, more HDUs, other layouts) is
declined, and the caller reads the file with ``Spectrum.read`` as before.
`read_arms_direct` joins an object's HRS arm files the way `~specutils_cinn.io.group_arms`
does, without a spectrum per arm, and `spectrum_of` shares the spectral WCS of spectra
with the same axis.

``Spectrum.read`` and the loaders are unchanged; this module serves
`specutils_cinn.survey`.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from specutils import Spectrum

from ._common import ARMS_HRS, source_name
from .grouping import _join_parts
from .phase3 import (
    FORMAT_L1,
    FORMAT_SDP,
    Phase3Arrays,
    _is_fourmost_header,
    _is_phase3_headers,
    fourmost_l1_meta,
    phase3_arrays,
)

__all__ = ["RawHeader", "read_arms_direct", "read_phase3_direct", "spectrum_of"]

_BLOCK = 2880
#: Binary-table formats read as they are (astropy neither scales nor converts them).
_TFORM = re.compile(r"^(\d*)([EDJKIB])$")
_CODES = {"E": ">f4", "D": ">f8", "J": ">i4", "K": ">i8", "I": ">i2", "B": "u1"}
#: Column keywords that make astropy change the stored values (then the file is declined).
_SCALING = ("TSCAL", "TZERO")
#: Row layouts of the tables seen so far, by their column keywords.
_DTYPES: dict[tuple[Any, ...], np.dtype | None] = {}
_DTYPES_LOCK = threading.Lock()


_CARD = 80
_END = "END" + " " * 77
#: A value card: a standard keyword padded to 8 characters, then ``= ``; or a commentary card.
_VALUE_CARD = re.compile(r"^(?=[A-Z0-9_-]+ *= )[A-Z0-9_ -]{8}= ")
_COMMENTARY = re.compile(r"^(COMMENT |HISTORY | {8})")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


@functools.lru_cache(maxsize=4096)
def _card_value(image: str) -> tuple[Any, bool]:
    """astropy's value of an 80-character card image, and whether it is a record-valued card
    (cached: survey files repeat most cards image for image; astropy's configuration, which
    its card parsing reads, is taken to stay as it is during a run)."""
    card = fits.Card.fromstring(image)
    return card.value, card.field_specifier is not None


@functools.lru_cache(maxsize=1024)
def _standard_key(key: str) -> str | None:
    k = key.strip().upper()
    if not k or len(k) > 8 or not re.fullmatch(r"[A-Z0-9_-]+", k) or k in (
            "COMMENT", "HISTORY"):  # fmt: skip
        return None
    return k


class RawHeader:
    """A FITS header as read from a file, with astropy's values, parsed card by card on demand.

    ``get``, ``[]`` and ``in`` give what the same operations give on the
    `~astropy.io.fits.Header` of the same text (`header` builds that), but parse only the
    cards asked for, and each distinct card image once per process (`_card_value`): the structural
    keywords of a survey's files are byte-identical from file to file. Keywords that are not
    standard (``HIERARCH``, record-valued, ``CONTINUE`` long strings, commentary) and headers
    with any unusual card are answered by the astropy header itself.
    """

    __slots__ = ("_full", "_index", "_simple", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._full: fits.Header | None = None
        index: dict[str, str] = {}
        simple = True
        for i in range(0, len(text), _CARD):
            image = text[i:i + _CARD]
            if image == _END:
                break
            if _VALUE_CARD.match(image):
                index.setdefault(image[:8].rstrip(), image)
            elif not _COMMENTARY.match(image):
                simple = False  # CONTINUE, HIERARCH, malformed: astropy decides
        self._index = index
        self._simple = simple

    def header(self) -> fits.Header:
        """The `~astropy.io.fits.Header` of this text (built once)."""
        if self._full is None:
            self._full = fits.Header.fromstring(self.text)
        return self._full

    def _key(self, key: Any) -> str | None:
        """The index key of a standard keyword, or None (then astropy looks it up)."""
        if not self._simple or not isinstance(key, str):
            return None
        return _standard_key(key)

    def __getitem__(self, key: Any) -> Any:
        k = self._key(key)
        if k is None:
            return self.header()[key]
        image = self._index.get(k)
        if image is None:
            raise KeyError(f"Keyword {k!r} not found.")
        value, record_valued = _card_value(image)
        if record_valued:  # astropy's rules
            return self.header()[key]
        return None if value == fits.card.UNDEFINED else value

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` (as `astropy.io.fits.Header.get`)."""
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def __contains__(self, key: Any) -> bool:
        k = self._key(key)
        if k is None:
            return key in self.header()
        return k in self._index


def _read_header(f: Any) -> RawHeader | None:
    """The next header of an open FITS file (the file left at its data), or None if unusual."""
    blocks = []
    while True:
        block = f.read(_BLOCK)
        if len(block) != _BLOCK:
            return None
        text = block.decode("ascii")
        if not _PRINTABLE.match(text):
            return None
        blocks.append(text)
        for i in range(0, _BLOCK, _CARD):
            image = text[i:i + _CARD]
            if image.startswith("END") and (image == _END or not re.match(
                    r"END[A-Z0-9_-]", image)):  # fmt: skip
                if image != _END or text[i + _CARD:].strip():
                    return None  # an END card astropy repairs, or bytes after it
                return RawHeader("".join(blocks))
        if len(blocks) > 100:
            return None


def _row_dtype(header: fits.Header) -> tuple[np.dtype | None, list[str]]:
    """The numpy layout of a table row and the column names, or None if not a plain one."""
    n = header.get("TFIELDS")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return None, []
    names, forms = [], []
    for i in range(1, n + 1):
        name, form = header.get(f"TTYPE{i}"), header.get(f"TFORM{i}")
        if not isinstance(name, str) or not isinstance(form, str) or name != name.strip():
            return None, []
        if any(f"{k}{i}" in header for k in _SCALING):
            return None, []
        names.append(name)
        forms.append(form.strip().upper())
    key = (tuple(names), tuple(forms), header.get("NAXIS1"))
    with _DTYPES_LOCK:
        if key in _DTYPES:
            return _DTYPES[key], names
    dtype = None
    fields = []
    for name, form in zip(names, forms, strict=True):
        m = _TFORM.match(form)
        if m is None:
            break
        repeat = int(m.group(1)) if m.group(1) else 1
        if repeat < 1:
            break
        fields.append((name, _CODES[m.group(2)], (repeat,)))
    else:
        if len({f[0].upper() for f in fields}) == len(fields) and all(names):
            candidate = np.dtype(fields)
            if candidate.itemsize == header.get("NAXIS1"):
                dtype = candidate
    with _DTYPES_LOCK:
        if len(_DTYPES) > 256:
            _DTYPES.clear()
        _DTYPES[key] = dtype
    return dtype, names


def _plain_table(h0: fits.Header, h1: fits.Header) -> bool:
    """A primary HDU without data followed by a one-row binary table without a heap."""
    return (
        h0.get("SIMPLE") is True
        and h0.get("NAXIS") == 0
        and not h0.get("GROUPS", False)
        and str(h1.get("XTENSION", "")).strip() == "BINTABLE"
        and h1.get("BITPIX") == 8
        and h1.get("NAXIS") == 2
        and h1.get("NAXIS2") == 1
        and h1.get("PCOUNT", 0) == 0
        and h1.get("GCOUNT", 1) == 1
        and not h1.get("ZIMAGE", False)
        and not h1.get("ZTABLE", False)
    )


def read_phase3_direct(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    flux_unit: Any = None,
) -> Phase3Arrays | None:
    """Read a plain Phase 3 one-row spectrum file as its loader does, or decline.

    Parameters
    ----------
    path : path-like
        The file.
    format : {"4MOST-L1", "ESO-SDP"} or None, optional
        The loader to imitate; None identifies the file as
        `~specutils_cinn.io.identify_format` does (and declines files that it would not
        call ``4MOST-L1`` or ``ESO-SDP``).
    flux_unit : str or `~astropy.units.Unit`, optional
        As the loaders' ``flux_unit``.

    Returns
    -------
    `~specutils_cinn.io.phase3.Phase3Arrays` or None
        The arrays, units and ``meta`` of the spectrum that ``Spectrum.read(path,
        format=...)`` returns (``.spectrum()`` builds it), or None when the file is not one
        this reads exactly so: not a plain uncompressed FITS file with a data-less primary
        HDU and one binary table of one row (more HDUs are accepted only with an explicit
        ``format``), a column that is not a numeric vector (E, D, J, K, I, B), scaled
        (``TSCALn``/``TZEROn``), or any error. Read those with ``Spectrum.read``, which
        also gives the errors their usual messages.
    """
    if format not in (None, FORMAT_L1, FORMAT_SDP):
        return None
    try:
        with open(os.fspath(path), "rb") as f:
            if f.read(9) != b"SIMPLE  =":
                return None
            f.seek(0)
            h0 = _read_header(f)
            h1 = None if h0 is None else _read_header(f)
            if h1 is None or not _plain_table(h0, h1):
                return None
            dtype, names = _row_dtype(h1)
            if dtype is None:
                return None
            start = f.tell()
            if start % _BLOCK:
                return None
            end = start + dtype.itemsize
            size = os.fstat(f.fileno()).st_size
            if size < end:
                return None  # truncated: the loader says so
            if format is None:
                if size > end + (-end) % _BLOCK:
                    return None  # more HDUs: identification looks at all of them
                if {h0.get("EXTNAME"), h1.get("EXTNAME")} >= {"SPECTAB", "FIBMETATAB"}:
                    return None
                if not _is_phase3_headers(h0, h1):
                    return None
                format = FORMAT_L1 if _is_fourmost_header(h0) else FORMAT_SDP
            rec = np.fromfile(f, dtype=dtype, count=1)
            if rec.shape != (1,):
                return None
        name = source_name(path)
        arrays = phase3_arrays(
            h0, h1, names, lambda: rec[0], name=name, label=format, hdu=1,
            flux_unit=flux_unit, default_medium="air" if format == FORMAT_L1 else None,
        )  # fmt: skip
        return fourmost_l1_meta(arrays) if format == FORMAT_L1 else arrays
    except Exception:  # anything unusual: Spectrum.read reads it (and reports its errors)
        return None


def read_arms_direct(
    paths: Sequence[str | os.PathLike],
    *,
    format: str | None = None,
    flux_unit: Any = None,
    sources: Sequence[str] | None = None,
) -> list[Spectrum] | None:
    """Read one object's files as ``Spectrum.read`` and `group_arms` do, faster; or decline.

    For plain 4MOST L1 and ESO Phase 3 one-row spectrum files (uncompressed; a primary header
    without data and one binary table with one row of numeric array columns, unscaled), this
    gives the spectrum that reading each file with ``Spectrum.read`` (the ``4MOST-L1`` or
    ``ESO-SDP`` loader) and joining them with `group_arms` gives, value for value, without
    ``astropy.io.fits.open``, a table reader or a spectrum per arm: header values are parsed by
    astropy, each distinct card image once per process, and the spectra of a survey share the
    WCS of their spectral axis. Survey runs read their files with it
    (`specutils_cinn.survey.run_survey`).

    Parameters
    ----------
    paths : sequence of path-like
        The files: one, or the HRS arm files of one object (``HB``, ``HG``, ``HR``).
    format : {"4MOST-L1", "ESO-SDP"} or None, optional
        The loader to read them as; None identifies each file as `identify_format` does.
    flux_unit : str or `~astropy.units.Unit`, optional
        As the loaders' ``flux_unit``.
    sources : sequence of str, optional
        One label per file, stored in the ``meta`` of its spectrum (before joining, so in
        ``meta["segments"]`` of a joined one) as ``"_survey_source"``: the survey records
        from it which files a row comes from.

    Returns
    -------
    list of `~specutils.Spectrum` or None
        One spectrum: the file's, or the files' arms joined (`join_arms`). ``meta`` holds
        the loaders' keys; ``meta["header"]`` and ``meta["data_header"]`` are read-only
        header views (``get``, ``[]``, ``in`` as on an `~astropy.io.fits.Header`, which their
        ``header()`` method builds). None when a file is not such a plain file (compressed,
        scaled columns, more HDUs without ``format``, another layout, unreadable) or the
        files are not the arms of one observation (each arm once): read those with
        ``Spectrum.read`` and `group_arms`, which also give their errors.
    """
    arms = []
    for k, p in enumerate(paths):
        a = read_phase3_direct(p, format=format, flux_unit=flux_unit)
        if a is None:
            return None
        a.meta["filename"] = a.meta.get("filename") or Path(p).name
        if sources is not None:
            a.meta["_survey_source"] = sources[k]
        arms.append(a)
    if len(arms) == 1:
        a = arms[0]
        return [spectrum_of(flux=a.flux, spectral_axis=a.spectral_axis,
                            uncertainty=a.uncertainty, mask=a.mask, meta=a.meta)]
    seen = [a.meta.get("arm") for a in arms]
    groups = {a.meta.get("group_id") for a in arms}
    if (len(groups) != 1 or None in groups or len(set(seen)) != len(seen)
            or not all(arm in ARMS_HRS for arm in seen)
            or not all(a.flux.ndim == 1 for a in arms)):  # fmt: skip
        return None
    try:
        return [spectrum_of(**_join_parts(arms))]
    except Exception:  # group_arms raises it again, with its message
        return None


#: WCS of the spectral axes built so far, (unit, length, first, last) -> [(axis, wcs)].
_WCS: dict[tuple[Any, ...], list[tuple[np.ndarray, Any]]] = {}
_WCS_LOCK = threading.Lock()


def spectrum_of(*, flux: Any, spectral_axis: Any, radial_velocity: Any = None,
                **kwargs: Any) -> Spectrum:  # fmt: skip
    """``Spectrum(flux=..., spectral_axis=..., **kwargs)``, sharing the spectral WCS.

    specutils builds a lookup-table GWCS from the spectral axis of every spectrum (most of
    the cost of a `~specutils.Spectrum`); the spectra of a survey share a few axes. A
    spectrum whose 1-D spectral axis equals (value for value, same unit) one built before
    gets that spectrum's WCS: specutils takes the spectral axis as given when both are
    passed, so the spectrum holds the same values either way.
    """
    axis = np.asarray(spectral_axis.value)
    if radial_velocity is not None or np.ndim(flux) != 1 or axis.ndim != 1 or axis.size < 2:
        return Spectrum(flux=flux, spectral_axis=spectral_axis,
                        radial_velocity=radial_velocity, **kwargs)  # fmt: skip
    key = (str(spectral_axis.unit), axis.size, float(axis[0]), float(axis[-1]))
    with _WCS_LOCK:
        known = _WCS.get(key, [])
        wcs = next((w for a, w in known if np.array_equal(a, axis)), None)
    if wcs is not None:
        return Spectrum(flux=flux, spectral_axis=spectral_axis, wcs=wcs, **kwargs)
    spec = Spectrum(flux=flux, spectral_axis=spectral_axis, **kwargs)
    with _WCS_LOCK:
        if len(_WCS) > 16:
            _WCS.clear()
        entries = _WCS.setdefault(key, [])
        if len(entries) < 4:
            entries.append((axis.copy(), spec.wcs))
    return spec
