"""What a survey run does: its inputs, their radial velocities and the job's settings.

`plan_inputs` expands files, folders, lists of paths and tables of paths into
`SurveyInput` units (joining the 4MOST HRS arm files of an object with ``group_arms``);
`parse_radial_velocity` reads the ``radial_velocity`` argument; ``_Job`` holds every setting
a chunk needs besides the model (picklable, for Dask).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table

__all__ = [
    "SEPARATOR",
    "SurveyInput",
    "parse_radial_velocity",
    "plan_inputs",
]

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
        each file, km/s; for 4MOST containers the fiber-table column of that name);
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
