"""A trained model in memory and on disk: `CINNModel` and the files it is made of.

A model on disk is either a directory holding ``metadata.json`` and ``weights.safetensors``
(and ``emulator.safetensors`` for a model with an emulator), or files ``<full_name>.json``,
``<full_name>.safetensors`` (and ``<full_name>.emulator.safetensors``) as distributed through
the model registry (see `specutils_cinn.model.fetch_model`). The weights are only read after
their SHA-256 matches the hash recorded in the metadata, and never through pickle.

Loading is bounded and checked before anything large is allocated: ``metadata.json`` may hold
at most `~specutils_cinn.model.MAX_METADATA_BYTES`, a weights or emulator file at most
`MAX_WEIGHTS_BYTES`, and the tensor names, shapes and dtypes listed in the safetensors header
must fit the architecture of the metadata before the network is built. A model's identity is
its `~specutils_cinn.model.model_digest`, which covers the metadata, the weights and the
emulator. Every failure raises a `~specutils_cinn.model.ModelLoadError` (a `ValueError`) or
one of its subclasses.

This module is slightly longer than the package's usual ~600 lines: `CINNModel` is one class
(build, load with integrity checks, save); a third of it is documentation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import _files
from .._fields import json_copy
from .._files import (
    ModelFileNotFoundError,
    ModelIntegrityError,
    ModelLoadError,
    atomic_write,
    build_on_meta,
    check_count,
    check_tensor_specs,
    module_specs,
    parse_safetensors,
    read_limited,
    read_verified,
    safetensors_header,
)
from .._hashing import is_sha256
from ..wavelength_grid import pixel_map
from . import metadata as _metadata
from ._summary import summary_text
from .identity import model_digest
from .metadata import ModelMetadata
from .specs import EmulatorSpec

if TYPE_CHECKING:
    from ..fit_check import ModelEmulator

__all__ = [
    "EMULATOR_FILENAME",
    "MAX_WEIGHTS_BYTES",
    "METADATA_FILENAME",
    "WEIGHTS_FILENAME",
    "CINNModel",
    "model_files",
]

#: Name of the metadata file inside a model directory.
METADATA_FILENAME: str = "metadata.json"
#: Name of the weights file inside a model directory.
WEIGHTS_FILENAME: str = "weights.safetensors"
#: Name of the optional emulator file inside a model directory (registry asset:
#: ``<full_name>.emulator.safetensors``).
EMULATOR_FILENAME: str = "emulator.safetensors"
#: Largest weights or emulator file read (bytes); a larger file is refused with a
#: `~specutils_cinn.model.ModelLoadError` before it is read. The bundled models' weights are
#: about 11 MB.
MAX_WEIGHTS_BYTES: int = _files.MAX_WEIGHTS_BYTES


def model_files(
    path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Return the metadata and weights files of a model on disk.

    Parameters
    ----------
    path : str or os.PathLike
        A model directory (``metadata.json`` + ``weights.safetensors``), a metadata file
        (``metadata.json`` or ``<stem>.json``, whose weights are ``weights.safetensors``
        or ``<stem>.safetensors`` beside it), or a weights file (the reverse).
    weights : str or os.PathLike, optional
        The weights file; if given, ``path`` is the metadata file.

    Returns
    -------
    tuple of pathlib.Path
        ``(metadata_file, weights_file)``, both existing.

    Raises
    ------
    ModelFileNotFoundError
        If a file is missing (a `FileNotFoundError` too).
    ModelLoadError
        If ``path`` is empty, or neither a directory nor a ``.json``/``.safetensors`` file.
    """
    if isinstance(path, str) and not path.strip():
        raise ModelLoadError("empty model path: give a model directory or metadata file")
    p = Path(path)
    if weights is not None:
        meta, wts = p, Path(weights)
    elif p.is_dir():
        meta, wts = p / METADATA_FILENAME, p / WEIGHTS_FILENAME
    elif p.suffix == ".json":
        meta = p
        wts = (
            p.with_name(WEIGHTS_FILENAME)
            if p.name == METADATA_FILENAME
            else p.with_suffix(".safetensors")
        )
    elif p.suffix == ".safetensors":
        wts = p
        meta = (
            p.with_name(METADATA_FILENAME) if p.name == WEIGHTS_FILENAME else p.with_suffix(".json")
        )
    elif not p.exists():
        raise ModelFileNotFoundError(f"no model at {p}")
    else:
        raise ModelLoadError(
            f"cannot load a model from {p}: give a model directory (with {METADATA_FILENAME} and "
            f"{WEIGHTS_FILENAME}), a metadata .json file, or metadata and weights files"
        )
    for f, what in ((meta, "metadata"), (wts, "weights")):
        if not f.is_file():
            raise ModelFileNotFoundError(f"model {what} file not found: {f}")
    return meta, wts


