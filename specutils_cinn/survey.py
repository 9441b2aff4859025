"""Survey runs: many spectrum files to one table, in bounded memory, resumable, optionally on Dask.

`run_survey` is what ``specutils-cinn predict`` runs. The inputs (files, folders or a table of
paths) are split into chunks of ``chunk_size`` inputs; each chunk is read, prepared and
inferred on its own and written as a part file ``part-NNNNNNN<suffix>`` into the folder
``<output>.parts/`` (written under a temporary name and renamed, so a part is either complete
or absent). When every chunk is done the parts are assembled, streaming, into the output
(under a temporary name, then renamed) and the folder is removed. A run that is killed leaves
its finished parts; running the same job again skips them. The job's settings are recorded in
``<output>.parts/manifest.json``: a different job (other inputs, model, seed, chunk size, ...)
refuses to reuse the folder.

Every input gives one row (a 4MOST container, one per fibre), in input order: ``filename``,
``source`` (the path as given; joined arm files separated by ``;``), ``source_index`` (the
row inside the source), ``status`` (``"ok"`` or the error that stopped it), the columns of
`~specutils_cinn.CINNParameterEstimator.predict`, and ``rv``/``rv_err``, the radial velocity
used and its uncertainty. See :ref:`survey`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from .flags import QualityFlag
from .results import write_table

__all__ = [
    "MANIFEST_VERSION",
    "OUTPUT_FORMATS",
    "SEPARATOR",
    "SurveyInput",
    "SurveySummary",
    "cached_estimator",
    "check_output",
    "parse_radial_velocity",
    "parts_folder",
    "plan_inputs",
    "run_survey",
]

#: Output suffixes and the astropy table format each is written in.
OUTPUT_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".ecsv": "ascii.ecsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Version of the ``manifest.json`` layout.
MANIFEST_VERSION = 1
#: Longest ``status`` text kept.
_STATUS_MAX = 300
#: Suffixes of text files read as one path per line by `plan_inputs`.
_LIST_SUFFIXES = (".txt", ".lst", ".list")
_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fits.fz", ".fit.gz")
#: An HRS arm in a file name (``..._HG1.fits``, ``..._HB11_...``): files whose names differ
#: only there are read together with ``group_arms``.
_ARM_IN_NAME = re.compile(r"_(HB|HG|HR)(?=\d*[_.])")
_KMS = u.km / u.s
#: Separates the files of joined arms in the ``source`` and ``filename`` columns (4MOST
#: object names hold ``+``).
SEPARATOR = ";"


# ----------------------------------------------------------------------------- output checks
def _output_format(output: Path) -> str:
    name = output.name.lower()
    for suffix, fmt in OUTPUT_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"cannot tell the table format from the suffix of {str(output)!r}: use "
        + ", ".join(sorted(OUTPUT_FORMATS)) + " (FITS, ECSV or Parquet)"
    )


def _suffix(output: Path) -> str:
    name = output.name.lower()
    return next(s for s in OUTPUT_FORMATS if name.endswith(s))


def parts_folder(output: str | os.PathLike) -> Path:
    """The folder holding the part files and manifest of a run writing ``output``.

    Parameters
    ----------
    output : path-like
        The output table.

    Returns
    -------
    pathlib.Path
        ``<output>.parts`` beside the output.
    """
    p = Path(output)
    return p.with_name(p.name + ".parts")


def check_output(output: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Check that a survey's output can be written, before any work is done.

    Parameters
    ----------
    output : path-like
        The output table; its suffix chooses the format (`OUTPUT_FORMATS`).
    overwrite : bool, optional
        Whether an existing output file may be replaced.

    Returns
    -------
    str
        The astropy table format (``"fits"``, ``"ascii.ecsv"`` or ``"parquet"``).

    Raises
    ------
    ValueError
        If the suffix is not one of `OUTPUT_FORMATS`, or Parquet is asked for without
        ``pyarrow`` installed.
    OSError
        If the output is a folder, exists and ``overwrite`` is false, or its folder does not
        exist or is not writable.
    """
    p = Path(output).expanduser()
    if p.is_dir():
        raise IsADirectoryError(f"output {str(p)!r} is a directory; name a file")
    fmt = _output_format(p)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                "a .parquet output needs pyarrow: pip install 'specutils-cinn[parquet]'"
            ) from exc
    if p.is_dir():
        raise IsADirectoryError(f"output {str(p)!r} is a directory; name a file")
    if p.exists() and not overwrite:
        raise FileExistsError(
            f"output {str(p)!r} exists; pass --overwrite (overwrite=True) to replace it"
        )
    parent = p.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {str(parent)!r} is not writable")
    return fmt


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class SurveyInput:
    """One input of a survey run: the files read together, and its radial velocity.

    Parameters
    ----------
    paths : tuple of str
        The file (several: the HRS arm files of one object, joined).
    rv : float, optional
        Radial velocity (km/s) from an input table or a per-input list; None if not given.
    """

    paths: tuple[str, ...]
    rv: float | None = None


def _expand_path(p: str) -> list[str]:
    path = Path(p).expanduser()
    if path.is_dir():
        return sorted(os.fspath(q) for q in path.iterdir()
                      if q.name.lower().endswith(_FITS_SUFFIXES))
    return [p]


