"""File safety: bounded reads, atomic writes and verified safetensors files.

The ground floor of the model and emulator file formats (`specutils_cinn.model`,
`specutils_cinn.fit_check`, `specutils_cinn.emulator`). A file is read once and only up to a
size limit; its SHA-256 is checked before its bytes are parsed; a safetensors header is checked
against the tensors expected before anything is built; nothing is unpickled; files are
replaced atomically. Every failure raises a `ModelLoadError` (a `ValueError`) or one of its
subclasses, which `specutils_cinn.model` re-exports.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "MAX_WEIGHTS_BYTES",
    "ModelFileNotFoundError",
    "ModelIntegrityError",
    "ModelLoadError",
    "TensorSpecs",
    "atomic_write",
    "build_on_meta",
    "check_count",
    "check_tensor_specs",
    "load_verified_safetensors",
    "module_specs",
    "parse_safetensors",
    "read_limited",
    "read_verified",
    "safetensors_header",
]

#: Largest weights or emulator file read (bytes); a larger file is refused with a
#: `ModelLoadError` before it is read. The bundled models' weights are about 11 MB.
#: `specutils_cinn.model.MAX_WEIGHTS_BYTES` is the setting of the model files.
MAX_WEIGHTS_BYTES: int = 1 << 30
#: Where the limit of weights and emulator files is set, for messages.
_WEIGHTS_SETTING = "specutils_cinn.model.cinn_model.MAX_WEIGHTS_BYTES"
#: Largest safetensors header (the JSON table of tensors at the start of the file) parsed.
_MAX_HEADER_BYTES = 8 << 20


class ModelLoadError(ValueError):
    """A model cannot be loaded: a file is too large, malformed, or does not fit the metadata.

    Raised by `CINNModel.load` (and `ModelMetadata.read`) for every problem with the files
    of a model; the message names the file. Subclasses: `ModelIntegrityError` (a file's
    SHA-256 differs from the recorded one) and `ModelFileNotFoundError` (a file is missing).
    """


class ModelIntegrityError(ModelLoadError):
    """A model file's SHA-256 (or size) differs from the one recorded for it.

    The record is the metadata's ``weights_sha256`` or ``emulator.sha256``, or for a
    registered model the package registry. The file is corrupt or was modified; the message
    names it with the expected and actual values.
    """


class ModelFileNotFoundError(ModelLoadError, FileNotFoundError):
    """A file of a model is missing (also a `FileNotFoundError`)."""


def read_limited(path: Path, limit: int, what: str, setting: str) -> bytes:
    """Read a whole file of at most ``limit`` bytes, refusing larger ones before reading.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    limit : int
        Largest size read (bytes).
    what : str
        How to name the file in error messages (e.g. ``"metadata file"``).
    setting : str
        Dotted name of the setting that holds ``limit``, for the message (e.g.
        ``"specutils_cinn.model.metadata.MAX_METADATA_BYTES"``).

    Returns
    -------
    bytes

    Raises
    ------
    ModelFileNotFoundError
        If the file does not exist.
    ModelLoadError
        If it is a directory or larger than ``limit``.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise ModelLoadError(
                    f"{what} {path} is {size:,} bytes, more than the limit of {limit:,} bytes "
                    f"({setting}); it was not read"
                )
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise ModelFileNotFoundError(f"model {what} not found: {path}") from None
    except IsADirectoryError:
        raise ModelLoadError(f"model {what} {path} is a directory") from None
    if len(data) > limit:  # the file grew while being read
        raise ModelLoadError(
            f"{what} {path} is more than the limit of {limit:,} bytes "
            f"({setting}); it was not read"
        )
    return data


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file atomically: to a temporary file beside it, then renamed over it.

    The folder is created if needed. A reader sees the old file or the new one, never a part.

    Parameters
    ----------
    path : pathlib.Path
        The file to write.
    data : bytes
        Its new content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_verified_safetensors(
    path: str | os.PathLike[str],
    expected_sha256: str | None,
    what: str = "file",
    *,
    limit: int | None = None,
) -> dict[str, torch.Tensor]:
    """Read a safetensors file, check its SHA-256 first, then parse the same bytes (no pickle).

    Parameters
    ----------
    path : path-like
        The file; at most `MAX_WEIGHTS_BYTES`.
    expected_sha256 : str
        Hex digest the file must have.
    what : str
        How to name the file in error messages (e.g. ``"weights file"``).
    limit : int, optional
        Largest size read (bytes); `MAX_WEIGHTS_BYTES` if None.

    Returns
    -------
    dict of str to `torch.Tensor`

    Raises
    ------
    ModelFileNotFoundError
        If the file does not exist.
    ModelIntegrityError
        If the digest differs (file corrupt or modified).
    ModelLoadError
        If the file is too large or the bytes are not safetensors.
    """
    path = Path(path)
    data = read_verified(path, expected_sha256, what, limit=limit)
    safetensors_header(data, path)
    return parse_safetensors(data, path)


