"""The registry of published models: `Registry`, its entries, and the package's `REGISTRY`.

The registry is the JSON file ``specutils_cinn/data/registry.json`` (format
`REGISTRY_FORMAT_VERSION`), read at import into `REGISTRY`. Each model is published as two
release assets, ``<full_name>.json`` (metadata) and ``<full_name>.safetensors`` (weights), plus
``<full_name>.emulator.safetensors`` for a model with a goodness-of-fit emulator, where
``full_name`` is ``"<name>-v<version>"``. The registry records each file's SHA-256 and size and
the model's `~specutils_cinn.model.model_digest`; `make_registry_entry` writes an entry for a
saved model. Local copies are in `specutils_cinn.model.cache`, downloads in
`specutils_cinn.model.download`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from .._hashing import is_sha256, sha256_file
from .cinn_model import EMULATOR_FILENAME, METADATA_FILENAME, model_files
from .errors import ModelNotFoundError
from .identity import model_digest, validate_model_name
from .metadata import ModelMetadata

__all__ = [
    "DATA_DIR",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "REGISTRY",
    "REGISTRY_FORMAT_VERSION",
    "Registry",
    "RegistryEntry",
    "RegistryFile",
    "make_registry_entry",
    "registry_sha256",
    "resolve_name",
]

#: Directory of the package data; bundled models live in ``DATA_DIR / "models"``.
DATA_DIR: Path = Path(__file__).resolve().parents[1] / "data"
#: Default base URL of the model files; ``{version}`` is the model version.
DEFAULT_BASE_URL: str = (
    "https://github.com/specutils-cinn/specutils-cinn-models/releases/download/v{version}/"
)
#: Model loaded by ``CINNParameterEstimator.from_pretrained()`` with no name: it is shipped inside
#: the package, so it loads without network access.
DEFAULT_MODEL: str = "4most-hr"
#: Version of the ``registry.json`` schema (2: file sizes and model digests).
REGISTRY_FORMAT_VERSION: int = 2


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
        `~specutils_cinn.model.MAX_WEIGHTS_BYTES` only.
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
        """The model's `~specutils_cinn.model.model_digest`, from the files' SHA-256."""
        return model_digest(
            self.metadata.sha256,
            self.weights.sha256,
            None if self.emulator is None else self.emulator.sha256,
        )

    @property
    def expected_sha256(self) -> dict[str, str]:
        """SHA-256 per file role, as `~specutils_cinn.model.CINNModel.load` takes them."""
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
        Model directory or metadata file, as accepted by `~specutils_cinn.model.CINNModel.load`.
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
