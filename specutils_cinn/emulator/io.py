"""Emulators on disk: ``metadata.json`` plus ``weights.safetensors``, SHA-256 checked, no pickle."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write, load_verified_safetensors
from .network import SpectrumEmulator

__all__ = ["EMULATOR_FORMAT", "EMULATOR_FORMAT_VERSION", "load_emulator", "save_emulator"]

#: Value of the ``format`` field of an emulator's metadata.
EMULATOR_FORMAT = "specutils-cinn-emulator"
#: Version of the emulator metadata schema.
EMULATOR_FORMAT_VERSION = 1
_META, _WEIGHTS = "metadata.json", "weights.safetensors"


def _package_version() -> str:
    from .. import __version__

    return str(__version__)


def save_emulator(
    path_dir: str | os.PathLike[str],
    emu: SpectrumEmulator,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write an emulator to a directory: weights first, then metadata with their SHA-256.

    Parameters
    ----------
    path_dir : str or os.PathLike
        Destination directory (created if needed).
    emu : SpectrumEmulator
        The emulator.
    metadata : dict, optional
        JSON-serializable extra metadata (instrument setup name, resolving power, training-grid
        provenance, accuracy, history, ...), stored under ``"metadata"``.

    Returns
    -------
    pathlib.Path
        The metadata file written.

    Raises
    ------
    ValueError
        If ``metadata`` is not JSON-serializable.
    """
    from safetensors.torch import save as save_safetensors

    d = Path(path_dir)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in emu.state_dict().items()}
    data = save_safetensors(tensors, metadata={"format": "pt"})
    doc = {
        "format": EMULATOR_FORMAT,
        "format_version": EMULATOR_FORMAT_VERSION,
        "package_version": _package_version(),
        "architecture": emu.architecture,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "metadata": dict(metadata or {}),
    }
    try:
        text = json.dumps(doc, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"emulator metadata is not JSON-serializable: {exc}") from exc
    atomic_write(d / _WEIGHTS, data)
    atomic_write(d / _META, (text + "\n").encode())
    emu.metadata = dict(doc["metadata"])
    return d / _META


def load_emulator(
    path_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> SpectrumEmulator:
    """Load an emulator written by `save_emulator`, verifying the weights' SHA-256 first.

    Parameters
    ----------
    path_dir : str or os.PathLike
        Directory with ``metadata.json`` and ``weights.safetensors``.
    device : str or torch.device
        Device to put the emulator on.

    Returns
    -------
    SpectrumEmulator
        In eval mode; ``emu.metadata`` holds the stored extra metadata and
        ``emu.metadata["weights_sha256"]`` the verified hash.

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If the metadata is malformed, the SHA-256 differs (file corrupt or modified), or the
        tensors do not fit the architecture.
    """
    from ..devices import resolve_device

    d = Path(path_dir)
    meta_path, weights_path = d / _META, d / _WEIGHTS
    for f in (meta_path, weights_path):
        if not f.is_file():
            raise FileNotFoundError(f"emulator file not found: {f}")
    try:
        doc = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != EMULATOR_FORMAT:
        raise ValueError(f"{meta_path} is not {EMULATOR_FORMAT!r} metadata")
    if doc.get("format_version") != EMULATOR_FORMAT_VERSION:
        raise ValueError(f"{meta_path}: unsupported format_version {doc.get('format_version')!r}")
    tensors = load_verified_safetensors(weights_path, doc.get("weights_sha256"), "weights file")
    emu = SpectrumEmulator.from_architecture(doc.get("architecture", {}))
    ref = emu.state_dict()
    if set(ref) != set(tensors):
        raise ValueError(f"{weights_path}: tensors {sorted(tensors)} do not fit {sorted(ref)}")
    for k, v in ref.items():
        if tensors[k].shape != v.shape or tensors[k].dtype != v.dtype:
            raise ValueError(f"{weights_path}: tensor {k!r} has {tuple(tensors[k].shape)} "
                             f"{tensors[k].dtype}, expected {tuple(v.shape)} {v.dtype}")
    emu.load_state_dict(tensors, strict=True)
    emu.metadata = dict(doc.get("metadata") or {}, weights_sha256=doc["weights_sha256"])
    return emu.eval().to(resolve_device(device))
