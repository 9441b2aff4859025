"""The pixel mask in the model metadata: optional, round-tripped, hashed, old files unchanged."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import numpy as np
import pytest
from tiny_models import tiny_metadata, tiny_model

from specutils_cinn.inputs import PixelMask
from specutils_cinn.model import CINNModel, ModelIntegrityError, ModelMetadata

MASK = PixelMask([(5003.5, 5006.5), (5020.5, 5021.5)],
                 {"method": "test", "threshold": 0.05, "date": "2026-12-05"})


def test_no_mask_by_default_and_no_key_in_the_json():
    md = tiny_metadata()
    assert md.pixel_mask is None and md.masked_pixels is None
    assert "pixel_mask" not in md.to_dict()


def test_round_trip_with_a_mask():
    md = tiny_metadata(pixel_mask=MASK)
    d = json.loads(md.to_json())
    assert d["pixel_mask"] == MASK.to_dict()
    back = ModelMetadata.from_json(md.to_json())
    assert back.pixel_mask == MASK
    assert back.to_json() == md.to_json()
    assert np.array_equal(back.masked_pixels, MASK.on_grid(md.grid))
    assert back.masked_pixels.sum() == 4
    # a dict is read as a PixelMask
    assert tiny_metadata(pixel_mask=MASK.to_dict()).pixel_mask == MASK
    assert md.replace(pixel_mask=None).to_json() == tiny_metadata().to_json()


@pytest.mark.parametrize(("value", "match"), [
    ({"intervals": [[5002.0, 5001.0]]}, "pixel_mask.*reversed"),
    ({"intervals": [], "color": "red"}, "pixel_mask.*unknown"),
    ("5000-5001", "pixel_mask.*expected an object"),
    ({"intervals": [[4000.0, 6000.0]]}, "pixel_mask.*every pixel"),
])
def test_invalid_masks_name_the_field(value, match):
    with pytest.raises(ValueError, match=match):
        tiny_metadata(pixel_mask=value)


@pytest.mark.parametrize("name", ["4most-hr-lte-v1.2.0", "4most-lr-lte-v1.2.0"])
def test_bundled_v1_metadata_is_byte_identical(name):
    # the bundled models have no mask: reading and writing their metadata changes no byte, so
    # their SHA-256 and digests (registry.json) stay what they were
    folder = resources.files("specutils_cinn") / "data" / "models" / name
    raw = (folder / "metadata.json").read_bytes()
    md = ModelMetadata.from_json(raw)
    assert md.pixel_mask is None
    assert md.to_json().encode() == raw
    registry = json.loads((resources.files("specutils_cinn") / "data" / "registry.json")
                          .read_text())
    entry = registry["models"][name]
    assert hashlib.sha256(raw).hexdigest() == entry["files"]["metadata"]["sha256"]
    model = CINNModel.load(folder)
    assert model.digest == entry["digest"]


def test_the_mask_is_part_of_the_checked_metadata(tmp_path):
    model = tiny_model()
    masked = CINNModel(model.metadata.replace(pixel_mask=MASK), model.network)
    a, b = tmp_path / "plain", tmp_path / "masked"
    model.save(a)
    masked.save(b)
    assert model.digest != masked.digest
    loaded = CINNModel.load(b)
    assert loaded.metadata.pixel_mask == MASK and loaded.digest == masked.digest
    sha = {name: hashlib.sha256((b / f"{name}.{ext}").read_bytes()).hexdigest()
           for name, ext in (("metadata", "json"), ("weights", "safetensors"))}
    CINNModel.load(b, expected_sha256=sha)
    # an edited interval is a different model: the registered hash no longer matches
    d = json.loads((b / "metadata.json").read_text())
    d["pixel_mask"]["intervals"][0][1] = 5007.5
    (b / "metadata.json").write_text(json.dumps(d, indent=2) + "\n")
    with pytest.raises(ModelIntegrityError, match="metadata"):
        CINNModel.load(b, expected_sha256=sha)
    assert CINNModel.load(b).digest != masked.digest


def test_the_summary_names_the_mask():
    model = tiny_model()
    assert "pixel mask" not in model.summary()
    masked = CINNModel(model.metadata.replace(pixel_mask=MASK), model.network)
    assert "pixel mask: 2 intervals, 4 of 32 px masked" in masked.summary()