def _read_list(path: Path) -> list[str]:
    base = path.parent
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if s and not s.startswith("#"):
                out.append(s if os.path.isabs(s) else os.fspath(base / s))
    return out


def _table_paths(table: Table, column: str | None, base: Path | None) -> list[str]:
    names = [column] if column else ["path", "source", "file", "filename"]
    col = next((c for c in names if c in table.colnames), None)
    if col is None:
        raise ValueError(
            f"the input table has no column {' / '.join(names)} naming the files "
            f"(columns: {', '.join(table.colnames)})"
        )
    out = []
    for v in table[col]:
        s = str(v).strip()
        if base is not None and not os.path.isabs(s):
            s = os.fspath(base / s)
        out.append(s)
    return out


def _group_key(path: str) -> str:
    return _ARM_IN_NAME.sub("_*", path)


def plan_inputs(
    inputs: str | os.PathLike | Iterable[str | os.PathLike] | Table,
    *,
    group_arms: bool = False,
    path_column: str | None = None,
    rv_column: str | None = None,
) -> list[SurveyInput]:
    """The inputs of a survey run, in output order.

    Parameters
    ----------
    inputs : path-like, iterable of path-like, or `~astropy.table.Table`
        Spectrum files; folders (their FITS files, sorted by name); a text file ending in
        ``.txt``, ``.lst`` or ``.list`` with one path per line (``#`` comments; relative
        paths are relative to the list's folder); or a table with a column of paths
        (``path_column``, default the first of ``path``, ``source``, ``file``,
        ``filename``), given as a `~astropy.table.Table` or as a file readable by
        `astropy.table.Table.read` (ECSV, FITS, CSV, ...; relative paths relative to its
        folder).
    group_arms : bool, optional
        Join the separate 4MOST HRS arm files of an object: files whose paths differ only
        in the arm (``_HB``, ``_HG``, ``_HR`` followed by digits and ``_`` or ``.``) form one
        unit, at the position of the first of them.
    path_column : str, optional
        Column of an input table holding the paths.
    rv_column : str, optional
        Column of an input table holding radial velocities (km/s unless it has a unit).

    Returns
    -------
    list of SurveyInput
        One per input: the paths read together and the radial velocity from
        ``rv_column``, if any.

    Raises
    ------
    ValueError
        If there is no input, or a column is missing.
    """
    rv: list[float | None] | None = None
    if isinstance(inputs, Table):
        paths = _table_paths(inputs, path_column, None)
        table = inputs
    elif isinstance(inputs, str | os.PathLike) and _is_table_file(Path(inputs)):
        table = Table.read(inputs)
        paths = _table_paths(table, path_column, Path(inputs).expanduser().parent)
    else:
        table = None
        items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
        paths = []
        for p in items:
            p = os.fspath(p)
            if Path(p).suffix.lower() in _LIST_SUFFIXES and Path(p).is_file():
                paths.extend(_read_list(Path(p)))
            else:
                paths.extend(_expand_path(p))
    if rv_column is not None:
        if table is None or rv_column not in table.colnames:
            raise ValueError(
                f"radial velocity column {rv_column!r}: the inputs must be a table with that "
                "column"
            )
        col = table[rv_column]
        values = u.Quantity(col).to_value(_KMS) if getattr(col, "unit", None) else np.asarray(
            col, dtype=float)
        rv = [float(v) for v in values]
    if not paths:
        raise ValueError("no input files")
    if not group_arms:
        return [SurveyInput((p,), None if rv is None else rv[i]) for i, p in enumerate(paths)]
    members: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        members.setdefault(_group_key(p) if _ARM_IN_NAME.search(p) else f"\0{i}", []).append(i)
    return [SurveyInput(tuple(paths[i] for i in idx), None if rv is None else rv[idx[0]])
            for idx in members.values()]


def _is_table_file(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".ecsv", ".csv", ".parquet", ".pq", ".votable", ".xml")):
        return path.is_file()
    if name.endswith(_FITS_SUFFIXES) and path.is_file():
        from astropy.io import fits

        try:  # a table of paths, not a spectrum: a binary table with a path column
            with fits.open(path) as hdul:
                if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                    return False
                cols = {c.lower() for c in hdul[1].columns.names}
                return "path" in cols and "flux" not in cols
        except Exception:  # not FITS: left to the readers, which report it
            return False
    return False


