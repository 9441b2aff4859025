"""The Dask path of a survey run: chunks as tasks on a cluster, parts written here.

`_dask_client` connects to (or starts) a cluster; `_run_dask` submits the chunks, a bounded
number in flight, and writes each part in this process as its task finishes; `_dask_chunk`
runs on a worker with the worker's (cached or scattered) estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from astropy.table import QTable

from .chunk import _process_chunk, cached_estimator
from .parts import _part_path, _write_part
from .plan import SurveyInput, _Job

__all__: list[str] = []

def _dask_chunk(model: Any, device: str, units: list[SurveyInput], job: _Job, index: int,
                compile_sampling: bool = False, sampling_precision: str | None = None
                ) -> QTable:
    """Run on a Dask worker: one chunk with the worker's (cached or scattered) estimator."""
    if hasattr(model, "predict"):
        est = model
        if sampling_precision is not None:
            est.set_sampling_precision(sampling_precision)
        if compile_sampling and not est.sampling_compiled:
            est.compile_sampling()
    else:
        est = cached_estimator(model, device, compile_sampling, sampling_precision)
    return _process_chunk(est, units, job, index)


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
              tick: Callable[[], None], compile_sampling: bool = False,
              sampling_precision: str | None = None) -> None:
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
                            k, compile_sampling, sampling_precision, pure=False)
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
