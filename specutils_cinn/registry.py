"""Registry of published models: names, versions, hashes, download and cache.

The registry is the JSON file ``specutils_cinn/data/registry.json``, read at import
into `REGISTRY`. Each model is published as two release assets,
``<full_name>.json`` (metadata) and ``<full_name>.safetensors`` (weights), plus
``<full_name>.emulator.safetensors`` for a model with a goodness-of-fit emulator, where
``full_name`` is ``"<name>-v<version>"``. `fetch_model` returns a model shipped
inside the package when its files match the registry hashes, and otherwise
downloads the files with ``pooch`` into a local cache, verifying their SHA-256.

Environment variables, read at call time:

``SPECUTILS_CINN_CACHE``
    Cache directory (default ``pooch.os_cache("specutils-cinn")``).
``SPECUTILS_CINN_MODELS_URL``
    Base URL of the model files (default `DEFAULT_BASE_URL`); ``{version}``,
    ``{name}`` and ``{full_name}`` are replaced by the model's values.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pooch
from astropy.table import Table
from packaging.version import Version

from .models import (
    EMULATOR_FILENAME,
    METADATA_FILENAME,
    WEIGHTS_FILENAME,
    ModelMetadata,
    model_files,
    sha256_file,
    validate_model_name,
)

__all__ = [
    "CACHE_ENV",
    "DATA_DIR",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DOWNLOAD_RETRIES",
    "REGISTRY",
    "REGISTRY_FORMAT_VERSION",
    "URL_ENV",
    "ModelDownloadError",
    "ModelNotFoundError",
    "Registry",
    "RegistryEntry",
    "RegistryFile",
    "cache_dir",
    "download_models",
    "fetch_model",
    "list_models",
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
#: Version of the ``registry.json`` schema.
#: Model loaded by ``CINNParameterEstimator.from_pretrained()`` with no name: it is shipped inside
#: the package, so it loads without network access.
DEFAULT_MODEL: str = "4most-hr"
REGISTRY_FORMAT_VERSION: int = 1
#: How many times a failed download is retried (pooch waits 1 s before a retry).
DOWNLOAD_RETRIES: int = 1

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CACHE_PROJECT = "specutils-cinn"


class ModelNotFoundError(ValueError):
    """A model name or alias is not in the registry; the message lists the available ones."""


class ModelDownloadError(OSError):
    """A model file could not be downloaded and no valid copy is cached.

    The message names the cache directory and how to fill it on a machine with
    network access (``specutils-cinn models download NAME``) or how to point
    ``SPECUTILS_CINN_CACHE`` at a pre-filled directory.
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
    """

    filename: str
    sha256: str

    def __post_init__(self) -> None:
        validate_model_name(self.filename, "registry file name")
        if not isinstance(self.sha256, str) or not _SHA256_RE.match(self.sha256):
            raise ValueError(f"invalid SHA-256 {self.sha256!r} for {self.filename!r}")


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

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as stored in ``registry.json``.

        Returns
        -------
        dict
        """
        files = {
            "metadata": {"filename": self.metadata.filename, "sha256": self.metadata.sha256},
            "weights": {"filename": self.weights.filename, "sha256": self.weights.sha256},
        }
        if self.emulator is not None:
            files["emulator"] = {"filename": self.emulator.filename, "sha256": self.emulator.sha256}
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
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
            If the entry is malformed; the message names the model and field.
        """
        where = f"models[{key!r}]"
        if not isinstance(d, Mapping):
            raise _bad(where, f"expected an object, got {d!r}")
        allowed = {"name", "version", "description", "files", "bundled"}
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
                try:
                    parsed[kind] = RegistryFile(f["filename"], f["sha256"])
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

    Raises
    ------
    ValueError
        If a key does not match its entry or an alias points nowhere.
    """

    models: dict[str, RegistryEntry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    base_url: str = DEFAULT_BASE_URL

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
            ``{"format_version": 1, "base_url": ..., "models": {...}, "aliases": {...}}``.

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
        unknown = sorted(set(d) - {"format_version", "base_url", "models", "aliases"})
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
        entries = {k: RegistryEntry.from_dict(v, k) for k, v in models.items()}
        return cls(entries, dict(aliases), d.get("base_url", DEFAULT_BASE_URL))

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
        """
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
    """
    return _default_cache_dir()


def _default_cache_dir() -> Path:
    pup = pooch.create(path=pooch.os_cache(_CACHE_PROJECT), base_url="", env=CACHE_ENV)
    return pup.abspath


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
    """
    return REGISTRY.resolve(name)


def _base_url(entry: RegistryEntry) -> str:
    template = os.environ.get(URL_ENV) or REGISTRY.base_url
    try:
        url = template.format(version=entry.version, name=entry.name, full_name=entry.full_name)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"bad model base URL {template!r} (from {URL_ENV} or the registry): only "
            "{version}, {name} and {full_name} may be substituted"
        ) from exc
    return url.rstrip("/") + "/"


def _bundled_dir(entry: RegistryEntry) -> Path | None:
    """The bundled copy of a model, if shipped and identical to the registry's files."""
    if entry.bundled is None:
        return None
    directory = DATA_DIR / "models" / entry.bundled
    pairs = [
        (directory / METADATA_FILENAME, entry.metadata.sha256),
        (directory / WEIGHTS_FILENAME, entry.weights.sha256),
    ]
    if entry.emulator is not None:
        pairs.append((directory / EMULATOR_FILENAME, entry.emulator.sha256))
    for path, expected in pairs:
        if not path.is_file():
            log.debug("bundled model file %s is missing", path)
            return None
        if sha256_file(path) != expected:
            log.debug("bundled model file %s does not match the registry hash", path)
            return None
    return directory


def _is_cached(entry: RegistryEntry, directory: Path) -> bool:
    for f in entry.files:
        path = directory / f.filename
        if not path.is_file() or sha256_file(path) != f.sha256:
            return False
    return True


def fetch_model(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progressbar: bool = False,
) -> Path:
    """Return the local path of a registered model, downloading it if needed.

    A copy bundled with the package is used when both its files match the
    registry's SHA-256 (no network access). Otherwise both files are fetched with
    ``pooch`` into the cache: a cached file with the right hash is used as is, a
    missing or corrupt one is (re-)downloaded and verified.

    Parameters
    ----------
    name : str
        Full name, alias or bare name of the model.
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
    ModelDownloadError
        If a file is neither cached nor downloadable (for example offline).
    ValueError
        If a downloaded file does not match its registered SHA-256 (the download is
        discarded).
    """
    import requests

    full = resolve_name(name)
    entry = REGISTRY.models[full]
    bundled = _bundled_dir(entry)
    if bundled is not None:
        return bundled

    base_url = _base_url(entry)
    registry = {f.filename: f"sha256:{f.sha256}" for f in entry.files}
    if cache_dir is None:
        pup = pooch.create(
            path=pooch.os_cache(_CACHE_PROJECT),
            base_url=base_url,
            registry=registry,
            env=CACHE_ENV,
            retry_if_failed=DOWNLOAD_RETRIES,
        )
    else:
        pup = pooch.create(
            path=Path(cache_dir),
            base_url=base_url,
            registry=registry,
            retry_if_failed=DOWNLOAD_RETRIES,
        )
    downloader = (
        pooch.HTTPDownloader(progressbar=progressbar)
        if base_url.startswith(("http://", "https://"))
        else None
    )
    cache = pup.abspath
    for f in entry.files:
        url = pup.get_url(f.filename)
        try:
            pup.fetch(f.filename, downloader=downloader, progressbar=progressbar)
        except requests.exceptions.RequestException as exc:
            raise ModelDownloadError(
                f"could not download {f.filename} of model {full!r} from {url} ({exc}), and the "
                f"cache directory {cache} holds no valid copy of it. On a machine with network "
                f"access run `specutils-cinn models download {full}` and copy its cache "
                f"directory here, or set {CACHE_ENV} to a directory that already holds "
                f"{entry.metadata.filename} and {entry.weights.filename}."
            ) from exc
        except ValueError as exc:
            if "hash" not in str(exc).lower():
                raise
            raise ValueError(
                f"the file {f.filename} of model {full!r} downloaded from {url} does not match "
                f"the registry (the download was discarded): {exc}"
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
        ``cached`` (both files are in the cache with the right hashes).
    """
    directory = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
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
        ``{"<full_name>": {...}}``, ready to merge into ``registry["models"]``.

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
        emulator = RegistryFile(f"{full}.emulator.safetensors", emu_hash)
    entry = RegistryEntry(
        name=metadata.name,
        version=metadata.version,
        metadata=RegistryFile(f"{full}.json", sha256_file(meta_path)),
        weights=RegistryFile(f"{full}.safetensors", weights_hash),
        description=metadata.description if description is None else description,
        bundled=full if bundled else None,
        emulator=emulator,
    )
    return {full: entry.to_dict()}