# ----------------------------------------------------------------------------- radial velocity
def parse_radial_velocity(value: Any) -> tuple[str, Any]:
    """Interpret a ``--radial-velocity`` argument.

    Parameters
    ----------
    value : None, number, `~astropy.units.Quantity` or str
        A number (km/s) or a velocity Quantity (scalar, or one per input); ``"estimate"``
        (cross-correlation with the model's emulated spectrum,
        `~specutils_cinn.rv.estimate_radial_velocity`); ``"header:KEYWORD"`` (the keyword of
        each file, km/s; for 4MOST containers the fibre-table column of that name);
        ``"column:NAME"`` (a column of the input table); None: each spectrum's own radial
        velocity (zero if not set).

    Returns
    -------
    (str, object)
        The kind (``"none"``, ``"value"``, ``"values"``, ``"estimate"``, ``"header"``,
        ``"column"``) and its argument.

    Raises
    ------
    ValueError
        If the value is none of these.
    """
    if value is None:
        return "none", None
    if isinstance(value, u.Quantity):
        v = value.to_value(_KMS)
        if np.ndim(v) == 0:
            return "value", float(v)
        return "values", np.asarray(v, dtype=float)
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        return "value", float(value)
    if isinstance(value, str):
        s = value.strip()
        if s == "estimate":
            return "estimate", None
        for kind in ("header", "column"):
            if s.lower().startswith(kind + ":") and s[len(kind) + 1:].strip():
                return kind, s[len(kind) + 1:].strip()
        try:
            return "value", float(u.Quantity(s, _KMS).to_value(_KMS))
        except (TypeError, ValueError, u.UnitsError):
            pass
    raise ValueError(
        f"radial velocity {value!r}: give a number (km/s), 'header:KEYWORD', 'column:NAME' "
        "(a column of the input table) or 'estimate'"
    )


def _header_rv(spectrum: Any, keyword: str, n_rows: int) -> np.ndarray:
    meta = spectrum.meta or {}
    fibres = meta.get("fibres")  # 4MOST-MEC 2-D: one row per fibre
    if fibres is not None and keyword in getattr(fibres, "colnames", ()):
        values = np.asarray(fibres[keyword], dtype=float)
        if values.size == n_rows:
            return values
    fibre = meta.get("fibre")
    if isinstance(fibre, dict) and keyword in fibre:
        return np.full(n_rows, float(fibre[keyword]))
    for key in ("data_header", "header"):
        h = meta.get(key)
        if h is not None and keyword in h:
            return np.full(n_rows, float(h[keyword]))
    raise KeyError(f"no header keyword {keyword!r} (radial velocity)")


def _own_rv(spectrum: Any, n_rows: int) -> np.ndarray:
    rv = getattr(spectrum.spectral_axis, "radial_velocity", None)
    if rv is None:
        return np.zeros(n_rows)
    return np.broadcast_to(u.Quantity(rv).to_value(_KMS), (n_rows,)).astype(float)


# ----------------------------------------------------------------------------- a chunk
@dataclass(frozen=True)
class _Job:
    """Everything a chunk needs besides the model (picklable, for Dask)."""

    n_samples: int = 1000
    quantiles: tuple[float, ...] = (0.16, 0.5, 0.84)
    batch_size: int | None = None
    seed: int = 0
    medium: str | None = None
    snr: Any = None
    normalize: Any = "auto"
    calibrated: bool = True
    reader_format: str | None = None
    flux_unit: str | None = None
    group_arms: bool = False
    rv_kind: str = "none"
    rv_arg: Any = None
    velocity_range: tuple[float, float] = (-600.0, 600.0)
    chunk_size: int = 256
    string_widths: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _string_widths(units: Sequence[SurveyInput]) -> dict[str, int]:
    """Widths of the string columns, fixed for all parts of a FITS output."""
    source = max(len(SEPARATOR.join(un.paths).encode("utf-8")) for un in units)
    name = max(len(SEPARATOR.join(Path(p).name for p in un.paths).encode("utf-8"))
               for un in units)
    return {"filename": max(name, 1), "source": max(source, 1), "status": _STATUS_MAX}


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

    from .io import identify_format

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
    from .io import read_arms_direct

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
    from .io import group_arms

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


def _empty_table(est: Any, job: _Job) -> QTable:
    """One row with predict's columns and no result (a spectrum outside the grid)."""
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    dummy = Spectrum(flux=np.ones(4) * u.one, spectral_axis=np.arange(10.0, 14.0) * u.AA,
                     uncertainty=StdDevUncertainty(np.ones(4)))
    t = est.predict([dummy], n_samples=job.n_samples, quantiles=job.quantiles, seed=0,
                    progress=False, medium="air", normalize=False, calibrated=job.calibrated)
    t["flags"][:] = int(QualityFlag.LOW_COVERAGE | QualityFlag.NO_VALID_DATA)
    t["coverage"][:] = 0.0
    return t


def _assign_rv(items: list[_Item], units: Sequence[SurveyInput], job: _Job) -> None:
    for it in items:
        if it.spectrum is None:
            continue
        try:
            if job.rv_kind == "value":
                it.rv = np.full(it.n_rows, float(job.rv_arg))
            elif job.rv_kind in ("column", "values"):
                value = units[it.unit].rv
                if value is None or not np.isfinite(value):
                    raise ValueError("no radial velocity for this input")
                it.rv = np.full(it.n_rows, float(value))
            elif job.rv_kind == "header":
                it.rv = _header_rv(it.spectrum, job.rv_arg, it.n_rows)
            elif job.rv_kind == "none":
                it.rv = _own_rv(it.spectrum, it.n_rows)
            if it.rv is not None and not np.all(np.isfinite(it.rv)):
                raise ValueError("radial velocity is not a finite number")
        except Exception as exc:
            it.status = _status(exc)
            it.spectrum = None


def _predict(est: Any, spectra: list[Any], rv: np.ndarray | None, job: _Job,
             seed: int) -> QTable:
    return est.predict(
        spectra,
        n_samples=job.n_samples,
        quantiles=job.quantiles,
        batch_size=job.batch_size,
        seed=seed,
        radial_velocity=None if rv is None else rv * _KMS,
        progress=False,
        medium=job.medium,
        snr=job.snr,
        normalize=job.normalize,
        calibrated=job.calibrated,
    )