def read_verified(
    path: Path, expected_sha256: str | None, what: str, *, limit: int | None = None
) -> bytes:
    """Read a file (bounded), hash it, and return the bytes if the hash is the expected one.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    expected_sha256 : str or None
        Hex digest the file must have.
    what : str
        How to name the file in error messages.
    limit : int, optional
        Largest size read (bytes); `MAX_WEIGHTS_BYTES` if None.

    Returns
    -------
    bytes

    Raises
    ------
    ModelFileNotFoundError
        If the file does not exist.
    ModelIntegrityError
        If the digest differs.
    ModelLoadError
        If the file is too large.
    """
    # Read once, hash, then parse the same bytes: no window for the file to change.
    limit = MAX_WEIGHTS_BYTES if limit is None else limit
    data = read_limited(path, limit, what, _WEIGHTS_SETTING)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"SHA-256 of {what} {path} does not match its metadata: expected "
            f"{expected_sha256}, actual {actual}; the file is corrupt or was modified"
        )
    return data


def parse_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of safetensors bytes (no pickle).

    Parameters
    ----------
    data : bytes
        The file's content.
    path : pathlib.Path
        The file, for the error message.

    Returns
    -------
    dict of str to `torch.Tensor`

    Raises
    ------
    ModelLoadError
        If the bytes are not valid safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path} is not a valid safetensors file: {exc}") from exc


#: dtypes of the safetensors format: torch dtype and bytes per element.
_ST_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}


#: Names, shapes and dtypes of tensors: ``{name: (shape, dtype)}``.
TensorSpecs = dict[str, tuple[tuple[int, ...], torch.dtype]]


def safetensors_header(data: bytes, path: Path) -> TensorSpecs:
    """Names, shapes and dtypes of the tensors in safetensors bytes, from the header alone.

    The header is an 8-byte little-endian length followed by that many bytes of JSON; it is
    bounded by `_MAX_HEADER_BYTES` and by the data, and every tensor's byte range must lie in
    the data and match its shape and dtype.

    Parameters
    ----------
    data : bytes
        The file's content.
    path : pathlib.Path
        The file, for the error message.

    Returns
    -------
    TensorSpecs

    Raises
    ------
    ModelLoadError
        If the header is malformed.
    """

    def bad(problem: str) -> ModelLoadError:
        return ModelLoadError(f"{path} is not a valid safetensors file: {problem}")

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8 or n > _MAX_HEADER_BYTES:
        raise bad(
            f"header length {n:,} exceeds the file ({len(data):,} bytes) or the limit of "
            f"{_MAX_HEADER_BYTES:,} bytes"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, RecursionError) as exc:
        raise bad(f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    body = len(data) - 8 - n
    out: TensorSpecs = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise bad(f"tensor {name!r}: expected an object, got {info!r}")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _ST_DTYPES:
            raise bad(f"tensor {name!r}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            type(d) is int and d >= 0 for d in shape
        ):
            raise bad(f"tensor {name!r}: invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            raise bad(f"tensor {name!r}: data offsets {offsets!r} outside the {body:,}-byte data")
        torch_dtype, itemsize = _ST_DTYPES[dtype]
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise bad(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} {dtype}")
        out[name] = (tuple(shape), torch_dtype)
    return out


def module_specs(module: torch.nn.Module) -> TensorSpecs:
    """Names, shapes and dtypes of a module's state.

    Parameters
    ----------
    module : torch.nn.Module
        Built on any device (also ``meta``).

    Returns
    -------
    TensorSpecs
    """
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def build_on_meta(builder: Callable[[], torch.nn.Module], where: Path) -> torch.nn.Module:
    """Build a module on the meta device: shapes and dtypes without allocating any weights.

    Parameters
    ----------
    builder : callable
        Called without arguments; returns the module.
    where : pathlib.Path
        The file being checked, for the error message.

    Returns
    -------
    torch.nn.Module
        On the ``meta`` device.

    Raises
    ------
    ModelLoadError
        If the builder raises a `ValueError`, `TypeError` or `KeyError`.
    """
    try:
        with torch.device("meta"):
            return builder()
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{where}: {exc}") from exc


def check_count(value: object, name: str, header: TensorSpecs, where: Path) -> None:
    """Check a count of layers or blocks against the number of tensors in a file.

    Each layer or block adds at least one tensor, so the count cannot exceed their number;
    checked before building, so that a huge count builds nothing.

    Parameters
    ----------
    value : object
        The count (only an int is checked).
    name : str
        Its field, for the error message.
    header : TensorSpecs
        The file's tensors (`safetensors_header`).
    where : pathlib.Path
        The file, for the error message.

    Raises
    ------
    ModelLoadError
        If the count exceeds the number of tensors.
    """
    if type(value) is int and value > len(header):
        raise ModelLoadError(
            f"weights in {where} do not fit the architecture: {name} = {value:,}, but the file "
            f"holds only {len(header)} tensors"
        )


def check_tensor_specs(expected: TensorSpecs, got: TensorSpecs, where: Path) -> None:
    """Check that a file holds exactly the tensors expected, with their shapes and dtypes.

    Parameters
    ----------
    expected : TensorSpecs
        From the architecture (`module_specs` of a module built with `build_on_meta`).
    got : TensorSpecs
        From the file (`safetensors_header`).
    where : pathlib.Path
        The file, for the error message.

    Raises
    ------
    ModelLoadError
        If a tensor is missing or unexpected, or its shape or dtype differs.
    """
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"weights in {where} do not fit the architecture: missing tensors {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = got[key]
        if got_shape != shape:
            raise ModelLoadError(
                f"weights in {where} do not fit the architecture: tensor {key!r} has shape "
                f"{got_shape}, expected {shape}"
            )
        if got_dtype != dtype:
            raise ModelLoadError(
                f"weights in {where} do not fit the architecture: tensor {key!r} has dtype "
                f"{got_dtype}, expected {dtype}"
            )