class CINNModel:
    """A trained conditional INN together with its metadata.

    Parameters
    ----------
    metadata : ModelMetadata
        The model's metadata; its ``architecture`` must be the network's.
    network : torch.nn.Module
        A `specutils_cinn.flows.ConditionalINN` (anything with an ``architecture`` dict).
    sha256 : str or None, optional
        SHA-256 of the weights file the network was loaded from, if any.
    source : pathlib.Path or None, optional
        Where the model was loaded from, if anywhere.
    emulator : ModelEmulator or None, optional
        The emulator of ``metadata.emulator``, if already in memory (`load` reads it lazily).

    Raises
    ------
    TypeError
        If ``metadata`` or ``network`` has the wrong type.
    ValueError
        If the network's architecture differs from the metadata's.

    Examples
    --------
    >>> from specutils_cinn.model import CINNModel
    >>> model = CINNModel.load("path/to/model")  # doctest: +SKIP
    >>> model.metadata.parameter_names  # doctest: +SKIP
    ['teff', 'logg', 'fe_h']
    """

    def __init__(
        self,
        metadata: ModelMetadata,
        network: torch.nn.Module,
        *,
        sha256: str | None = None,
        source: str | os.PathLike[str] | None = None,
        emulator: ModelEmulator | None = None,
    ) -> None:
        if not isinstance(metadata, ModelMetadata):
            raise TypeError(f"metadata must be a ModelMetadata, got {type(metadata).__name__}")
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        arch = getattr(network, "architecture", None)
        if arch is not None and json_copy(arch, "architecture") != metadata.architecture:
            raise ValueError(
                "the network's architecture differs from metadata.architecture: "
                f"{arch!r} != {metadata.architecture!r}"
            )
        self._metadata = metadata
        self._network = network
        self._sha256 = sha256
        self._source = None if source is None else Path(source)
        if emulator is not None and metadata.emulator is None:
            raise ValueError("an emulator was given but metadata.emulator is None")
        self._emulator = emulator
        self._emulator_file: Path | None = None
        self._digest: str | None = None
        self._registry_name: str | None = None

    @property
    def metadata(self) -> ModelMetadata:
        """The model's `ModelMetadata`."""
        return self._metadata

    @property
    def network(self) -> torch.nn.Module:
        """The `~specutils_cinn.flows.ConditionalINN` (in eval mode after `load`)."""
        return self._network

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the weights file loaded or last saved (None for an unsaved model)."""
        return self._sha256

    @property
    def source(self) -> Path | None:
        """Path given to `load` (None if the model was built in memory)."""
        return self._source

    @property
    def digest(self) -> str | None:
        """`model_digest` of the files loaded or last saved, None for an unsaved model.

        It covers the metadata, the weights and the emulator: two models with the same
        digest have byte-identical files. ``predict`` records it as ``MODELDIG``.
        """
        return self._digest

    @property
    def registry_name(self) -> str | None:
        """Registered full name the files were verified against, or None.

        Set when the model was loaded through the registry
        (``CINNParameterEstimator.from_pretrained`` with a model name): the SHA-256 of every
        file then matched the registry entry. None for a model loaded from a path or built in
        memory, whatever name its metadata gives.
        """
        return self._registry_name

    @property
    def emulator(self) -> ModelEmulator | None:
        """The model's spectrum emulator for the goodness-of-fit check, or None.

        Read on first access from the emulator file beside the weights, after its SHA-256
        has been checked against ``metadata.emulator.sha256`` (never through pickle).

        Raises
        ------
        ModelFileNotFoundError
            If the metadata names an emulator but its file is missing.
        ModelIntegrityError
            If the file's SHA-256 differs from the metadata.
        ModelLoadError
            If the file is larger than `MAX_WEIGHTS_BYTES` or its content does not fit.
        """
        if self._emulator is None and self._metadata.emulator is not None:
            if self._emulator_file is None:
                raise ValueError("metadata.emulator is set but no emulator is attached or saved")
            from ..fit_check import ModelEmulator, macroturbulence_range

            self._emulator = ModelEmulator.load(
                self._emulator_file, self._metadata.emulator, self._metadata.grid,
                limit=MAX_WEIGHTS_BYTES, vmacro_range=macroturbulence_range(self._metadata),
                normalization=self._metadata.normalization,
            )
        return self._emulator

    def attach_emulator(
        self,
        emulator: torch.nn.Module,
        error_floor: Any,
        *,
        chi2_threshold: float,
        label_defaults: Mapping[str, float] | None = None,
        exclude: Sequence[tuple[float, float]] = (),
        continuum_degree: int = 3,
        info: Mapping[str, Any] | None = None,
        trim: bool = True,
        noise_window: int = 0,
        floor_teff: Sequence[float] | None = None,
        renormalize: bool = False,
    ) -> CINNModel:
        """Return a copy of the model with a spectrum emulator for the goodness-of-fit check.

        Parameters
        ----------
        emulator : `~specutils_cinn.emulator.SpectrumEmulator`
            Emulator of the model's spectra (after the instrument's LSF, before rotation).
        error_floor : float or array-like
            Its error per pixel in continuum units, one value or one per emulator pixel
            (before trimming), e.g. the RMS difference from held-out synthetic spectra; with
            ``floor_teff``, one row of them per Teff node (shape ``(k, npix)``).
        chi2_threshold : float
            Default ``POOR_FIT`` threshold of the reduced chi-square.
        label_defaults, exclude, continuum_degree, info, noise_window, renormalize
            See `EmulatorSpec`.
        trim : bool, optional
            Keep only the emulator pixels that are model pixels
            (`~specutils_cinn.fit_check.trim_emulator`).
        floor_teff : sequence of float, optional
            Strictly increasing Teff nodes of the rows of ``error_floor``: a Teff-dependent
            floor (`~specutils_cinn.fit_check.ModelEmulator`). None: one floor.

        Returns
        -------
        CINNModel
            Sharing the network; unsaved (``metadata.emulator.sha256`` is None until `save`).
        """
        from ..fit_check import ModelEmulator, macroturbulence_range, trim_emulator

        floor = np.asarray(error_floor, dtype=np.float32)
        if floor_teff is None:
            floor = floor.reshape(-1)
        if trim:
            if floor.size > 1:
                if floor.shape[-1] != emulator.grid.npix:
                    raise ValueError(
                        f"error_floor has {floor.shape[-1]} values per row, the emulator "
                        f"{emulator.grid.npix} pixels"
                    )
                floor = floor[..., pixel_map(self._metadata.grid, emulator.grid)[1]]
            emulator = trim_emulator(emulator, self._metadata.grid)
        spec = EmulatorSpec(
            architecture=emulator.architecture,
            chi2_threshold=chi2_threshold,
            label_defaults=dict(label_defaults or {}),
            exclude=tuple(exclude),
            continuum_degree=continuum_degree,
            info=dict(info or {}),
            noise_window=noise_window,
            renormalize=renormalize,
        )
        metadata = self._metadata.replace(emulator=spec)
        attached = ModelEmulator(spec, emulator, floor, metadata.grid,
                                 vmacro_range=macroturbulence_range(metadata),
                                 floor_teff=floor_teff, normalization=metadata.normalization)
        return CINNModel(metadata, self._network, sha256=self._sha256, emulator=attached)

    @property
    def device(self) -> torch.device:
        """Device of the network's parameters."""
        for t in self._network.parameters():
            return t.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> CINNModel:
        """Move the network to ``device`` in place.

        Parameters
        ----------
        device : str or torch.device
            Target device, e.g. ``"cuda"``.

        Returns
        -------
        CINNModel
            ``self``.
        """
        self._network.to(device)
        return self

    def summary(self) -> str:
        """A human-readable description: parameters, grid, provenance and training.

        Returns
        -------
        str
            Several lines of text, as printed by ``specutils-cinn models info``.
        """
        return summary_text(self)

    def __repr__(self) -> str:
        where = f", source={str(self._source)!r}" if self._source is not None else ""
        return (
            f"<CINNModel {self._metadata.full_name}: {self._metadata.parameter_names}, "
            f"{self._metadata.grid.npix} pixels{where}>"
        )

    @classmethod
    def build(cls, metadata: ModelMetadata) -> CINNModel:
        """Create a model with a freshly initialized (untrained) network.

        Parameters
        ----------
        metadata : ModelMetadata
            Metadata whose ``architecture`` is passed to `specutils_cinn.flows.build_cinn`.

        Returns
        -------
        CINNModel
        """
        from ..flows import build_cinn

        return cls(metadata, build_cinn(metadata.architecture))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        weights: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        expected_sha256: Mapping[str, str] | None = None,
    ) -> CINNModel:
        """Load a model, verifying every file before it is parsed.

        The metadata (at most `~specutils_cinn.model.MAX_METADATA_BYTES`) is read once, hashed
        and validated; the weights (at most `MAX_WEIGHTS_BYTES`) are read once and their SHA-256
        compared with the metadata's ``weights_sha256``; the tensor names, shapes and dtypes in the
        safetensors header are compared with the architecture before the network is built,
        so that metadata and weights that do not fit never allocate a network. Nothing is
        unpickled. The emulator, if any, is read and verified on first use.

        Parameters
        ----------
        path : str or os.PathLike
            A model directory (``metadata.json`` + ``weights.safetensors``), a
            metadata file (``metadata.json`` or ``<full_name>.json``, the weights
            being ``weights.safetensors`` or ``<full_name>.safetensors`` beside it), or,
            with ``weights``, the metadata file of a pair. An empty string is refused.
        weights : str or os.PathLike, optional
            The weights file, when it cannot be inferred from ``path``.
        device : str or torch.device, optional
            Device to put the network on.
        expected_sha256 : mapping of str to str, optional
            SHA-256 the files must have, with keys ``"metadata"``, ``"weights"`` and, for a
            model with an emulator, ``"emulator"`` (for example from the registry). Without
            it the files are only checked against each other (the metadata records the
            weights' and the emulator's SHA-256) and `digest` tells which model was loaded.

        Returns
        -------
        CINNModel
            With the network in eval mode, and `digest` set.

        Raises
        ------
        ModelFileNotFoundError
            If a file is missing (a `FileNotFoundError` too).
        ModelIntegrityError
            If a file's SHA-256 differs from ``expected_sha256`` or the weights' from
            ``weights_sha256`` (the file and both hashes are named).
        ModelLoadError
            If a file is too large, the metadata is invalid, the weights file is not valid
            safetensors, or its tensors do not fit the architecture. All three are
            `ValueError`.
        """
        meta_path, weights_path = model_files(path, weights)
        expected = _expected_hashes(expected_sha256)
        meta_bytes = read_limited(
            meta_path, _metadata.MAX_METADATA_BYTES, "metadata file",
            "specutils_cinn.model.metadata.MAX_METADATA_BYTES",
        )
        meta_sha = hashlib.sha256(meta_bytes).hexdigest()
        if expected is not None:
            _check_hash(meta_path, "metadata file", expected["metadata"], meta_sha, "registry")
        metadata = ModelMetadata._parse_file(meta_bytes, meta_path)
        weights_sha = metadata.weights_sha256
        if weights_sha is None:
            raise ModelLoadError(f"{meta_path}: model metadata field 'weights_sha256' is missing")
        emulator_sha = None
        if metadata.emulator is not None:
            emulator_sha = metadata.emulator.sha256
            if emulator_sha is None:
                raise ModelLoadError(
                    f"{meta_path}: model metadata field 'emulator.sha256' is missing"
                )
        if expected is not None:
            _check_hash(
                weights_path, "weights file", expected["weights"], weights_sha, "registry",
                actual_from=f"weights_sha256 in {meta_path}",
            )
            if expected.get("emulator") != emulator_sha:
                raise ModelIntegrityError(
                    f"{meta_path}: the registry expects "
                    + (f"an emulator with SHA-256 {expected['emulator']}"
                       if expected.get("emulator") else "no emulator")
                    + ", the metadata records "
                    + (f"one with SHA-256 {emulator_sha}" if emulator_sha else "none")
                )
        data = read_verified(weights_path, weights_sha, "weights file", limit=MAX_WEIGHTS_BYTES)

        from ..flows import build_cinn

        arch = metadata.architecture
        header = safetensors_header(data, weights_path)
        for key in ("n_blocks", "subnet_layers"):
            check_count(arch[key], f"architecture.{key}", header, weights_path)
        reference = build_on_meta(lambda: build_cinn(arch), meta_path)
        check_tensor_specs(module_specs(reference), header, weights_path)
        del reference
        try:
            network = build_cinn(arch)
            network.load_state_dict(parse_safetensors(data, weights_path), strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"cannot load the weights {weights_path}: {exc}") from exc
        del data
        network.eval()
        network.to(device)
        model = cls(metadata, network, sha256=weights_sha, source=path)
        model._digest = model_digest(meta_sha, weights_sha, emulator_sha)
        if metadata.emulator is not None:
            model._emulator_file = _emulator_path(meta_path)
            if not model._emulator_file.is_file():
                raise ModelFileNotFoundError(
                    f"model emulator file not found: {model._emulator_file}"
                )
        return model

    def save(self, directory: str | os.PathLike[str], *, registry_names: bool = False) -> Path:
        """Write the weights, then the metadata with the weights' hash.

        Both files are written atomically. ``self.metadata``, `sha256` and `digest` are
        updated to the written state.

        Parameters
        ----------
        directory : str or os.PathLike
            Destination directory, created if needed.
        registry_names : bool, optional
            If True, name the files ``<full_name>.json`` and ``<full_name>.safetensors``
            (registry release assets) instead of ``metadata.json`` and
            ``weights.safetensors``.

        Returns
        -------
        pathlib.Path
            The metadata file written; `load` accepts it.

        Raises
        ------
        ValueError
            If the metadata would be larger than `~specutils_cinn.model.MAX_METADATA_BYTES`
            (`load` would refuse it); nothing is written.
        """
        from safetensors.torch import save as save_safetensors

        directory = Path(directory)
        if registry_names:
            stem = self._metadata.full_name
            meta_path, weights_path = directory / f"{stem}.json", directory / f"{stem}.safetensors"
        else:
            meta_path, weights_path = directory / METADATA_FILENAME, directory / WEIGHTS_FILENAME
        tensors = {
            k: v.detach().to("cpu").contiguous().clone()
            for k, v in self._network.state_dict().items()
        }
        data = save_safetensors(tensors, metadata={"format": "pt"})
        digest = hashlib.sha256(data).hexdigest()
        metadata = self._metadata.replace(weights_sha256=digest)
        emulator = self.emulator
        emu_data = None
        if emulator is not None:
            emu_data = save_safetensors(emulator.state_tensors(), metadata={"format": "pt"})
            spec = metadata.emulator.replace(sha256=hashlib.sha256(emu_data).hexdigest())
            metadata = metadata.replace(emulator=spec)
        meta_bytes = metadata.to_json().encode("utf-8")
        limit = _metadata.MAX_METADATA_BYTES
        if len(meta_bytes) > limit:
            raise ValueError(
                f"the metadata of {metadata.full_name} is {len(meta_bytes):,} bytes, more than "
                f"MAX_METADATA_BYTES = {limit:,}: the model could not be loaded "
                "(shorten metadata.training)"
            )
        atomic_write(weights_path, data)
        if emu_data is not None:
            atomic_write(_emulator_path(meta_path), emu_data)
            emulator.spec = metadata.emulator
            self._emulator_file = _emulator_path(meta_path)
        atomic_write(meta_path, meta_bytes)
        self._metadata = metadata
        self._sha256 = digest
        self._digest = model_digest(
            hashlib.sha256(meta_bytes).hexdigest(),
            digest,
            None if metadata.emulator is None else metadata.emulator.sha256,
        )
        return meta_path