def _process_chunk(est: Any, units: Sequence[SurveyInput], job: _Job, index: int = 0) -> QTable:
    """Read, prepare and infer one chunk of inputs: one row per spectrum, errors recorded.

    Parameters
    ----------
    est : `~specutils_cinn.CINNParameterEstimator`
        The estimator.
    units : sequence
        The chunk's units (from `plan_inputs`).
    job : object
        The job's settings (internal).
    index : int, optional
        The chunk's number.

    Returns
    -------
    `~astropy.table.QTable`
        The chunk's rows in input order (see the module description for the columns).

    Notes
    -----
    ``units`` from `_ReadAhead` carry their items, read in a background thread
    (``read_ahead``); other sequences are read here (`_read_chunk`).
    """
    ahead = getattr(units, "read_ahead", None)  # read by `_ReadAhead` while the last was inferred
    items = ahead.result() if ahead is not None else _read_chunk(units, job)
    _assign_rv(items, units, job)
    rv_err: dict[int, np.ndarray] = {}
    good = [i for i, it in enumerate(items) if it.spectrum is not None]
    if job.rv_kind == "estimate" and good:
        _estimate_rv(est, items, good, job, rv_err)
        good = [i for i, it in enumerate(items) if it.spectrum is not None]
    seed = job.seed  # each spectrum has its own stream: rows do not depend on the chunking
    tables: dict[int, tuple[QTable, int]] = {}  # item -> (table, first row)
    if good:
        # "none": each spectrum's own radial velocity (set on its spectral axis) applies
        rv = None if job.rv_kind == "none" else np.concatenate(
            [np.nan_to_num(items[i].rv) for i in good])
        try:
            t = _predict(est, [items[i].spectrum for i in good], rv, job, seed)
            start = 0
            for i in good:
                tables[i] = (t, start)
                start += items[i].n_rows
        except Exception:  # isolate the culprit: one input at a time
            for i in good:
                it = items[i]
                try:
                    one = None if rv is None else np.nan_to_num(it.rv)
                    tables[i] = (_predict(est, [it.spectrum], one, job, seed), 0)
                except Exception as exc:
                    it.status = _status(exc)
    return _assemble(est, items, tables, rv_err, job)


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


def _estimate_rv(est: Any, items: list[_Item], good: list[int], job: _Job,
                 rv_err: dict[int, np.ndarray]) -> None:
    from .rv import estimate_radial_velocity

    def one(idx: list[int]) -> None:
        res = estimate_radial_velocity(
            est, [items[i].spectrum for i in idx], velocity_range=job.velocity_range,
            medium=job.medium, snr=job.snr)
        start = 0
        for i in idx:
            n = items[i].n_rows
            items[i].rv = res.rv.to_value(_KMS)[start : start + n]
            rv_err[i] = res.rv_err.to_value(_KMS)[start : start + n]
            start += n

    try:
        one(good)
    except Exception:
        for i in good:
            try:
                one([i])
            except Exception as exc:
                items[i].status = _status(exc)
                items[i].spectrum = None


_EMPTY_CACHE: dict[tuple[Any, ...], QTable] = {}
_EMPTY_LOCK = threading.Lock()


def _empty(est: Any, job: _Job) -> QTable:
    key = (id(est), job.n_samples, job.quantiles, job.calibrated)
    with _EMPTY_LOCK:
        if key not in _EMPTY_CACHE:
            _EMPTY_CACHE.clear()
            _EMPTY_CACHE[key] = _empty_table(est, job)
        return _EMPTY_CACHE[key]


def _assemble(est: Any, items: list[_Item], tables: dict[int, tuple[QTable, int]],
              rv_err: dict[int, np.ndarray], job: _Job) -> QTable:
    from astropy.table import vstack

    empty = _empty(est, job)
    sources: dict[int, QTable] = {id(empty): empty}
    take: list[tuple[int, np.ndarray]] = []
    filename, source, index, status, rv, err = [], [], [], [], [], []
    for i, it in enumerate(items):
        got = tables.get(i)
        ok = got is not None and it.status == "ok"
        n = it.n_rows
        if ok:
            t, start = got
            sources.setdefault(id(t), t)
            take.append((id(t), np.arange(start, start + n)))
        else:
            take.append((id(empty), np.zeros(n, int)))
        filename += [it.filename] * n
        source += [it.source] * n
        index += list(range(n))
        status += ["ok" if ok else it.status] * n
        rv.append(np.asarray(it.rv, float) if ok and it.rv is not None else np.full(n, np.nan))
        e = rv_err.get(i)
        err.append(np.asarray(e, float) if ok and e is not None else np.full(n, np.nan))
    keys = list(sources)
    offsets = np.cumsum([0] + [len(sources[k]) for k in keys])
    start_of = dict(zip(keys, offsets[:-1], strict=True))
    combined = vstack([sources[k] for k in keys], join_type="exact",
                      metadata_conflicts="silent") if len(keys) > 1 else empty
    rows = (np.concatenate([start_of[k] + r for k, r in take]) if take
            else np.zeros(0, int))
    out = combined[rows]
    out.meta = dict(empty.meta)
    out.meta.update(job.meta)
    out.add_column(filename, name="filename", index=0)
    out.add_column(source, name="source", index=1)
    out.add_column(np.asarray(index, dtype=np.int32), name="source_index", index=2)
    out.add_column(status, name="status", index=3)
    out["filename"].description = "file name (joined arms: names separated by ';')"
    out["source"].description = "input path as given (joined arms: paths separated by ';')"
    out["source_index"].description = "row of the spectrum in its source (fibre of a container)"
    out["status"].description = "'ok', or the error that kept this input from a result"
    out["rv"] = (np.concatenate(rv) if rv else np.zeros(0)) * _KMS
    out["rv"].description = (
        "radial velocity of the shift to the rest frame (NaN: unknown, not shifted)")
    out["rv_err"] = (np.concatenate(err) if err else np.zeros(0)) * _KMS
    out["rv_err"].description = "uncertainty of an estimated radial velocity (NaN: not estimated)"
    for name, width in job.string_widths.items():  # FITS: the same columns in every part
        out[name] = np.asarray(out[name], dtype=f"U{width}")
    return out


