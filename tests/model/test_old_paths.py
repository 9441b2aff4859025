"""The modules that moved into specutils_cinn.model keep working for one release."""

from __future__ import annotations

import importlib

import pytest

import specutils_cinn.model as model
from specutils_cinn.model import cinn_model, download, metadata

OLD_NAMES = {
    "specutils_cinn.models": [
        "load_verified_safetensors", "EMULATOR_FILENAME", "FORMAT_VERSION", "MAX_METADATA_BYTES",
        "MAX_WEIGHTS_BYTES", "METADATA_FILENAME", "WEIGHTS_FILENAME", "CINNModel", "EmulatorSpec",
        "ModelFileNotFoundError", "ModelIntegrityError", "ModelLoadError", "ModelMetadata",
        "ParameterSpec", "model_digest", "model_files", "sha256_file", "validate_model_name",
    ],
    "specutils_cinn.registry": [
        "CACHE_ENV", "DATA_DIR", "DEFAULT_BASE_URL", "DEFAULT_MODEL", "DOWNLOAD_RETRIES",
        "DOWNLOAD_STALL_TIMEOUT", "DOWNLOAD_TIMEOUT", "REGISTRY", "REGISTRY_FORMAT_VERSION",
        "URL_ENV", "ModelCacheError", "ModelDownloadError", "ModelNotFoundError", "Registry",
        "RegistryEntry", "RegistryFile", "cache_dir", "download_file", "download_models",
        "fetch_model", "list_models", "load_model", "make_registry_entry", "registry_sha256",
        "resolve_name",
    ],
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_modules_reexport_every_public_name(old):
    mod = importlib.import_module(old)
    assert sorted(mod.__all__) == sorted(OLD_NAMES[old])
    for name in OLD_NAMES[old]:
        assert getattr(mod, name) is getattr(model, name), name
    assert "specutils_cinn.model" in mod.__doc__ and "next release" in mod.__doc__


def test_package_exports_every_name_of_its_modules():
    for sub in (cinn_model, download, metadata, model.cache, model.errors, model.identity,
                model.loading, model.registry, model.specs):
        for name in sub.__all__:
            assert name in model.__all__ and getattr(model, name) is getattr(sub, name), name
    assert len(model.__all__) == len(set(model.__all__))


@pytest.mark.parametrize(("path", "name", "home"), [
    ("specutils_cinn.registry", "DOWNLOAD_TIMEOUT", download),
    ("specutils_cinn.registry", "DOWNLOAD_STALL_TIMEOUT", download),
    ("specutils_cinn.registry", "DOWNLOAD_RETRIES", download),
    ("specutils_cinn.model", "DOWNLOAD_TIMEOUT", download),
    ("specutils_cinn.models", "MAX_METADATA_BYTES", metadata),
    ("specutils_cinn.models", "MAX_WEIGHTS_BYTES", cinn_model),
    ("specutils_cinn.model", "MAX_WEIGHTS_BYTES", cinn_model),
])
def test_settings_set_anywhere_are_the_one_setting_read(path, name, home, monkeypatch):
    # docs/trust.rst: the download limits are module variables that can be changed
    mod = importlib.import_module(path)
    original = getattr(home, name)
    monkeypatch.setattr(mod, name, 3)
    assert getattr(home, name) == 3 and getattr(mod, name) == 3
    monkeypatch.undo()
    assert getattr(home, name) == original and getattr(mod, name) == original
    monkeypatch.setattr(home, name, 4)
    assert getattr(mod, name) == 4
