"""The model format: trained cINN models on disk, their metadata, and the registry.

A model is a JSON metadata file and a safetensors weights file (and, optionally, a spectrum
emulator file for the goodness-of-fit check). One module per concept:

``identity``
    `validate_model_name` and `model_digest`, what identifies a model.
``specs``
    `ParameterSpec` and `EmulatorSpec`, entries of the metadata.
``metadata``
    `ModelMetadata`, the schema of ``metadata.json``.
``cinn_model``
    `CINNModel` (build, load with every file verified, save) and `model_files`.
``errors``
    The exceptions: `ModelLoadError` and its subclasses, `ModelNotFoundError`,
    `ModelDownloadError`, `ModelCacheError`.
``registry``
    `Registry`, the package's `REGISTRY` (``data/registry.json``) and `resolve_name`.
``cache``
    Local copies: `cache_dir` and `list_models`.
``download``
    Verified downloads: `fetch_model`, `download_models`, `download_file`.
``loading``
    `load_model`, by registered name or by path.

Every public name is importable from ``specutils_cinn.model``. The settings
``DOWNLOAD_TIMEOUT``, ``DOWNLOAD_STALL_TIMEOUT``, ``DOWNLOAD_RETRIES``, ``MAX_METADATA_BYTES``
and ``MAX_WEIGHTS_BYTES`` can be changed here or on their module, e.g.
``specutils_cinn.model.DOWNLOAD_TIMEOUT = 1800``: both are the same variable. `sha256_file`
and `load_verified_safetensors` are the file checks of the model files, shared with the
emulator.
"""

from __future__ import annotations

from .._files import load_verified_safetensors
from .._forwarding import forward_settings
from .._hashing import sha256_file
from . import cache, cinn_model, download, errors, identity, loading, metadata, registry, specs
from .cache import *  # noqa: F403
from .cinn_model import *  # noqa: F403
from .download import *  # noqa: F403
from .errors import *  # noqa: F403
from .identity import *  # noqa: F403
from .loading import *  # noqa: F403
from .metadata import *  # noqa: F403
from .registry import *  # noqa: F403
from .specs import *  # noqa: F403

__all__ = [
    *errors.__all__,
    *identity.__all__,
    *specs.__all__,
    *metadata.__all__,
    *cinn_model.__all__,
    *registry.__all__,
    *cache.__all__,
    *download.__all__,
    *loading.__all__,
    "load_verified_safetensors",
    "sha256_file",
]

#: The settings, each read by the functions of the module that defines it.
_SETTINGS = {
    "DOWNLOAD_RETRIES": download,
    "DOWNLOAD_STALL_TIMEOUT": download,
    "DOWNLOAD_TIMEOUT": download,
    "MAX_METADATA_BYTES": metadata,
    "MAX_WEIGHTS_BYTES": cinn_model,
}
forward_settings(__name__, _SETTINGS)
