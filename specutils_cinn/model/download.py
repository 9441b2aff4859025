"""Verified downloads of registered models: `fetch_model`, `download_models`, `download_file`.

`fetch_model` returns a model shipped inside the package when its files match the registry,
and otherwise downloads the files into the local cache (`specutils_cinn.model.cache`): a
download is streamed into a temporary file, aborted as soon as more bytes than registered
arrive, when no byte arrives for `DOWNLOAD_STALL_TIMEOUT` seconds or when it takes longer than
`DOWNLOAD_TIMEOUT`, and only moved into place (atomically) once its size and SHA-256 match.
These limits and `DOWNLOAD_RETRIES` are module variables that can be changed.

Environment variables, read at call time:

``SPECUTILS_CINN_CACHE``
    Cache directory (default ``pooch.os_cache("specutils-cinn")``).
``SPECUTILS_CINN_MODELS_URL``
    Base URL of the model files (default the registry's ``base_url``,
    `~specutils_cinn.model.DEFAULT_BASE_URL`); ``{version}``, ``{name}`` and ``{full_name}``
    are replaced by the model's values. Only ``http://`` and ``https://`` URLs are supported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import cache as _cache
from . import registry as _registry
from .cache import (
    CACHE_ENV,
    _cache_location,
    _check_cache_path,
    _file_mismatch,
    _verified_bundled_dir,
)
from .errors import ModelCacheError, ModelDownloadError, ModelIntegrityError
from .registry import RegistryEntry, RegistryFile, resolve_name

__all__ = [
    "DOWNLOAD_RETRIES",
    "DOWNLOAD_STALL_TIMEOUT",
    "DOWNLOAD_TIMEOUT",
    "URL_ENV",
    "download_file",
    "download_models",
    "fetch_model",
]

log = logging.getLogger(__name__)

#: Environment variable that overrides the base URL of the model files.
URL_ENV: str = "SPECUTILS_CINN_MODELS_URL"
#: How many times a failed download is retried, after a 1 s wait (not after an HTTP 4xx
#: error or a download that ran out of time).
DOWNLOAD_RETRIES: int = 1
#: Longest time (seconds) one file's download may take, response headers included; it is
#: then aborted with a `ModelDownloadError`.
DOWNLOAD_TIMEOUT: float = 900.0
#: Longest time (seconds) to wait for a connection or for the next byte of a download.
DOWNLOAD_STALL_TIMEOUT: float = 60.0
_RETRY_WAIT = 1.0
_CHUNK = 1 << 16


def _base_url(entry: RegistryEntry) -> str:
    template = os.environ.get(URL_ENV) or _registry.REGISTRY.base_url
    try:
        url = template.format(version=entry.version, name=entry.name, full_name=entry.full_name)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"bad model base URL {template!r} (from {URL_ENV} or the registry): only "
            "{version}, {name} and {full_name} may be substituted"
        ) from exc
    if not url.startswith(("http://", "https://")):
        raise ValueError(
            f"bad model base URL {url!r} (from {URL_ENV} or the registry): only http:// and "
            "https:// URLs are supported"
        )
    return url.rstrip("/") + "/"


class _Retry(Exception):
    """Internal: a failed download attempt that may be retried (``cause`` is the error)."""

    def __init__(self, cause: Exception, origin: BaseException | None = None) -> None:
        super().__init__(str(cause))
        cause.__cause__ = origin
        self.cause = cause


def _classify(exc: BaseException, stall: float) -> _Retry:
    """The retryable `ModelDownloadError` for an exception of the download thread."""
    import requests
    import urllib3

    timeouts = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    if isinstance(exc, timeouts) or "timed out" in str(exc).lower():
        return _Retry(
            ModelDownloadError(
                f"no data for {stall:g} s "
                f"(specutils_cinn.model.download.DOWNLOAD_STALL_TIMEOUT): {exc}"
            ),
            exc,
        )
    return _Retry(ModelDownloadError(str(exc)), exc)


def _reader(
    url: str, chunks: queue.Queue[tuple[Any, ...]], cancel: threading.Event, stall: float
) -> None:
    """Download thread: put ``("head", status, reason, content_length)``, then ``("data",
    bytes)`` items and ``("end",)``, or ``("error", exception)``; stop once ``cancel`` is set.

    Only this thread touches the network, only the caller the file: the caller can give up at
    its deadline even while this thread is blocked in a read (which then ends within ``stall``
    seconds, the socket timeout).
    """
    import requests

    def put(item: tuple[Any, ...]) -> bool:
        while not cancel.is_set():
            try:
                chunks.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        with requests.get(
            url,
            stream=True,
            timeout=(stall, stall),
            headers={"Accept-Encoding": "identity"},
        ) as resp:
            if not put(("head", resp.status_code, resp.reason,
                        resp.headers.get("Content-Length"))):
                return
            if resp.status_code >= 400:
                return
            read1 = getattr(resp.raw, "read1", None)
            while not cancel.is_set():
                if read1 is not None:  # urllib3 >= 2: returns whatever one read gives
                    chunk = read1(_CHUNK, decode_content=False)
                else:  # pragma: no cover - urllib3 1.x
                    chunk = resp.raw.read(8192, decode_content=False)
                if not chunk:
                    put(("end",))
                    return
                if not put(("data", chunk)):
                    return
    except Exception as exc:  # noqa: BLE001 - handed to the caller, which classifies it
        put(("error", exc))


def _download_attempt(url: str, f: RegistryFile, target: Path, progressbar: bool) -> None:
    """One attempt: stream ``url`` into a temporary file beside ``target``, check size and
    SHA-256, then move it into place atomically. Raises `_Retry` for retryable failures."""
    from tqdm import tqdm

    from .cinn_model import MAX_WEIGHTS_BYTES

    limit = f.size if f.size is not None else MAX_WEIGHTS_BYTES
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT
    stall = DOWNLOAD_STALL_TIMEOUT
    chunks: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=4)
    cancel = threading.Event()
    thread = threading.Thread(
        target=_reader, args=(url, chunks, cancel, stall), daemon=True,
        name=f"specutils-cinn download {f.filename}",
    )
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{f.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    bar = tqdm(total=f.size, unit="B", unit_scale=True, desc=f.filename, file=sys.stderr,
               disable=not progressbar, leave=False)
    try:
        thread.start()
        with os.fdopen(fd, "wb") as fh:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise queue.Empty
                    item = chunks.get(timeout=remaining)
                except queue.Empty:
                    raise ModelDownloadError(
                        f"the download took longer than {DOWNLOAD_TIMEOUT:g} s "
                        f"(specutils_cinn.model.download.DOWNLOAD_TIMEOUT) after {received:,} of "
                        f"{f.size if f.size is not None else '?'} bytes"
                    ) from None
                kind = item[0]
                if kind == "head":
                    _, status, reason, length = item
                    if status >= 400:
                        error = ModelDownloadError(f"HTTP {status} {reason}")
                        raise _Retry(error) if status >= 500 else error
                    if length is not None and length.isdigit() and f.size is not None \
                            and int(length) != f.size:
                        raise _Retry(ModelIntegrityError(
                            f"the server announces {int(length):,} bytes, the registry "
                            f"records {f.size:,}"
                        ))
                elif kind == "data":
                    chunk = item[1]
                    received += len(chunk)
                    if received > limit:
                        raise _Retry(ModelIntegrityError(
                            f"more than the {limit:,} bytes "
                            + ("recorded in the registry" if f.size is not None else
                               "of specutils_cinn.model.cinn_model.MAX_WEIGHTS_BYTES")
                            + " arrived; the download was aborted"
                        ))
                    digest.update(chunk)
                    fh.write(chunk)
                    bar.update(len(chunk))
                elif kind == "end":
                    break
                else:
                    raise _classify(item[1], stall)
        if f.size is not None and received != f.size:
            raise _Retry(ModelDownloadError(
                f"the download ended after {received:,} of {f.size:,} bytes (truncated)"
            ))
        actual = digest.hexdigest()
        if actual != f.sha256:
            raise _Retry(ModelIntegrityError(
                f"its SHA-256 is {actual}, the registry records {f.sha256}"
            ))
        os.replace(tmp, target)  # atomic: readers see the old file or the complete new one
    finally:
        cancel.set()
        bar.close()
        tmp.unlink(missing_ok=True)


def download_file(url: str, f: RegistryFile, target: Path, progressbar: bool = False) -> None:
    """Download one registered file, verified, with `DOWNLOAD_RETRIES` retries.

    The download is streamed into a temporary file next to ``target``, aborted as soon as more
    bytes than ``f.size`` arrive, when no byte arrives for `DOWNLOAD_STALL_TIMEOUT` seconds or
    when it takes longer than `DOWNLOAD_TIMEOUT`, and moved to ``target`` only once its size
    and SHA-256 match.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` URL of the file.
    f : RegistryFile
        The registered name, SHA-256 and size.
    target : pathlib.Path
        Where the verified file goes.
    progressbar : bool
        Show a progress bar.

    Raises
    ------
    ModelDownloadError
        If the download fails after the retries, or its content does not match.
    """
    attempts = 1 + max(0, int(DOWNLOAD_RETRIES))
    for attempt in range(attempts):
        try:
            log.info("downloading %s to %s", url, target)
            _download_attempt(url, f, target, progressbar)
            return
        except _Retry as exc:
            if attempt + 1 == attempts:
                raise exc.cause from exc.cause.__cause__
            log.info("download of %s failed (%s); retrying", url, exc.cause)
            time.sleep(_RETRY_WAIT)


def fetch_model(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progressbar: bool = False,
) -> Path:
    """Return the local path of a registered model, downloading it if needed.

    A copy bundled with the package is used when it is complete (no network access); a
    bundled file that differs from the registry is an error. Otherwise every file is taken
    from the cache if its size and SHA-256 match the registry, and (re-)downloaded if it is
    missing or differs. A download is streamed into a temporary file in the cache and aborted
    as soon as more bytes than registered arrive, when no byte arrives for
    `DOWNLOAD_STALL_TIMEOUT` seconds, or when it takes longer than `DOWNLOAD_TIMEOUT`; it is
    moved into place atomically only once its size and SHA-256 match, so that concurrent
    downloads of the same model into one cache leave one valid copy.

    Parameters
    ----------
    name : str
        Full name, alias or bare name of the model (never a path).
    cache_dir : str or os.PathLike, optional
        Cache directory; default `cache_dir()` (``$SPECUTILS_CINN_CACHE`` or the OS cache).
    progressbar : bool, optional
        Show a download progress bar (tqdm) on stderr.

    Returns
    -------
    pathlib.Path
        Either the bundled model directory, or the cached metadata file
        ``<full_name>.json`` (its weights ``<full_name>.safetensors`` beside it).
        `specutils_cinn.model.CINNModel.load` accepts both.

    Raises
    ------
    ModelNotFoundError
        If the name is not registered.
    ModelCacheError
        If the cache directory is not a directory or cannot be created or written.
    ModelDownloadError
        If a file is neither cached nor downloadable (for example offline, an HTTP error, a
        stalled, too slow or truncated download).
    specutils_cinn.model.ModelIntegrityError
        If a bundled file or a downloaded one does not match its registered size or SHA-256
        (a download is discarded); a `ValueError`.
    """
    full = resolve_name(name)
    entry = _registry.REGISTRY.models[full]
    bundled = _verified_bundled_dir(entry)
    if bundled is not None:
        return bundled

    base_url = _base_url(entry)
    cache, origin = _cache_location(cache_dir)
    _check_cache_path(cache, origin)
    missing = [
        f for f in entry.files
        if not (cache / f.filename).is_file() or _file_mismatch(cache / f.filename, f) is not None
    ]
    if missing:  # a complete cache may be read-only
        _cache._prepare_cache(cache, origin)
    for f in missing:
        target = cache / f.filename
        url = base_url + f.filename
        try:
            download_file(url, f, target, progressbar)
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(
                f"the file {f.filename} of model {full!r} downloaded from {url} does not match "
                f"the registry (the download was discarded): {exc}"
            ) from exc
        except (ModelDownloadError, OSError) as exc:
            if isinstance(exc, ModelCacheError):
                raise
            raise ModelDownloadError(
                f"could not download {f.filename} of model {full!r} from {url} ({exc}), and the "
                f"cache directory {cache} holds no valid copy of it. On a machine with network "
                f"access run `specutils-cinn models download {full}` and copy its cache "
                f"directory here, or set {CACHE_ENV} to a directory that already holds "
                + ", ".join(g.filename for g in entry.files)
                + "."
            ) from exc
    return cache / entry.metadata.filename


def download_models(
    names: Iterable[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progressbar: bool = False,
) -> list[Path]:
    """Fetch several models (all registered ones by default); see `fetch_model`.

    Parameters
    ----------
    names : iterable of str, optional
        Model names or aliases; default all registered models.
    cache_dir : str or os.PathLike, optional
        Cache directory; default `cache_dir()`.
    progressbar : bool, optional
        Show download progress bars.

    Returns
    -------
    list of pathlib.Path
        What `fetch_model` returned for each model, in order.

    Raises
    ------
    ModelNotFoundError
        If a name is unknown (checked before anything is downloaded).
    ModelDownloadError
        If a download fails.
    specutils_cinn.model.ModelIntegrityError
        If a file does not match the registry.
    """
    if isinstance(names, str):
        names = [names]
    full_names = _registry.REGISTRY.names if names is None else [resolve_name(n) for n in names]
    return [fetch_model(n, cache_dir=cache_dir, progressbar=progressbar) for n in full_names]
