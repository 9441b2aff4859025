"""Tests of specutils_cinn.model.loading: a model by registered name or by path, never confused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.model import (
    METADATA_FILENAME,
    ModelNotFoundError,
    RegistryEntry,
    download,
    loading,
    registry,
)
from specutils_cinn.model import cache as cache_module


def _hijack_folder(tmp_path: Path) -> tuple[RegistryEntry, Path, Path]:
    """A folder ``4most-hr`` in ``tmp_path`` holding the bundled 4most-hr model with a
    tampered metadata.json (Teff standardization mean + 500 K; weights untouched)."""
    entry = registry.REGISTRY.models[registry.resolve_name("4most-hr")]
    genuine = cache_module._bundled_dir(entry)
    assert genuine is not None
    fake = tmp_path / "4most-hr"
    shutil.copytree(genuine, fake)
    d = json.loads((fake / METADATA_FILENAME).read_text())
    d["parameters"][0]["mean"] += 500.0
    (fake / METADATA_FILENAME).write_text(json.dumps(d))
    return entry, genuine, fake


def test_registered_name_never_loads_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2: a folder ./4most-hr in the working directory was loaded instead of the
    registered 4most-hr, and reported the genuine MODEL and MODELSHA. A name is a name: it
    resolves through the registry; a local folder must be given as a path, and then reports
    its own digest."""
    entry, genuine, fake = _hijack_folder(tmp_path)
    genuine_mean = json.loads((genuine / METADATA_FILENAME).read_text())["parameters"][0]["mean"]
    monkeypatch.chdir(tmp_path)
    est = CINNParameterEstimator.from_pretrained("4most-hr", device="cpu")
    assert est.model.source == genuine
    assert est.model.metadata.parameters[0].mean == genuine_mean
    assert est.model.registry_name == entry.full_name
    assert est.model.digest == entry.digest
    meta = est._meta(10, 1, torch.device("cpu"))
    assert (meta["MODEL"], meta["MODELDIG"], meta["MODELSRC"]) == (
        entry.full_name, entry.digest, "registry")

    for path in ("./4most-hr", Path("4most-hr"), str(fake), f"{fake}/metadata.json"):
        local = CINNParameterEstimator.from_pretrained(path, device="cpu")
        assert local.model.metadata.parameters[0].mean == genuine_mean + 500.0
        assert local.model.registry_name is None
        # the weights are the genuine ones (same MODELSHA), the model is not
        assert local.model.sha256 == entry.weights.sha256
        assert local.model.digest != entry.digest
        meta = local._meta(10, 1, torch.device("cpu"))
        assert meta["MODELDIG"] == local.model.digest and meta["MODELSRC"] == "local"


def test_empty_name_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2: "" loaded the current folder."""
    _, _, fake = _hijack_folder(tmp_path)
    monkeypatch.chdir(fake)  # a complete model in the working directory
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="empty model name") as info:
            CINNParameterEstimator.from_pretrained(empty)
        assert not isinstance(info.value, ModelNotFoundError)
        with pytest.raises(ValueError, match="empty model name"):
            download.fetch_model(empty)
    assert CINNParameterEstimator.from_pretrained(".", device="cpu").model.registry_name is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("4most-hr", None),
        ("4most-hr-lte-v1.1.0", None),
        ("model.json", None),
        ("./4most-hr", Path("4most-hr")),
        ("models/hr", Path("models/hr")),
        ("/abs/m", Path("/abs/m")),
        (".", Path(".")),
        ("..", Path("..")),
        ("~/m", Path("~/m").expanduser()),
        (Path("4most-hr"), Path("4most-hr")),
    ],
)
def test_name_or_path_rule(name: Any, expected: Path | None) -> None:
    assert loading._model_path(name) == expected


def test_name_or_path_rule_errors() -> None:
    with pytest.raises(TypeError, match="name or a path"):
        loading._model_path(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        loading._model_path("")


def test_table_meta_records_the_model_digest() -> None:
    """MODEL, MODELVER and MODELSHA are kept; MODELDIG (all files) and MODELSRC are new."""
    from specutils import Spectrum

    from specutils_cinn import cli

    est = CINNParameterEstimator.from_pretrained(device="cpu")
    entry = registry.REGISTRY.models[registry.resolve_name(registry.DEFAULT_MODEL)]
    example = Path(cli.__file__).parents[1] / "data" / cli.EXAMPLE_SPECTRUM
    t = est.predict(Spectrum.read(example, format="tabular-fits"), n_samples=20, seed=1,
                    progress=False)
    assert t.meta["MODEL"] == entry.full_name
    assert t.meta["MODELSHA"] == entry.weights.sha256
    assert t.meta["MODELDIG"] == entry.digest == est.model.digest
    assert t.meta["MODELSRC"] == "registry"
