"""Registry of published models: names, versions, hashes, sizes, download and cache.

The registry is the JSON file ``specutils_cinn/data/registry.json``, read at import
into `REGISTRY`. Each model is published as two release assets,
``<full_name>.json`` (metadata) and ``<full_name>.safetensors`` (weights), plus
``<full_name>.emulator.safetensors`` for a model with a goodness-of-fit emulator, where
``full_name`` is ``"<name>-v<version>"``. The registry records each file's SHA-256 and size
and the model's `~specutils_cinn.models.model_digest`. `fetch_model` returns a model shipped
inside the package when its files match the registry, and otherwise downloads the files into
a local cache: a download is streamed into a temporary file, aborted as soon as more bytes
than registered arrive, when no byte arrives for `DOWNLOAD_STALL_TIMEOUT` seconds or when it
takes longer than `DOWNLOAD_TIMEOUT`, and only moved into place (atomically) once its size
and SHA-256 match.

Environment variables, read at call time:

``SPECUTILS_CINN_CACHE``
    Cache directory (default ``pooch.os_cache("specutils-cinn")``).
``SPECUTILS_CINN_MODELS_URL``
    Base URL of the model files (default `DEFAULT_BASE_URL`); ``{version}``,
    ``{name}`` and ``{full_name}`` are replaced by the model's values. Only ``http://`` and
    ``https://`` URLs are supported.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pooch
from astropy.table import Table
from packaging.version import Version

from ._hashing import is_sha256, sha256_file
from .models import (
    EMULATOR_FILENAME,
    METADATA_FILENAME,
    WEIGHTS_FILENAME,
    ModelIntegrityError,
    ModelMetadata,
    model_digest,
    model_files,
    validate_model_name,
)

if TYPE_CHECKING:
    import torch

    from .models import CINNModel

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

log = logging.getLogger(__name__)

#: Directory of the package data; bundled models live in ``DATA_DIR / "models"``.
DATA_DIR: Path = Path(__file__).resolve().parent / "data"
#: Default base URL of the model files; ``{version}`` is the model version.
DEFAULT_BASE_URL: str = (
    "https://github.com/specutils-cinn/specutils-cinn-models/releases/download/v{version}/"
)
#: Environment variable that overrides the cache directory.
CACHE_ENV: str = "SPECUTILS_CINN_CACHE"
#: Environment variable that overrides the base URL of the model files.
URL_ENV: str = "SPECUTILS_CINN_MODELS_URL"
#: Model loaded by ``CINNParameterEstimator.from_pretrained()`` with no name: it is shipped inside
#: the package, so it loads without network access.
DEFAULT_MODEL: str = "4most-hr"
#: Version of the ``registry.json`` schema (2: file sizes and model digests).
REGISTRY_FORMAT_VERSION: int = 2
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

_CACHE_PROJECT = "specutils-cinn"


class ModelNotFoundError(ValueError):
    """A model name or alias is not in the registry; the message lists the available ones."""


class ModelDownloadError(OSError):
    """A model file could not be downloaded and no valid copy is cached.

    Raised for network errors, HTTP errors, a download that stalls (no byte for
    `DOWNLOAD_STALL_TIMEOUT` seconds), takes longer than `DOWNLOAD_TIMEOUT` or ends early.
    The message names the cache directory and how to fill it on a machine with
    network access (``specutils-cinn models download NAME``) or how to point
    ``SPECUTILS_CINN_CACHE`` at a pre-filled directory. A download whose content differs
    from the registry (more bytes than registered, or another SHA-256) raises
    `~specutils_cinn.models.ModelIntegrityError` instead.
    """


class ModelCacheError(OSError):
    """The cache directory is unusable: not a directory, or cannot be created or written.

    The message names the directory and where it came from (``$SPECUTILS_CINN_CACHE``, the
    ``cache_dir`` argument, or the default).
    """


def _bad(where: str, problem: str) -> ValueError:
    return ValueError(f"model registry: {where}: {problem}")


@dataclass(frozen=True)
class RegistryFile:
    """One published file of a model.

    Parameters
    ----------
    filename : str
        Name of the release asset (and of the cached file).
    sha256 : str
        Its SHA-256, 64 lower-case hex digits.
    size : int or None, optional
        Its size in bytes; a download is aborted as soon as it exceeds it. Required in
        ``registry.json``; None (for entries built in code) bounds downloads by
        `~specutils_cinn.models.MAX_WEIGHTS_BYTES` only.
    """

    filename: str
    sha256: str
    size: int | None = None

    def __post_init__(self) -> None:
        validate_model_name(self.filename, "registry file name")
        if not is_sha256(self.sha256):
            raise ValueError(f"invalid SHA-256 {self.sha256!r} for {self.filename!r}")
        if self.size is not None and (type(self.size) is not int or self.size < 0):
            raise ValueError(f"invalid size {self.size!r} for {self.filename!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the file as stored in ``registry.json``.

        Returns
        -------
        dict
            ``filename``, ``sha256`` and, if known, ``size``.
        """
        out: dict[str, Any] = {"filename": self.filename, "sha256": self.sha256}
        if self.size is not None:
            out["size"] = self.size
        return out