# ----------------------------------------------------------------------------- parts folder
def _fingerprint(units: Sequence[SurveyInput], job: _Job, model_id: str,
                 fmt: str) -> dict[str, Any]:
    h = hashlib.sha256()
    for unit in units:
        h.update("\x1f".join(unit.paths).encode("utf-8", "surrogateescape"))
        h.update(b"\x1e" + repr(unit.rv).encode() + b"\x1d")
    settings = asdict(job)
    settings.pop("batch_size")
    settings.pop("meta")
    settings["quantiles"] = list(job.quantiles)
    settings["velocity_range"] = list(job.velocity_range)
    settings["snr"] = None if job.snr is None else (
        job.snr if isinstance(job.snr, str) else np.asarray(job.snr, float).tolist())
    if isinstance(settings["rv_arg"], np.ndarray):
        settings["rv_arg"] = "per input (in the inputs digest)"
    return {
        "inputs": len(units),
        "inputs_sha256": h.hexdigest(),
        "model": model_id,
        "format": fmt,
        "settings": json.loads(json.dumps(settings, default=str)),
    }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    lock = folder / "lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        host, pid = lock.read_text().split()
        if host == socket.gethostname() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            raise OSError(f"another run (process {pid}) is writing {str(folder)!r}")
    except (FileNotFoundError, ValueError):
        pass
    _atomic_write_text(lock, me)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text() == me:
                lock.unlink()


def _open_parts(folder: Path, fingerprint: dict[str, Any], n_chunks: int, seed: int,
                suffix: str) -> tuple[int, set[int]]:
    """Check or write the manifest; return the job seed and the finished chunks."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{str(manifest)!r} has another layout; remove the folder or "
                             "pass --restart (resume=False)")
        theirs, mine = dict(old["fingerprint"]), dict(fingerprint)
        ts, ms = dict(theirs.pop("settings")), dict(mine.pop("settings"))
        if ms.get("seed") is None:  # no seed given: the recorded one
            ms["seed"] = ts.get("seed")
        diff = sorted({k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k)}
                      | {k for k in set(ts) | set(ms) if ts.get(k) != ms.get(k)})
        if diff:
            raise ValueError(
                f"{str(folder)!r} holds parts of another job (it differs in: "
                f"{', '.join(diff)}); pass --restart (resume=False) to discard them, or "
                "write to another output"
            )
        seed = int(old["seed"])
    else:
        for p in folder.iterdir():  # stale parts without a manifest: not ours to trust
            if p.name.startswith("part-"):
                p.unlink()
        fp = json.loads(json.dumps(fingerprint))
        fp["settings"]["seed"] = seed
        _atomic_write_text(manifest, json.dumps(
            {"version": MANIFEST_VERSION, "fingerprint": fp, "seed": seed, "chunks": n_chunks,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    for p in folder.glob(".part-*"):  # temporaries of a killed writer
        p.unlink()
    done = set()
    for p in folder.glob("part-*"):
        m = re.fullmatch(r"part-(\d+)" + re.escape(suffix), p.name)
        if m:
            done.add(int(m.group(1)))
    return seed, {k for k in done if k < n_chunks}


def _part_path(folder: Path, index: int, suffix: str) -> Path:
    return folder / f"part-{index:07d}{suffix}"


def _write_part(table: QTable, path: Path, fmt: str) -> None:
    """Write a part atomically; its side file (rows, errors) first, the part's rename last."""
    stats = {"rows": len(table), "errors": int(np.sum(np.asarray(table["status"]) != "ok"))}
    _atomic_write_text(path.with_name(path.name.split(".")[0] + ".json"), json.dumps(stats))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")
    # FITS: no warning per dex column, their units in the TTYPEn comments (results.write_table)
    write_table(table, tmp, format=fmt, overwrite=True)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- assembly
def _assemble_output(parts: list[Path], output: Path, fmt: str) -> int:
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        if fmt == "ascii.ecsv":
            n = _concat_ecsv(parts, tmp)
        elif fmt == "parquet":
            n = _concat_parquet(parts, tmp)
        else:
            n = _concat_fits(parts, tmp)
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return n


