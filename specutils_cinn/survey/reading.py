"""Reading the spectra of a survey chunk, and reading the next chunks ahead.

`_read_unit` reads one unit (a file, or the arm files of an object) into ``_Item`` objects:
one per spectrum, or one per unreadable file with the error in its ``status``. Plain 4MOST L1
and ESO Phase 3 files are read directly (`~specutils_cinn.io.read_arms_direct`, switched by
``_DIRECT_READ``), others with ``Spectrum.read``. `_ReadAhead` reads the next chunks of a
local run in a background thread (``_READ_AHEAD`` of them) while a chunk is inferred.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .plan import SEPARATOR, SurveyInput, _Job

__all__: list[str] = []

#: Longest ``status`` text kept.
_STATUS_MAX = 300


def _status(exc: BaseException) -> str:
    msg = str(exc).split(" The available formats are")[0]  # specutils' long format table
    text = " ".join(f"error: {type(exc).__name__}: {msg}".split())
    return text if len(text) <= _STATUS_MAX else text[: _STATUS_MAX - 3] + "..."


def _n_rows(spectrum: Any) -> int:
    shape = list(np.shape(spectrum.flux))
    axis = getattr(spectrum, "spectral_axis_index", len(shape) - 1)
    del shape[axis]
    return int(np.prod(shape)) if shape else 1


def _read_one(path: str, job: _Job, as_list: bool) -> Any:
    from specutils import Spectrum, SpectrumList

    from ..io import identify_format

    cls = SpectrumList if as_list else Spectrum
    kwargs = {} if job.flux_unit is None else {"flux_unit": job.flux_unit}
    fmt = job.reader_format or identify_format(path)
    return cls.read(path, format=fmt, **kwargs) if fmt else cls.read(path, **kwargs)


@dataclass
class _Item:
    """A spectrum of a chunk (or an error) and the rows it gives."""

    unit: int
    source: str
    filename: str
    n_rows: int = 1
    spectrum: Any = None
    rv: np.ndarray | None = None
    status: str = "ok"


#: Read plain 4MOST L1 / ESO Phase 3 files directly (`~specutils_cinn.io.read_arms_direct`):
#: the same spectra as ``Spectrum.read``, several times faster. False reads every file with
#: ``Spectrum.read`` (and joins arms with ``group_arms``), as before (tests, benchmarks).
_DIRECT_READ = True
_DIRECT_FORMATS = (None, "4MOST-L1", "ESO-SDP")


def _read_unit_direct(k: int, unit: SurveyInput, job: _Job) -> list[_Item] | None:
    """`_read_unit` for files that `~specutils_cinn.io.read_arms_direct` reads; None else."""
    from ..io import read_arms_direct

    if job.reader_format not in _DIRECT_FORMATS:
        return None
    try:
        if not job.group_arms:
            path = unit.paths[0]
            got = read_arms_direct([path], format=job.reader_format, flux_unit=job.flux_unit)
            if got is None:
                return None
            return [_Item(k, path, Path(path).name, _n_rows(got[0]), got[0])]
        joined = read_arms_direct(unit.paths, format=job.reader_format,
                                  flux_unit=job.flux_unit, sources=unit.paths)  # fmt: skip
        return None if joined is None else _joined_items(k, joined)
    except Exception:  # read again the usual way, which records the error
        return None


def _joined_items(k: int, joined: Iterable[Any]) -> list[_Item]:
    """Items of the spectra of a unit after `group_arms` (sources from their segments)."""
    items = []
    for s in joined:
        segs = s.meta.get("segments")
        if segs:
            paths = list(dict.fromkeys(str(g["meta"].get("_survey_source")) for g in segs))
        else:
            paths = [str(s.meta.get("_survey_source"))]
        src = SEPARATOR.join(paths)
        name = SEPARATOR.join(Path(q).name for q in paths)
        items.append(_Item(k, src, name, _n_rows(s), s))
    return items


def _read_unit(k: int, unit: SurveyInput, job: _Job) -> list[_Item]:
    """Read one unit: one item per spectrum, one error item per unreadable file."""
    from ..io import group_arms

    if _DIRECT_READ:
        direct = _read_unit_direct(k, unit, job)
        if direct is not None:
            return direct
    if not job.group_arms:
        path = unit.paths[0]
        try:
            spec = _read_one(path, job, as_list=False)
        except Exception as exc:  # readers raise many types: record it, go on
            return [_Item(k, path, Path(path).name, status=_status(exc))]
        return [_Item(k, path, Path(path).name, _n_rows(spec), spec)]
    spectra, errors = [], []
    for path in unit.paths:
        try:
            got = _read_one(path, job, as_list=True)
        except Exception as exc:
            errors.append(_Item(k, path, Path(path).name, status=_status(exc)))
            continue
        for s in got:
            s.meta["filename"] = s.meta.get("filename") or Path(path).name
            s.meta["_survey_source"] = path
        spectra.extend(got)
    try:
        joined = group_arms(spectra)
    except Exception as exc:
        src = SEPARATOR.join(unit.paths)
        return [_Item(k, src, SEPARATOR.join(Path(p).name for p in unit.paths),
                      status=_status(exc))] + errors
    return _joined_items(k, joined) + errors


def _read_chunk(units: Sequence[SurveyInput], job: _Job) -> list[_Item]:
    """The items of a chunk's units, in order (reading only: no model, no inference)."""
    items: list[_Item] = []
    for k, unit in enumerate(units):
        items.extend(_read_unit(k, unit, job))
    return items


class _Chunk(list):
    """A chunk's units, with ``read_ahead``: the future of their items (`_read_chunk`)."""

    read_ahead: Future | None = None


#: Chunks read ahead in a background thread while a chunk is inferred (0: none). Reading is
#: file access, astropy header parsing and numpy; inference is torch, which releases the GIL:
#: the two overlap. Reading ahead holds one more chunk's spectra in memory.
_READ_AHEAD = 1


class _ReadAhead:
    """Reads the next chunks of a local run in a background thread, in order.

    ``chunk(k)`` returns chunk ``k``'s units (a `_Chunk`) with the future of its items, and
    starts reading the chunks after it (``_READ_AHEAD`` of them). Only reading happens in the
    thread: the model, the random streams and the parts stay in the calling thread, so the
    rows, their order and the parts written are those of reading in turn.
    """

    def __init__(self, units: Sequence[SurveyInput], job: _Job, todo: Sequence[int],
                 size: int) -> None:  # fmt: skip
        self.units, self.job, self.size = units, job, size
        self.todo = list(todo)
        self.position = {k: i for i, k in enumerate(self.todo)}
        self.futures: dict[int, Future] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="survey-read") \
            if _READ_AHEAD > 0 and len(self.todo) > 1 else None

    def _units(self, k: int) -> _Chunk:
        return _Chunk(self.units[k * self.size:(k + 1) * self.size])

    def chunk(self, k: int) -> _Chunk:
        units = self._units(k)
        if self.pool is None:
            return units
        pos = self.position[k]
        for j in self.todo[pos: pos + 1 + _READ_AHEAD]:
            if j not in self.futures:
                self.futures[j] = self.pool.submit(_read_chunk, self._units(j), self.job)
        units.read_ahead = self.futures.pop(k)
        return units

    def close(self) -> None:
        if self.pool is not None:
            for f in self.futures.values():
                f.cancel()
            self.futures.clear()
            # a read under way finishes in the background; nothing it does is kept
            self.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
