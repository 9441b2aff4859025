"""Reading files for the estimator, and the medium recorded by the readers."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from astropy.io import fits
from specutils import Spectrum, SpectrumCollection, SpectrumList

from ._common import normalize_medium
from .fourmost_mec import FORMAT_MEC
from .grouping import group_arms
from .phase3 import FORMAT_L1, FORMAT_SDP, _is_fourmost, _is_phase3_spectrum

__all__ = ["identify_format", "read_paths", "read_spectra", "spectra_medium"]

_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fits.fz", ".fit.gz")


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def _expand(paths: Any) -> list[Path]:
    items = [paths] if _is_path(paths) else list(paths)
    out: list[Path] = []
    for p in items:
        if not _is_path(p):
            raise TypeError(f"expected file paths, got {type(p).__name__}")
        p = Path(p).expanduser()
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.name.lower().endswith(_FITS_SUFFIXES)))
        else:
            out.append(p)
    return out


def identify_format(path: str | os.PathLike) -> str | None:
    """The format of a file if it is one of this package's specific ones, with one opening.

    specutils' automatic identification opens a file once per registered reader (about
    35 times); this checks only ``4MOST-MEC``, ``4MOST-L1`` and ``ESO-SDP``, which take
    precedence over every other reader anyway.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    str or None
        The format name, or None (not one of these, or not a readable FITS file).
    """
    try:
        with fits.open(os.fspath(path)) as hdul:
            names = {h.name for h in hdul}
            if "SPECTAB" in names and "FIBMETATAB" in names:
                return FORMAT_MEC
            if _is_phase3_spectrum(hdul):
                return FORMAT_L1 if _is_fourmost(hdul) else FORMAT_SDP
    except Exception:  # not FITS, unreadable: leave it to specutils' identification
        return None
    return None


def _read(cls: type, path: Path, fmt: str | None, kwargs: dict[str, Any]) -> Any:
    fmt = fmt or identify_format(path)
    try:
        return cls.read(path, format=fmt, **kwargs) if fmt else cls.read(path, **kwargs)
    except OSError:
        raise
    except Exception as exc:  # readers raise many types; say which file failed
        raise OSError(f"cannot read {os.fspath(path)!r} as a spectrum: {exc}") from exc


def read_spectra(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    format: str | None = None,
    group: bool = True,
    **kwargs: Any,
) -> SpectrumList:
    """Read spectrum files into a list of 1-D spectra, joining 4MOST HRS arms per object.

    Parameters
    ----------
    paths : path-like or iterable of path-like
        Files, or folders (all their ``*.fits``/``*.fits.gz`` files, sorted by name).
    format : str, optional
        A specutils format name (e.g. ``"4MOST-L1"``); by default identified per file.
    group : bool, optional
        Join the separate 4MOST HRS arm spectra of each object (`group_arms`).
    **kwargs
        Passed to the reader, e.g. ``flux_unit=``.

    Returns
    -------
    `~specutils.SpectrumList`
        The spectra in file order (a 4MOST container gives one spectrum per fiber), joined
        arms at the position of their first arm.

    Raises
    ------
    OSError
        If a file cannot be read; the message names it.
    """
    out = SpectrumList()
    for p in _expand(paths):
        out.extend(_read(SpectrumList, p, format, kwargs))
    return group_arms(out) if group else out


def read_paths(spectra: Any, **kwargs: Any) -> Any:
    """Replace file paths in the estimator's input by the spectra read from them.

    A path (str or path-like), or a list or tuple holding paths among spectra: every path is
    read with ``Spectrum.read(path, **kwargs)`` (format identified per file; a 4MOST
    container gives one 2-D spectrum, one row per fiber). Anything else is returned as is.

    Raises
    ------
    OSError
        If a file cannot be read; the message names it.
    """
    if _is_path(spectra):
        return _read(Spectrum, Path(spectra).expanduser(), None, kwargs)
    if isinstance(spectra, list | tuple) and not isinstance(spectra, SpectrumList):
        if any(_is_path(x) for x in spectra):
            return [
                _read(Spectrum, Path(x).expanduser(), None, kwargs) if _is_path(x) else x
                for x in spectra
            ]
    return spectra


def _media(item: Any, found: set[str | None]) -> None:
    if isinstance(item, Spectrum | SpectrumCollection):
        meta = item.meta or {}
        found.add(normalize_medium(meta.get("medium")) if hasattr(meta, "get") else None)
    elif isinstance(item, list | tuple):
        for sub in item:
            _media(sub, found)


def spectra_medium(spectra: Any, default: str = "air") -> str:
    """The medium of the input's wavelengths from ``meta["medium"]`` (set by the readers).

    Parameters
    ----------
    spectra : Spectrum, SpectrumCollection, SpectrumList or (nested) list of them
        The input.
    default : {"air", "vacuum"}, optional
        The medium of spectra without ``meta["medium"]``.

    Returns
    -------
    str
        ``"air"`` or ``"vacuum"``.

    Raises
    ------
    ValueError
        If the spectra do not all have the same medium (those without ``meta["medium"]``
        count as ``default``), or a ``meta["medium"]`` is neither air nor vacuum.
    """
    found: set[str | None] = set()
    _media(spectra, found)
    media = {default if m is None else m for m in found}
    if len(media) > 1:
        raise ValueError(
            f"the spectra mix air and vacuum wavelengths (meta['medium']; none means "
            f"{default!r}): pass medium='air' or medium='vacuum' to say which holds for all, "
            "or predict them separately"
        )
    return media.pop() if media else default