def _concat_ecsv(parts: list[Path], out: Path) -> int:
    n = 0
    names_line = None
    with open(out, "w", encoding="utf-8", newline="") as dst:
        for k, part in enumerate(parts):
            with open(part, encoding="utf-8", newline="") as src:
                header = True
                for line in src:
                    if header:
                        if line.startswith("#"):
                            if k == 0:
                                dst.write(line)
                            continue
                        header = False
                        if names_line is None:
                            names_line = line
                            dst.write(line)
                        elif line != names_line:
                            raise ValueError(f"part {part.name} has other columns than the first")
                        continue
                    dst.write(line)
                    n += 1
    return n


def _concat_parquet(parts: list[Path], out: Path) -> int:
    import pyarrow.parquet as pq

    schema = pq.read_schema(parts[0])
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        for part in parts:
            t = pq.read_table(part)
            writer.write_table(t.cast(schema))
            n += t.num_rows
    return n


def _concat_fits(parts: list[Path], out: Path) -> int:
    """Binary tables with identical columns (fixed string widths): headers and bytes copied."""
    from astropy.io import fits

    header = None
    total = sum(int(fits.getheader(p, 1)["NAXIS2"]) for p in parts)
    written = 0
    with open(out, "wb") as dst:
        for part in parts:
            with fits.open(part, memmap=False, lazy_load_hdus=True) as hdul:
                h = hdul[1].header
                loc = hdul.fileinfo(1)["datLoc"]
                primary = hdul[0].header
                if header is None:
                    header = h.copy()
                    header["NAXIS2"] = total
                    dst.write(primary.tostring().encode("ascii"))
                    dst.write(header.tostring().encode("ascii"))
                else:
                    for key in ("NAXIS1", "TFIELDS", *(f"TFORM{i}" for i in
                                                       range(1, int(h["TFIELDS"]) + 1))):
                        if h.get(key) != header.get(key):
                            raise ValueError(f"part {part.name} has other columns than the "
                                             f"first ({key})")
                nbytes = int(h["NAXIS1"]) * int(h["NAXIS2"])
            with open(part, "rb") as src:
                src.seek(loc)
                while nbytes > 0:
                    block = src.read(min(nbytes, 1 << 24))
                    if not block:
                        raise OSError(f"part {part.name} is truncated")
                    dst.write(block)
                    nbytes -= len(block)
            written += int(h["NAXIS2"])
        dst.write(b"\0" * ((-dst.tell()) % 2880))
    if written != total:
        raise OSError("the parts changed while they were assembled")
    return total


# ----------------------------------------------------------------------------- estimators
_ESTIMATORS: dict[tuple[str, str], Any] = {}
_ESTIMATORS_LOCK = threading.Lock()


def cached_estimator(model: str | os.PathLike | None, device: str = "auto") -> Any:
    """The estimator for a model, loaded once per process (for Dask workers).

    Parameters
    ----------
    model : str, path-like or None
        As for `~specutils_cinn.CINNParameterEstimator.from_pretrained`.
    device : str, optional
        Its device.

    Returns
    -------
    `~specutils_cinn.CINNParameterEstimator`
        The same object for the same arguments within a process.
    """
    from .estimator import CINNParameterEstimator

    key = (os.fspath(model) if model is not None else "", str(device))
    with _ESTIMATORS_LOCK:
        est = _ESTIMATORS.get(key)
        if est is None:
            est = CINNParameterEstimator.from_pretrained(model, device=device)
            _ESTIMATORS[key] = est
        return est


def _dask_chunk(model: Any, device: str, units: list[SurveyInput], job: _Job, index: int) -> QTable:
    """Run on a Dask worker: one chunk with the worker's (cached or scattered) estimator."""
    est = model if hasattr(model, "predict") else cached_estimator(model, device)
    return _process_chunk(est, units, job, index)


# ----------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class SurveySummary:
    """What `run_survey` did.

    Parameters
    ----------
    output : pathlib.Path
        The table written.
    rows : int
        Rows in it.
    inputs : int
        Inputs (units of work) planned.
    errors : int
        Rows whose ``status`` is not ``"ok"``.
    chunks : int
        Chunks of the job.
    resumed : int
        Chunks found finished from an earlier run.
    seconds : float
        Wall-clock time of this call.
    seed : int
        The job's seed.
    """

    output: Path
    rows: int
    inputs: int
    errors: int
    chunks: int
    resumed: int
    seconds: float
    seed: int


