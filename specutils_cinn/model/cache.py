"""Local copies of registered models: the copy bundled with the package and the download cache.

The cache directory is ``$SPECUTILS_CINN_CACHE`` (`CACHE_ENV`) if set, otherwise
``pooch.os_cache("specutils-cinn")``, read at each call (`cache_dir`). A local file counts as a
copy of a registered file only if its size and SHA-256 match the registry; `list_models` tells
which registered models have one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pooch
from astropy.table import Table

from .._hashing import sha256_file
from . import registry as _registry
from .cinn_model import EMULATOR_FILENAME, METADATA_FILENAME, WEIGHTS_FILENAME
from .errors import ModelCacheError, ModelIntegrityError
from .registry import RegistryEntry, RegistryFile

__all__ = ["CACHE_ENV", "cache_dir", "list_models"]

log = logging.getLogger(__name__)

#: Environment variable that overrides the cache directory.
CACHE_ENV: str = "SPECUTILS_CINN_CACHE"

_CACHE_PROJECT = "specutils-cinn"


def cache_dir() -> Path:
    """Return the effective cache directory for downloaded models.

    ``$SPECUTILS_CINN_CACHE`` if set and non-empty, otherwise
    ``pooch.os_cache("specutils-cinn")``. Read at each call; nothing is created.

    Returns
    -------
    pathlib.Path
        An absolute path.

    Raises
    ------
    ModelCacheError
        If the path exists but is not a directory; the message names the variable.
    """
    path, origin = _cache_location(None)
    _check_cache_path(path, origin)
    return path


def _cache_location(explicit: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The cache directory (absolute) and where it came from, for error messages."""
    if explicit is not None:
        return Path(os.path.abspath(os.path.expanduser(os.fspath(explicit)))), "cache_dir"
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(os.path.abspath(os.path.expanduser(env))), f"${CACHE_ENV}"
    default = Path(os.path.abspath(pooch.os_cache(_CACHE_PROJECT)))
    return default, f"the default cache directory (set {CACHE_ENV} to change it)"


def _cache_problem(path: Path, origin: str, problem: str) -> ModelCacheError:
    return ModelCacheError(
        f"model cache directory {path} (from {origin}) {problem}; set {CACHE_ENV} to a "
        "writable directory"
    )


def _check_cache_path(path: Path, origin: str) -> None:
    if path.exists() and not path.is_dir():
        raise _cache_problem(path, origin, "exists but is not a directory")


def _prepare_cache(path: Path, origin: str) -> None:
    """Create the cache directory if needed and check that files can be created in it."""
    _check_cache_path(path, origin)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cache_problem(path, origin, f"cannot be created ({exc})") from exc
    if not path.is_dir():
        raise _cache_problem(path, origin, "is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.", suffix=".tmp")
    except OSError as exc:
        raise _cache_problem(path, origin, f"is not writable ({exc})") from exc
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def _bundled_files(entry: RegistryEntry) -> list[tuple[Path, RegistryFile]] | None:
    if entry.bundled is None:
        return None
    directory = _registry.DATA_DIR / "models" / entry.bundled
    names = [METADATA_FILENAME, WEIGHTS_FILENAME, EMULATOR_FILENAME]
    return [(directory / n, f) for n, f in zip(names, entry.files, strict=False)]


def _file_mismatch(path: Path, f: RegistryFile) -> str | None:
    """Why ``path`` is not the registered file ``f`` (size first, then SHA-256), or None."""
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        return f"it has {size:,} bytes, the registry records {f.size:,}"
    actual = sha256_file(path)
    if actual != f.sha256:
        return f"its SHA-256 is {actual}, the registry records {f.sha256}"
    return None


def _bundled_dir(entry: RegistryEntry) -> Path | None:
    """The bundled copy of a model if shipped, complete and identical to the registry's files."""
    files = _bundled_files(entry)
    if files is None:
        return None
    for path, f in files:
        if not path.is_file() or _file_mismatch(path, f) is not None:
            log.debug("bundled model file %s is missing or does not match the registry", path)
            return None
    return files[0][0].parent


def _verified_bundled_dir(entry: RegistryEntry) -> Path | None:
    """The bundled copy of a model; None if not shipped or incomplete (then it is downloaded).

    Raises
    ------
    ModelIntegrityError
        If a shipped file differs from the registry (a modified installation).
    """
    files = _bundled_files(entry)
    if files is None:
        return None
    if not all(path.is_file() for path, _ in files):
        log.debug("bundled model %s is incomplete; it will be downloaded", entry.full_name)
        return None
    for path, f in files:
        problem = _file_mismatch(path, f)
        if problem is not None:
            raise ModelIntegrityError(
                f"the bundled file {path} of model {entry.full_name!r} does not match the "
                f"registry: {problem}. The installation was modified or is corrupt; reinstall "
                "specutils-cinn"
            )
    return files[0][0].parent


def _is_cached(entry: RegistryEntry, directory: Path) -> bool:
    for f in entry.files:
        path = directory / f.filename
        if not path.is_file() or _file_mismatch(path, f) is not None:
            return False
    return True


def list_models(*, cache_dir: str | os.PathLike[str] | None = None) -> Table:
    """Tabulate the registered models.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Cache directory to inspect; default `cache_dir()`.

    Returns
    -------
    astropy.table.Table
        Columns ``name`` (full name), ``version``, ``aliases`` (comma-separated),
        ``description``, ``bundled`` (a valid copy ships with the package) and
        ``cached`` (all files are in the cache with the right sizes and hashes).

    Raises
    ------
    ModelCacheError
        If the cache directory exists but is not a directory.
    """
    directory, origin = _cache_location(cache_dir)
    _check_cache_path(directory, origin)
    rows = []
    for full in _registry.REGISTRY.names:
        entry = _registry.REGISTRY.models[full]
        aliases = ", ".join(sorted(a for a, t in _registry.REGISTRY.aliases.items() if t == full))
        rows.append(
            (
                full,
                entry.version,
                aliases,
                entry.description,
                _bundled_dir(entry) is not None,
                _is_cached(entry, directory),
            )
        )
    names = ("name", "version", "aliases", "description", "bundled", "cached")
    dtypes = (str, str, str, str, bool, bool)
    if not rows:
        return Table(names=names, dtype=dtypes)
    return Table(rows=rows, names=names, dtype=dtypes)