@dataclass(frozen=True)
class RegistryEntry:
    """A published model version.

    Parameters
    ----------
    name : str
        Model name without version.
    version : str
        Model version (PEP 440).
    metadata, weights : RegistryFile
        The metadata (``.json``) and weights (``.safetensors``) files.
    description : str, optional
        One-line description.
    bundled : str or None, optional
        Directory name inside ``specutils_cinn/data/models/`` holding a copy of the
        model shipped with the package (``metadata.json`` + ``weights.safetensors``, and
        ``emulator.safetensors`` for a model with an emulator), normally ``full_name``;
        None if not shipped.
    emulator : RegistryFile or None, optional
        The model's spectrum-emulator file (``<full_name>.emulator.safetensors``), for
        models whose metadata has an ``emulator`` entry.
    """

    name: str
    version: str
    metadata: RegistryFile
    weights: RegistryFile
    description: str = ""
    bundled: str | None = None
    emulator: RegistryFile | None = None

    def __post_init__(self) -> None:
        validate_model_name(self.name)
        Version(self.version)  # raises InvalidVersion, a ValueError
        if self.bundled is not None:
            validate_model_name(self.bundled, "bundled directory name")
        if not isinstance(self.description, str):
            raise ValueError(f"description must be a string, got {self.description!r}")

    @property
    def full_name(self) -> str:
        """``"<name>-v<version>"``, the registry key."""
        return f"{self.name}-v{self.version}"

    @property
    def files(self) -> tuple[RegistryFile, ...]:
        """``(metadata, weights)``, plus the emulator file if there is one."""
        if self.emulator is None:
            return self.metadata, self.weights
        return self.metadata, self.weights, self.emulator

    @property
    def digest(self) -> str:
        """The model's `~specutils_cinn.models.model_digest`, from the files' SHA-256."""
        return model_digest(
            self.metadata.sha256,
            self.weights.sha256,
            None if self.emulator is None else self.emulator.sha256,
        )

    @property
    def expected_sha256(self) -> dict[str, str]:
        """SHA-256 per file role, as `~specutils_cinn.models.CINNModel.load` takes them."""
        out = {"metadata": self.metadata.sha256, "weights": self.weights.sha256}
        if self.emulator is not None:
            out["emulator"] = self.emulator.sha256
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as stored in ``registry.json``.

        Returns
        -------
        dict
        """
        files = {"metadata": self.metadata.to_dict(), "weights": self.weights.to_dict()}
        if self.emulator is not None:
            files["emulator"] = self.emulator.to_dict()
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "digest": self.digest,
            "files": files,
            "bundled": self.bundled,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], key: str = "?") -> RegistryEntry:
        """Parse an entry of ``registry.json``.

        Parameters
        ----------
        d : dict
            The entry.
        key : str, optional
            Its key in ``"models"``, used in error messages.

        Returns
        -------
        RegistryEntry

        Raises
        ------
        ValueError
            If the entry is malformed (a file without ``size``, a ``digest`` that does not
            match the files' SHA-256, ...); the message names the model and field.
        """
        where = f"models[{key!r}]"
        if not isinstance(d, Mapping):
            raise _bad(where, f"expected an object, got {d!r}")
        allowed = {"name", "version", "description", "digest", "files", "bundled"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise _bad(f"{where}.{unknown[0]}", "unknown key")
        try:
            files = d["files"]
            if not isinstance(files, Mapping):
                raise _bad(f"{where}.files", f"expected an object, got {files!r}")
            unknown_files = sorted(set(files) - {"metadata", "weights", "emulator"})
            if unknown_files:
                raise _bad(f"{where}.files.{unknown_files[0]}", "unknown key")
            parsed = {}
            for kind in ("metadata", "weights", "emulator"):
                if kind == "emulator" and kind not in files:
                    continue
                f = files[kind]
                if not isinstance(f, Mapping):
                    raise _bad(f"{where}.files.{kind}", f"expected an object, got {f!r}")
                unknown_keys = sorted(set(f) - {"filename", "sha256", "size"})
                if unknown_keys:
                    raise _bad(f"{where}.files.{kind}.{unknown_keys[0]}", "unknown key")
                if "size" not in f:
                    raise _bad(f"{where}.files.{kind}", "missing key 'size'")
                try:
                    parsed[kind] = RegistryFile(f["filename"], f["sha256"], f["size"])
                except ValueError as exc:
                    raise _bad(f"{where}.files.{kind}", str(exc)) from None
            entry = cls(
                name=d["name"],
                version=d["version"],
                metadata=parsed["metadata"],
                weights=parsed["weights"],
                description=d.get("description", ""),
                bundled=d.get("bundled"),
                emulator=parsed.get("emulator"),
            )
        except KeyError as exc:
            raise _bad(where, f"missing key {exc.args[0]!r}") from None
        except ValueError as exc:
            if str(exc).startswith("model registry:"):
                raise
            raise _bad(where, str(exc)) from None
        if key != "?" and key != entry.full_name:
            raise _bad(where, f"key must be '<name>-v<version>' = {entry.full_name!r}")
        if "digest" in d and d["digest"] != entry.digest:
            raise _bad(
                f"{where}.digest",
                f"{d['digest']!r} does not match the files' SHA-256 (expected {entry.digest})",
            )
        return entry


@dataclass(frozen=True)
class Registry:
    """The parsed ``registry.json``.

    Parameters
    ----------
    models : dict of str to RegistryEntry
        Entries keyed by full name (``"<name>-v<version>"``).
    aliases : dict of str to str
        Short names mapped to full names.
    base_url : str, optional
        Default base URL of the model files (``{version}``, ``{name}``,
        ``{full_name}`` are substituted per model).
    grids : dict, optional
        Synthesis grids published as data products, by full name (parsed and checked by
        `specutils_cinn.synthesis.shards.GridProduct` when used).

    Raises
    ------
    ValueError
        If a key does not match its entry or an alias points nowhere.
    """

    models: dict[str, RegistryEntry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    base_url: str = DEFAULT_BASE_URL
    grids: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, entry in self.models.items():
            if key != entry.full_name:
                raise _bad(f"models[{key!r}]", f"key must be {entry.full_name!r}")
        for alias, target in self.aliases.items():
            validate_model_name(alias, "alias")
            if alias in self.models:
                raise _bad(f"aliases[{alias!r}]", "an alias cannot be a model name")
            if target not in self.models:
                raise _bad(f"aliases[{alias!r}]", f"target {target!r} is not a registered model")
        if not isinstance(self.base_url, str) or not self.base_url:
            raise _bad("base_url", f"expected a non-empty string, got {self.base_url!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Registry:
        """Parse the content of ``registry.json``.

        Parameters
        ----------
        d : dict
            ``{"format_version": 2, "base_url": ..., "models": {...}, "aliases": {...}}``.

        Returns
        -------
        Registry

        Raises
        ------
        ValueError
            If the registry is malformed; the message names the field.
        """
        if not isinstance(d, Mapping):
            raise _bad("top level", f"expected an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"format_version", "base_url", "models", "aliases", "grids"})
        if unknown:
            raise _bad(unknown[0], "unknown key")
        if d.get("format_version") != REGISTRY_FORMAT_VERSION:
            raise _bad(
                "format_version",
                f"unsupported value {d.get('format_version')!r}; "
                f"expected {REGISTRY_FORMAT_VERSION}",
            )
        models = d.get("models", {})
        aliases = d.get("aliases", {})
        if not isinstance(models, Mapping):
            raise _bad("models", f"expected an object, got {models!r}")
        if not isinstance(aliases, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
        ):
            raise _bad("aliases", f"expected an object of strings, got {aliases!r}")
        grids = d.get("grids", {})
        if not isinstance(grids, Mapping):
            raise _bad("grids", f"expected an object, got {grids!r}")
        entries = {k: RegistryEntry.from_dict(v, k) for k, v in models.items()}
        return cls(entries, dict(aliases), d.get("base_url", DEFAULT_BASE_URL), dict(grids))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Registry:
        """Read a ``registry.json`` file.

        Parameters
        ----------
        path : str or os.PathLike
            The file.

        Returns
        -------
        Registry

        Raises
        ------
        ValueError
            If the file is not valid JSON or not a valid registry.
        """
        import json

        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}: not valid JSON: {exc}") from exc
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """Return the content of ``registry.json``.

        Returns
        -------
        dict
        """
        return {
            "format_version": REGISTRY_FORMAT_VERSION,
            "base_url": self.base_url,
            "models": {k: e.to_dict() for k, e in self.models.items()},
            "aliases": dict(self.aliases),
            **({"grids": dict(self.grids)} if self.grids else {}),
        }

    @property
    def names(self) -> list[str]:
        """Sorted full names of all registered models."""
        return sorted(self.models)

    def resolve(self, name: str) -> str:
        """Return the full name registered for ``name``.

        Parameters
        ----------
        name : str
            A full name (``"<name>-v<version>"``), an alias, or a bare model name
            (which resolves to its highest version).

        Returns
        -------
        str
            The key of the model in ``models``.

        Raises
        ------
        ModelNotFoundError
            If nothing matches; the message lists the available names and aliases.
        ValueError
            If ``name`` is empty.
        """
        if isinstance(name, str) and not name.strip():
            raise ValueError(
                f"empty model name {name!r}: give a registered model name (one of "
                f"{', '.join(sorted(self.aliases)) or '(none)'}, {', '.join(self.names)}) or "
                "the path of a model directory"
            )
        if isinstance(name, str):
            if name in self.models:
                return name
            if name in self.aliases:
                return self.aliases[name]
            versions = [e for e in self.models.values() if e.name == name]
            if versions:
                return max(versions, key=lambda e: Version(e.version)).full_name
        available = ", ".join(self.names) or "(none)"
        aliases = ", ".join(f"{a} -> {t}" for a, t in sorted(self.aliases.items())) or "(none)"
        raise ModelNotFoundError(
            f"unknown model {name!r}; available models: {available}; aliases: {aliases}"
        )


def _load_package_registry() -> Registry:
    return Registry.read(DATA_DIR / "registry.json")


#: The registry shipped with the package (``data/registry.json``).
REGISTRY: Registry = _load_package_registry()


def registry_sha256(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 of a file as stored in ``registry.json`` (64 hex digits).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
    """
    return sha256_file(path)


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


def resolve_name(name: str) -> str:
    """Return the full registered name (``"<name>-v<version>"``) of a model.

    Parameters
    ----------
    name : str
        Full name, alias, or bare name (highest version).

    Returns
    -------
    str

    Raises
    ------
    ModelNotFoundError
        If the name is unknown; the message lists the available models.
    ValueError
        If the name is empty.
    """
    return REGISTRY.resolve(name)


def _model_path(name: str | os.PathLike[str]) -> Path | None:
    """The path meant by a model argument, or None if it is a registry name.

    A path is an `os.PathLike` (such as `pathlib.Path`), or a string that contains a path
    separator (``./model``, ``models/hr``), is ``"."`` or ``".."``, or starts with ``~``.
    Any other string is a registry name, even if a file of that name exists. An empty string
    is neither.
    """
    if isinstance(name, os.PathLike):
        path = os.fspath(name)
        if isinstance(path, bytes) or not path:
            raise ValueError(f"invalid model path {name!r}")
        return Path(path).expanduser()
    if not isinstance(name, str):
        raise TypeError(f"a model must be given as a name or a path, got {type(name).__name__}")
    if not name.strip():
        raise ValueError(
            f"empty model name {name!r}: give a registered model name (see `specutils-cinn "
            "models list`) or the path of a model directory, e.g. './my-model'"
        )
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if any(sep in name for sep in separators) or name in (".", "..") or name.startswith("~"):
        return Path(name).expanduser()
    return None


def _not_found_hint(name: str, exc: ModelNotFoundError) -> ModelNotFoundError:
    if os.path.exists(name):
        return ModelNotFoundError(
            f"{exc} (a file or directory {name!r} exists here: registry names never refer to "
            f"local files, give it as a path, e.g. './{name}')"
        )
    return exc


def _load_registered(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progressbar: bool = False,
    device: str | torch.device = "cpu",
) -> CINNModel:
    """Fetch a registered model and load it, checking every file against the registry."""
    from .models import CINNModel

    try:
        full = resolve_name(name)
    except ModelNotFoundError as exc:
        raise _not_found_hint(name, exc) from None
    entry = REGISTRY.models[full]
    path = fetch_model(full, cache_dir=cache_dir, progressbar=progressbar)
    model = CINNModel.load(path, device=device, expected_sha256=entry.expected_sha256)
    if model.digest != entry.digest:  # implied by the file checks; kept as a guard
        raise ModelIntegrityError(
            f"model {full!r} loaded from {path} has digest {model.digest}, the registry "
            f"records {entry.digest}"
        )
    model._registry_name = full
    return model


def load_model(
    name: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progressbar: bool = False,
    device: str | torch.device = "cpu",
) -> CINNModel:
    """Load a model given by its registered name or by a path.

    A path is an `os.PathLike` (such as `pathlib.Path`), or a string that contains a path
    separator (``./model``, ``models/hr``), is ``"."`` or ``".."``, or starts with ``~``; it is
    loaded with `~specutils_cinn.models.CINNModel.load`. Any other string is a registry name
    or alias, even if a file of that name exists: the model is fetched (`fetch_model`: bundled,
    cached or downloaded) and every file is checked against the registry.

    Parameters
    ----------
    name : str or os.PathLike
        A registered name or alias (see `list_models`), or the path of a model directory or
        metadata file.
    cache_dir : str or os.PathLike, optional
        Cache directory for downloads (default: `cache_dir`).
    progressbar : bool, optional
        Show a progress bar while downloading.
    device : str or torch.device, optional
        Device to put the network on.

    Returns
    -------
    `~specutils_cinn.models.CINNModel`
        For a registered model, with ``registry_name`` set.

    Raises
    ------
    ValueError
        If ``name`` is an empty string.
    TypeError
        If ``name`` is neither a string nor a path.
    ModelNotFoundError
        If a name is not registered (a `ValueError`).
    specutils_cinn.models.ModelLoadError
        If the model's files are missing, too large, malformed, do not fit each other, or
        differ from the registry or the metadata (all `ValueError`).
    ModelDownloadError
        If a registered model must be downloaded and cannot be (an `OSError`).
    """
    path = _model_path(name)
    if path is not None:
        from .models import CINNModel

        return CINNModel.load(path, device=device)
    return _load_registered(str(name), cache_dir=cache_dir, progressbar=progressbar, device=device)


def _base_url(entry: RegistryEntry) -> str:
    template = os.environ.get(URL_ENV) or REGISTRY.base_url
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


def _bundled_files(entry: RegistryEntry) -> list[tuple[Path, RegistryFile]] | None:
    if entry.bundled is None:
        return None
    directory = DATA_DIR / "models" / entry.bundled
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
                f"no data for {stall:g} s (specutils_cinn.registry.DOWNLOAD_STALL_TIMEOUT): {exc}"
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

    from .models import MAX_WEIGHTS_BYTES

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
                        f"(specutils_cinn.registry.DOWNLOAD_TIMEOUT) after {received:,} of "
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
                               "of specutils_cinn.models.MAX_WEIGHTS_BYTES")
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
        `specutils_cinn.models.CINNModel.load` accepts both.

    Raises
    ------
    ModelNotFoundError
        If the name is not registered.
    ModelCacheError
        If the cache directory is not a directory or cannot be created or written.
    ModelDownloadError
        If a file is neither cached nor downloadable (for example offline, an HTTP error, a
        stalled, too slow or truncated download).
    specutils_cinn.models.ModelIntegrityError
        If a bundled file or a downloaded one does not match its registered size or SHA-256
        (a download is discarded); a `ValueError`.
    """
    full = resolve_name(name)
    entry = REGISTRY.models[full]
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
        _prepare_cache(cache, origin)
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
    specutils_cinn.models.ModelIntegrityError
        If a file does not match the registry.
    """
    if isinstance(names, str):
        names = [names]
    full_names = REGISTRY.names if names is None else [resolve_name(n) for n in names]
    return [fetch_model(n, cache_dir=cache_dir, progressbar=progressbar) for n in full_names]


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
    for full in REGISTRY.names:
        entry = REGISTRY.models[full]
        aliases = ", ".join(sorted(a for a, t in REGISTRY.aliases.items() if t == full))
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