def run_survey(
    inputs: Any,
    output: str | os.PathLike,
    *,
    model: Any = None,
    chunk_size: int = 256,
    resume: bool = True,
    overwrite: bool = False,
    keep_parts: bool = False,
    n_samples: int = 1000,
    quantiles: Sequence[float] = (0.16, 0.5, 0.84),
    batch_size: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    radial_velocity: Any = None,
    velocity_range: tuple[float, float] = (-600.0, 600.0),
    medium: str | None = None,
    snr: float | str | None = None,
    normalize: bool | str = "auto",
    calibrated: bool = True,
    reader_format: str | None = None,
    flux_unit: str | None = None,
    group_arms: bool = False,
    path_column: str | None = None,
    dask: Any = None,
    progress: bool | Callable[[int, int], None] | None = None,
) -> SurveySummary:
    """Posterior summaries for many spectrum files, streamed in chunks, resumable.

    The output is checked (suffix, folder, existing file) before anything is read. The inputs
    are split into chunks of ``chunk_size``; each is read, prepared and inferred and written
    as a part file (see the module description); finished parts of an earlier run of the
    same job are kept. Memory is bounded by the chunk size, not by the number of inputs.

    Parameters
    ----------
    inputs : path-like, iterable of path-like, or `~astropy.table.Table`
        Files, folders, lists of paths or a table of paths (see `plan_inputs`).
    output : path-like
        The table to write: ``.fits``, ``.ecsv`` or ``.parquet`` (`OUTPUT_FORMATS`).
    model : str, path-like, `~specutils_cinn.CINNParameterEstimator` or None, optional
        As for `~specutils_cinn.CINNParameterEstimator.from_pretrained`, or a loaded
        estimator (default: the bundled model).
    chunk_size : int, optional
        Inputs per chunk (files; with ``group_arms`` objects). A 4MOST container file is one
        input with hundreds of spectra: use a small chunk size for those.
    resume : bool, optional
        Reuse the finished parts of an earlier run of the same job (False: discard them).
    overwrite : bool, optional
        Replace an existing output file.
    keep_parts : bool, optional
        Keep the parts folder after the output is written.
    n_samples, quantiles, batch_size, medium, snr, normalize, calibrated
        As for `~specutils_cinn.CINNParameterEstimator.predict`.
    device : str, optional
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed : int, optional
        The job's seed. Every spectrum draws from its own stream (seed and content, see
        `~specutils_cinn.CINNParameterEstimator.predict`), so a row does not depend on the
        chunk size, on resuming or on Dask: it equals ``predict`` on that spectrum with this
        seed. None draws one, recorded in the manifest (a resumed run keeps it) and in
        ``table.meta["SEED"]``.
    radial_velocity : None, number, `~astropy.units.Quantity` or str, optional
        See `parse_radial_velocity`: a number (km/s), one value per input, ``"header:KEY"``,
        ``"column:NAME"`` or ``"estimate"``.
    velocity_range : (float, float), optional
        Velocities (km/s) searched by ``radial_velocity="estimate"``.
    reader_format : str, optional
        specutils reader format for every file (default: identified per file).
    flux_unit : str, optional
        Flux unit overriding the files' own.
    group_arms : bool, optional
        Join the separate 4MOST HRS arm files of each object into one spectrum (see
        `plan_inputs`).
    path_column : str, optional
        Column of an input table holding the paths.
    dask : None, str or `distributed.Client`, optional
        Run the chunks on Dask: a ``Client``, a scheduler address (``"tcp://host:8786"``),
        or ``"local"`` / ``"local:N"`` for a `distributed.LocalCluster` of N single-threaded
        worker processes. Each worker loads the model once; this process writes the parts
        and the output.
    progress : bool or callable, optional
        Show a progress bar (None: when standard error is a terminal), or call
        ``progress(done_chunks, n_chunks)`` after every chunk.

    Returns
    -------
    SurveySummary

    Raises
    ------
    ValueError, OSError
        For an unusable output, options or parts folder, before any input is read.
    """
    t0 = time.perf_counter()
    output = Path(output).expanduser()
    fmt = check_output(output, overwrite=overwrite)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or \
            chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    from ._checks import check_quantiles
    from .estimator import CINNParameterEstimator

    levels = check_quantiles(quantiles)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
                             or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    rv_kind, rv_arg = parse_radial_velocity(radial_velocity)
    lo, hi = (float(v) for v in u.Quantity(velocity_range, _KMS).to_value(_KMS))
    if not lo < hi:
        raise ValueError(f"velocity_range must be increasing, got {velocity_range!r}")
    units = plan_inputs(inputs, group_arms=group_arms, path_column=path_column,
                        rv_column=rv_arg if rv_kind == "column" else None)
    if rv_kind == "values":
        if len(rv_arg) != len(units):
            raise ValueError(f"radial_velocity has {len(rv_arg)} values for {len(units)} inputs")
        units = [SurveyInput(un.paths, float(v)) for un, v in zip(units, rv_arg, strict=True)]
    folder = parts_folder(output)
    if not resume and folder.exists():
        with _locked(folder):  # refuses while another live run writes there
            pass
        shutil.rmtree(folder)
    client, close = _dask_client(dask) if dask is not None else (None, None)
    try:
        if isinstance(model, CINNParameterEstimator):
            est, handle = model, model
        else:  # loaded once per process (Dask workers in this process share it)
            est = cached_estimator(model, device)
            handle = None if model is None else os.fspath(model)
        if rv_kind == "estimate" and est.model.emulator is None:
            raise ValueError(f"model {est.model.metadata.full_name!r} has no spectrum emulator: "
                             "radial_velocity='estimate' needs one")
        job = _Job(
            n_samples=int(n_samples), quantiles=levels, batch_size=batch_size,
            seed=-1, medium=medium, snr=snr, normalize=normalize, calibrated=calibrated,
            reader_format=reader_format, flux_unit=flux_unit, group_arms=group_arms,
            rv_kind=rv_kind, rv_arg=rv_arg, velocity_range=(lo, hi),
            chunk_size=int(chunk_size),
            string_widths=_string_widths(units) if fmt in ("fits", "parquet") else {},
        )
        model_id = est.model.digest or est.model.sha256 or est.model.metadata.full_name
        fp = _fingerprint(units, job, str(model_id), fmt)
        fp["settings"]["seed"] = seed
        n_chunks = (len(units) + chunk_size - 1) // chunk_size
        suffix = _suffix(output)
        folder.mkdir(exist_ok=True)
        with _locked(folder):
            job_seed, done = _open_parts(folder, fp, n_chunks,
                                         secrets.randbits(32) if seed is None else int(seed),
                                         suffix)
            rv_note = {"none": "own", "value": "given", "values": "given",
                       "column": f"column:{rv_arg}", "header": f"header:{rv_arg}",
                       "estimate": "estimate"}[rv_kind]
            job = replace(job, seed=job_seed, meta={
                "SEED": job_seed, "CHUNKSZ": int(chunk_size), "NINPUTS": len(units),
                "RVSRC": rv_note,
            })
            todo = [k for k in range(n_chunks) if k not in done]
            close_bar, tick = _progress(progress, n_chunks, len(done))
            try:
                if client is None:
                    with _ReadAhead(units, job, todo, chunk_size) as ahead:
                        for k in todo:
                            table = _process_chunk(est, ahead.chunk(k), job, k)
                            _write_part(table, _part_path(folder, k, suffix), fmt)
                            del table
                            tick()
                else:
                    _run_dask(client, handle, device, units, job, todo, folder, suffix, fmt,
                              tick)
            finally:
                close_bar()
            parts = [_part_path(folder, k, suffix) for k in range(n_chunks)]
            missing = [p.name for p in parts if not p.exists()]
            if missing:
                raise OSError(f"parts missing after the run: {', '.join(missing[:5])}")
            if output.exists() and not overwrite:
                raise FileExistsError(f"output {str(output)!r} appeared during the run")
            rows = _assemble_output(parts, output, fmt)
            errors = sum(_part_stats(p, fmt)["errors"] for p in parts)
        if not keep_parts:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if close is not None:
            close()
    return SurveySummary(output, rows, len(units), errors, n_chunks, len(done),
                         time.perf_counter() - t0, job_seed)


