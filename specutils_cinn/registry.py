"""Moved to `specutils_cinn.model`: this module re-exports its names for one release.

The registry of published models now lives in the subpackage `specutils_cinn.model`:
`Registry`, `REGISTRY`, `resolve_name` and `make_registry_entry` in ``model/registry.py``,
`cache_dir` and `list_models` in ``model/cache.py``, `fetch_model`, `download_models` and
`download_file` in ``model/download.py``, `load_model` in ``model/loading.py`` and the
exceptions in ``model/errors.py``. Import them from `specutils_cinn.model`;
``specutils_cinn.registry`` goes away in the next release. ``DOWNLOAD_TIMEOUT``,
``DOWNLOAD_STALL_TIMEOUT`` and ``DOWNLOAD_RETRIES`` are still read and set in
``specutils_cinn.model.download`` when used through this module.
"""

from ._forwarding import forward_settings
from .model import download
from .model.cache import CACHE_ENV, cache_dir, list_models
from .model.download import (
    DOWNLOAD_RETRIES,
    DOWNLOAD_STALL_TIMEOUT,
    DOWNLOAD_TIMEOUT,
    URL_ENV,
    download_file,
    download_models,
    fetch_model,
)
from .model.errors import ModelCacheError, ModelDownloadError, ModelNotFoundError
from .model.loading import load_model
from .model.registry import (
    DATA_DIR,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    REGISTRY,
    REGISTRY_FORMAT_VERSION,
    Registry,
    RegistryEntry,
    RegistryFile,
    make_registry_entry,
    registry_sha256,
    resolve_name,
)

__all__ = [
    "CACHE_ENV",
    "DATA_DIR",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DOWNLOAD_RETRIES",
    "DOWNLOAD_STALL_TIMEOUT",
    "DOWNLOAD_TIMEOUT",
    "REGISTRY",
    "REGISTRY_FORMAT_VERSION",
    "URL_ENV",
    "ModelCacheError",
    "ModelDownloadError",
    "ModelNotFoundError",
    "Registry",
    "RegistryEntry",
    "RegistryFile",
    "cache_dir",
    "download_file",
    "download_models",
    "fetch_model",
    "list_models",
    "load_model",
    "make_registry_entry",
    "registry_sha256",
    "resolve_name",
]

forward_settings(
    __name__,
    {name: download for name in ("DOWNLOAD_RETRIES", "DOWNLOAD_STALL_TIMEOUT", "DOWNLOAD_TIMEOUT")},
)