def make_registry_entry(
    path: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    *,
    description: str | None = None,
    bundled: bool = False,
) -> dict[str, Any]:
    """Build the ``registry.json`` entry for a saved model.

    The model must be published as ``<full_name>.json`` and ``<full_name>.safetensors``
    (and ``<full_name>.emulator.safetensors`` if it has an emulator) with exactly the bytes
    hashed here (``CINNModel.save(..., registry_names=True)``
    writes them); a bundled copy must hold the same bytes as ``metadata.json`` and
    ``weights.safetensors`` in ``data/models/<full_name>/``.

    Parameters
    ----------
    path : str or os.PathLike
        Model directory or metadata file, as accepted by `~specutils_cinn.models.CINNModel.load`.
    weights : str or os.PathLike, optional
        Weights file if it cannot be inferred from ``path``.
    description : str, optional
        Defaults to the metadata's description.
    bundled : bool, optional
        Whether the model ships with the package.

    Returns
    -------
    dict
        ``{"<full_name>": {...}}`` with every file's SHA-256 and size and the model's
        ``digest``, ready to merge into ``registry["models"]``.

    Raises
    ------
    ValueError
        If the metadata is invalid or its ``weights_sha256`` does not match the weights.
    """
    meta_path, weights_path = model_files(path, weights)
    metadata = ModelMetadata.read(meta_path)
    weights_hash = sha256_file(weights_path)
    if metadata.weights_sha256 != weights_hash:
        raise ValueError(
            f"{meta_path}: weights_sha256 is {metadata.weights_sha256}, but {weights_path} "
            f"has SHA-256 {weights_hash}"
        )
    full = metadata.full_name
    emulator = None
    if metadata.emulator is not None:
        emu_path = (
            meta_path.with_name(EMULATOR_FILENAME)
            if meta_path.name == METADATA_FILENAME
            else meta_path.with_name(f"{meta_path.stem}.emulator.safetensors")
        )
        emu_hash = sha256_file(emu_path)
        if metadata.emulator.sha256 != emu_hash:
            raise ValueError(
                f"{meta_path}: emulator.sha256 is {metadata.emulator.sha256}, but {emu_path} "
                f"has SHA-256 {emu_hash}"
            )
        emulator = RegistryFile(
            f"{full}.emulator.safetensors", emu_hash, emu_path.stat().st_size
        )
    entry = RegistryEntry(
        name=metadata.name,
        version=metadata.version,
        metadata=RegistryFile(f"{full}.json", sha256_file(meta_path), meta_path.stat().st_size),
        weights=RegistryFile(
            f"{full}.safetensors", weights_hash, weights_path.stat().st_size
        ),
        description=metadata.description if description is None else description,
        bundled=full if bundled else None,
        emulator=emulator,
    )
    return {full: entry.to_dict()}