def _emulator_path(meta_path: Path) -> Path:
    """The emulator file beside a metadata file (directory or registry layout)."""
    if meta_path.name == METADATA_FILENAME:
        return meta_path.with_name(EMULATOR_FILENAME)
    return meta_path.with_name(f"{meta_path.stem}.emulator.safetensors")


def _expected_hashes(expected: Mapping[str, str] | None) -> dict[str, str] | None:
    if expected is None:
        return None
    if not isinstance(expected, Mapping):
        raise TypeError(f"expected_sha256 must be a mapping, got {type(expected).__name__}")
    unknown = sorted(set(expected) - {"metadata", "weights", "emulator"})
    missing = sorted({"metadata", "weights"} - set(expected))
    if unknown or missing:
        raise ValueError(
            f"expected_sha256 needs the keys 'metadata' and 'weights' (and 'emulator' for a "
            f"model with one); missing {missing}, unknown {unknown}"
        )
    out = {}
    for key, sha in expected.items():
        if sha is None and key == "emulator":
            continue
        if not is_sha256(sha):
            raise ValueError(f"expected_sha256[{key!r}]: not 64 lower-case hex digits: {sha!r}")
        out[key] = sha
    return out


def _check_hash(
    path: Path, what: str, expected: str, actual: str, source: str, actual_from: str = ""
) -> None:
    if expected != actual:
        where = f" ({actual_from})" if actual_from else ""
        raise ModelIntegrityError(
            f"{what} {path} does not match the {source}: expected SHA-256 {expected}, "
            f"actual {actual}{where}; the file is corrupt or was modified"
        )