def _part_stats(part: Path, fmt: str) -> dict[str, int]:
    """Rows and error rows of a part, from its side file (or the part itself)."""
    side = part.with_name(part.name.split(".")[0] + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        stats = json.loads(side.read_text())
        return {"rows": int(stats["rows"]), "errors": int(stats["errors"])}
    if fmt == "parquet":
        import pyarrow.parquet as pq

        col = pq.read_table(part, columns=["status"]).column("status").to_pylist()
    else:
        col = Table.read(part, format=fmt)["status"]
    return {"rows": len(col), "errors": int(sum(1 for s in col if str(s) != "ok"))}


def _progress(progress: Any, total: int, done: int) -> tuple[Callable[[], None],
                                                             Callable[[], None]]:
    if callable(progress):
        state = {"n": done}

        def tick() -> None:
            state["n"] += 1
            progress(state["n"], total)

        return (lambda: None), tick
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(total=total, initial=done, disable=not show, unit="chunk", desc="survey")
    return bar.close, (lambda: bar.update(1))


def _dask_client(spec: Any) -> tuple[Any, Callable[[], None] | None]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ValueError("dask runs need dask.distributed: pip install "
                         "'specutils-cinn[dask]'") from exc
    if isinstance(spec, Client):
        return spec, None
    if not isinstance(spec, str):
        raise ValueError(f"dask must be a Client, a scheduler address or 'local[:N]', "
                         f"got {spec!r}")
    if spec == "local" or spec.startswith("local:"):
        n = int(spec.split(":", 1)[1]) if ":" in spec else None
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()

        return client, close
    client = Client(spec)
    return client, client.close


def _run_dask(client: Any, handle: Any, device: str, units: list[SurveyInput], job: _Job,
              todo: list[int], folder: Path, suffix: str, fmt: str,
              tick: Callable[[], None]) -> None:
    """Chunks as Dask tasks, a bounded number in flight; parts written here as they finish.

    ``handle`` is a loaded estimator (scattered: one copy per worker) or the model name or
    path (None: the bundled model), which each worker loads once (`cached_estimator`).
    """
    from distributed import as_completed

    if hasattr(handle, "predict"):
        handle = client.scatter(handle, broadcast=True, hash=False)
    n_workers = max(1, sum(client.nthreads().values()))
    size = job.chunk_size
    pending = iter(todo)
    index: dict[str, int] = {}

    def submit(k: int) -> Any:
        fut = client.submit(_dask_chunk, handle, device, units[k * size:(k + 1) * size], job,
                            k, pure=False)
        index[fut.key] = k
        return fut

    ac = as_completed([submit(k) for _, k in zip(range(2 * n_workers), pending, strict=False)])
    for fut in ac:
        table = fut.result()
        _write_part(table, _part_path(folder, index.pop(fut.key), suffix), fmt)
        del table
        fut.release()
        tick()
        nxt = next(pending, None)
        if nxt is not None:
            ac.add(submit(nxt))
