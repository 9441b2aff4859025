"""Loading a model given by its registered name or by a path: `load_model`.

A path is an `os.PathLike` (such as `pathlib.Path`), or a string that contains a path
separator (``./model``, ``models/hr``), is ``"."`` or ``".."``, or starts with ``~``. Any other
string is a registry name or alias: the model is fetched (bundled, cached or downloaded, see
`~specutils_cinn.model.fetch_model`) and every file is checked against the registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import download as _download
from . import registry as _registry
from .cinn_model import CINNModel
from .errors import ModelIntegrityError, ModelNotFoundError
from .registry import resolve_name

if TYPE_CHECKING:
    import torch

__all__ = ["load_model"]


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
    try:
        full = resolve_name(name)
    except ModelNotFoundError as exc:
        raise _not_found_hint(name, exc) from None
    entry = _registry.REGISTRY.models[full]
    path = _download.fetch_model(full, cache_dir=cache_dir, progressbar=progressbar)
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
    loaded with `~specutils_cinn.model.CINNModel.load`. Any other string is a registry name
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
    `~specutils_cinn.model.CINNModel`
        For a registered model, with ``registry_name`` set.

    Raises
    ------
    ValueError
        If ``name`` is an empty string.
    TypeError
        If ``name`` is neither a string nor a path.
    ModelNotFoundError
        If a name is not registered (a `ValueError`).
    specutils_cinn.model.ModelLoadError
        If the model's files are missing, too large, malformed, do not fit each other, or
        differ from the registry or the metadata (all `ValueError`).
    ModelDownloadError
        If a registered model must be downloaded and cannot be (an `OSError`).
    """
    path = _model_path(name)
    if path is not None:
        return CINNModel.load(path, device=device)
    return _load_registered(str(name), cache_dir=cache_dir, progressbar=progressbar, device=device)
