"""`run_survey`: many spectrum files to one table, in chunks, resumable, optionally on Dask.

It checks the output and the options, plans the inputs, opens the parts folder, runs the
chunks (locally with reading ahead, or on Dask), assembles the output and returns a
`SurveySummary`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u

from .chunk import _process_chunk, _string_widths, cached_estimator
from .dask import _dask_client, _run_dask
from .parts import (
    _assemble_output,
    _fingerprint,
    _locked,
    _open_parts,
    _part_path,
    _part_stats,
    _suffix,
    _write_part,
    check_output,
    parts_folder,
)
from .plan import _KMS, SurveyInput, _Job, parse_radial_velocity, plan_inputs
from .reading import _ReadAhead

__all__ = [
    "SurveySummary",
    "run_survey",
]

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
    compile_sampling: bool = False,
    sampling_precision: str | None = None,
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
    compile_sampling : bool, optional
        Compile the network's sampling once per process
        (`~specutils_cinn.CINNParameterEstimator.compile_sampling`; a given estimator is
        compiled in place): tens of seconds at the start, faster chunks after.
    sampling_precision : {"auto", "float32", "bfloat16"}, optional
        The network's sampling precision
        (`~specutils_cinn.CINNParameterEstimator.set_sampling_precision`; a given estimator is
        set in place). None: a given estimator's own, ``"auto"`` for a model loaded here.

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
    from .._checks import check_quantiles
    from ..estimator import CINNParameterEstimator

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
            if sampling_precision is not None:
                est.set_sampling_precision(sampling_precision)
            if compile_sampling and not est.sampling_compiled:
                est.compile_sampling()
        else:  # loaded once per process (Dask workers in this process share it)
            est = cached_estimator(model, device, compile_sampling, sampling_precision)
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
                              tick, compile_sampling, sampling_precision)
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
