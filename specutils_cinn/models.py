"""Moved to `specutils_cinn.model`: this module re-exports its names for one release.

The model format now lives in the subpackage `specutils_cinn.model`: the metadata schema in
``model/specs.py`` and ``model/metadata.py``, `CINNModel` and `model_files` in
``model/cinn_model.py``, the exceptions in ``model/errors.py``, `validate_model_name` and
`model_digest` in ``model/identity.py``. Import them from `specutils_cinn.model`;
``specutils_cinn.models`` goes away in the next release. ``MAX_METADATA_BYTES`` and
``MAX_WEIGHTS_BYTES`` are still read and set in their new modules when used through this one.
"""

from ._files import load_verified_safetensors
from ._forwarding import forward_settings
from ._hashing import sha256_file
from .model import cinn_model, metadata
from .model.cinn_model import (
    EMULATOR_FILENAME,
    MAX_WEIGHTS_BYTES,
    METADATA_FILENAME,
    WEIGHTS_FILENAME,
    CINNModel,
    model_files,
)
from .model.errors import ModelFileNotFoundError, ModelIntegrityError, ModelLoadError
from .model.identity import model_digest, validate_model_name
from .model.metadata import FORMAT_VERSION, MAX_METADATA_BYTES, ModelMetadata
from .model.specs import EmulatorSpec, ParameterSpec

__all__ = [
    "load_verified_safetensors",
    "EMULATOR_FILENAME",
    "FORMAT_VERSION",
    "MAX_METADATA_BYTES",
    "MAX_WEIGHTS_BYTES",
    "METADATA_FILENAME",
    "WEIGHTS_FILENAME",
    "CINNModel",
    "EmulatorSpec",
    "ModelFileNotFoundError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelMetadata",
    "ParameterSpec",
    "model_digest",
    "model_files",
    "sha256_file",
    "validate_model_name",
]

forward_settings(
    __name__, {"MAX_METADATA_BYTES": metadata, "MAX_WEIGHTS_BYTES": cinn_model}
)
