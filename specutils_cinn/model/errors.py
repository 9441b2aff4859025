"""The exceptions of the model package, in one place.

Loading a model raises `ModelLoadError` (a `ValueError`) or one of its subclasses,
`ModelIntegrityError` and `ModelFileNotFoundError`; these three are defined with the file
checks they come from (``specutils_cinn._files``, shared with the emulator files) and
re-exported here. Finding, downloading and caching registered models raise
`ModelNotFoundError`, `ModelDownloadError` and `ModelCacheError`.
"""

from __future__ import annotations

from .._files import ModelFileNotFoundError, ModelIntegrityError, ModelLoadError

__all__ = [
    "ModelCacheError",
    "ModelDownloadError",
    "ModelFileNotFoundError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
]


class ModelNotFoundError(ValueError):
    """A model name or alias is not in the registry; the message lists the available ones."""


class ModelDownloadError(OSError):
    """A model file could not be downloaded and no valid copy is cached.

    Raised for network errors, HTTP errors, a download that stalls (no byte for
    ``DOWNLOAD_STALL_TIMEOUT`` seconds), takes longer than ``DOWNLOAD_TIMEOUT`` (settings of
    `specutils_cinn.model.download`) or ends early.
    The message names the cache directory and how to fill it on a machine with
    network access (``specutils-cinn models download NAME``) or how to point
    ``SPECUTILS_CINN_CACHE`` at a pre-filled directory. A download whose content differs
    from the registry (more bytes than registered, or another SHA-256) raises
    `ModelIntegrityError` instead.
    """


class ModelCacheError(OSError):
    """The cache directory is unusable: not a directory, or cannot be created or written.

    The message names the directory and where it came from (``$SPECUTILS_CINN_CACHE``, the
    ``cache_dir`` argument, or the default).
    """
