"""One chunk of a survey: its spectra read, radial velocities assigned, inferred, as rows.

`_process_chunk` turns a chunk of units into its table: one row per spectrum in input order,
with ``filename``, ``source``, ``source_index``, ``status``, the columns of
`~specutils_cinn.CINNParameterEstimator.predict` and ``rv``/``rv_err``; an input that fails
gets a row without a result and the error in ``status``. `cached_estimator` loads a model once
per process (for Dask workers).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..flags import QualityFlag
from .plan import _KMS, SEPARATOR, SurveyInput, _Job
from .reading import _STATUS_MAX, _Item, _read_chunk, _status

__all__ = [
    "cached_estimator",
]

def _header_rv(spectrum: Any, keyword: str, n_rows: int) -> np.ndarray:
    meta = spectrum.meta or {}
    # 4MOST-MEC 2-D: one row per fiber ("fibres": the British key of older readers)
    fibers = meta.get("fibers", meta.get("fibres"))
    if fibers is not None and keyword in getattr(fibers, "colnames", ()):
        values = np.asarray(fibers[keyword], dtype=float)
        if values.size == n_rows:
            return values
    fiber = meta.get("fiber", meta.get("fibre"))
    if isinstance(fiber, dict) and keyword in fiber:
        return np.full(n_rows, float(fiber[keyword]))
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


def _string_widths(units: Sequence[SurveyInput]) -> dict[str, int]:
    """Widths of the string columns, fixed for all parts of a FITS output."""
    source = max(len(SEPARATOR.join(un.paths).encode("utf-8")) for un in units)
    name = max(len(SEPARATOR.join(Path(p).name for p in un.paths).encode("utf-8"))
               for un in units)
    return {"filename": max(name, 1), "source": max(source, 1), "status": _STATUS_MAX}


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


def _estimate_rv(est: Any, items: list[_Item], good: list[int], job: _Job,
                 rv_err: dict[int, np.ndarray]) -> None:
    from ..rv import estimate_radial_velocity

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
    out["source_index"].description = "row of the spectrum in its source (fiber of a container)"
    out["status"].description = "'ok', or the error that kept this input from a result"
    out["rv"] = (np.concatenate(rv) if rv else np.zeros(0)) * _KMS
    out["rv"].description = (
        "radial velocity of the shift to the rest frame (NaN: unknown, not shifted)")
    out["rv_err"] = (np.concatenate(err) if err else np.zeros(0)) * _KMS
    out["rv_err"].description = "uncertainty of an estimated radial velocity (NaN: not estimated)"
    for name, width in job.string_widths.items():  # FITS: the same columns in every part
        out[name] = np.asarray(out[name], dtype=f"U{width}")
    return out


# ----------------------------------------------------------------------------- estimators
_ESTIMATORS: dict[tuple, Any] = {}
_ESTIMATORS_LOCK = threading.Lock()


def cached_estimator(model: str | os.PathLike | None, device: str = "auto",
                     compile_sampling: bool = False, sampling_precision: str | None = None
                     ) -> Any:
    """The estimator for a model, loaded once per process (for Dask workers).

    Parameters
    ----------
    model : str, path-like or None
        As for `~specutils_cinn.CINNParameterEstimator.from_pretrained`.
    device : str, optional
        Its device.
    compile_sampling : bool, optional
        Compile its sampling (`~specutils_cinn.CINNParameterEstimator.compile_sampling`).
    sampling_precision : {"auto", "float32", "bfloat16"}, optional
        Its sampling precision
        (`~specutils_cinn.CINNParameterEstimator.set_sampling_precision`; None: ``"auto"``).

    Returns
    -------
    `~specutils_cinn.CINNParameterEstimator`
        The same object for the same arguments within a process.
    """
    from ..estimator import CINNParameterEstimator

    precision = sampling_precision or "auto"
    key = (os.fspath(model) if model is not None else "", str(device), bool(compile_sampling),
           precision)
    with _ESTIMATORS_LOCK:
        est = _ESTIMATORS.get(key)
        if est is None:
            est = CINNParameterEstimator.from_pretrained(model, device=device)
            est.set_sampling_precision(precision)
            if compile_sampling:
                est.compile_sampling()
            _ESTIMATORS[key] = est
        return est
