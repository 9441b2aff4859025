"""Tests of specutils_cinn.model.metadata, .specs and .identity: the metadata schema."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
import torch
from astropy import units as u
from tiny_models import NPIX, tiny_architecture, tiny_grid, tiny_metadata, tiny_model, with_emulator

from specutils_cinn.model import CINNModel, ModelMetadata, ParameterSpec, validate_model_name


def test_metadata_properties() -> None:
    meta = tiny_metadata()
    assert meta.full_name == "tiny-test-v0.1.0"
    assert meta.parameter_names == ["teff", "logg"]
    assert meta.units == [u.K, u.dex(u.cm / u.s**2)]
    np.testing.assert_array_equal(meta.ranges, [[4000.0, 7000.0], [0.0, 5.0]])
    assert meta.ranges.shape == (2, 2)
    np.testing.assert_array_equal(meta.label_mean, [5500.0, 3.0])
    np.testing.assert_array_equal(meta.label_std, [800.0, 1.2])
    assert meta.grid == tiny_grid()
    assert meta.grid.npix == NPIX
    assert meta.weights_sha256 is None
    assert meta.format_version == 1
    import specutils_cinn

    assert meta.package_version == specutils_cinn.__version__


def test_metadata_dict_and_json_round_trip() -> None:
    meta = tiny_metadata(resolving_power={"A": 18000.0})
    d = meta.to_dict()
    assert list(d) == [
        "format_version", "name", "version", "description", "parameters", "architecture",
        "wavelength_grid", "resolving_power", "normalization", "training", "snr_range",
        "weights_sha256", "package_version",
    ]  # fmt: skip
    assert d["parameters"][1]["unit"] == "dex(cm / s2)"
    assert d["parameters"][0] == {
        "name": "teff", "unit": "K", "range": [4000.0, 7000.0], "mean": 5500.0, "std": 800.0,
    }  # fmt: skip
    assert d["wavelength_grid"] == tiny_grid().to_dict()
    assert ModelMetadata.from_dict(d) == meta
    text = meta.to_json()
    assert json.loads(text) == d
    assert ModelMetadata.from_json(text) == meta
    assert ModelMetadata.from_json(text.encode()) == meta
    # to_dict returns a copy
    d["architecture"]["n_blocks"] = 99
    assert meta.architecture["n_blocks"] == 2


def test_equivalent_unit_strings_are_normalized() -> None:
    d = tiny_metadata().to_dict()
    d["parameters"][1]["unit"] = "dex(cm s-2)"
    d["parameters"][0]["range"] = [4000, 7000]  # ints are fine
    meta = ModelMetadata.from_dict(d)
    assert meta.parameters[1].unit == u.dex(u.cm / u.s**2)
    assert meta.to_dict()["parameters"][1]["unit"] == "dex(cm / s2)"
    assert meta.parameters[0].range == (4000.0, 7000.0)


def test_abundance_parameters_accepted() -> None:
    params = (
        ParameterSpec("fe_h", "dex", (-2.0, 0.5), -0.5, 0.5),
        ParameterSpec("mg_fe", u.dex, (-0.4, 0.8), 0.1, 0.2),
        ParameterSpec("vmic", "km / s", (0.5, 3.0), 1.5, 0.5),
    )
    meta = tiny_metadata(parameters=params, architecture=tiny_architecture(n_params=3))
    assert meta.units == [u.dex, u.dex, u.km / u.s]


def _mutate(path: str, value: Any) -> dict[str, Any]:
    d = tiny_metadata().to_dict()
    d["weights_sha256"] = "0" * 64
    target = d
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return d


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("architecture", _DELETE, "architecture"),
        ("name", _DELETE, "name"),
        ("format_version", 2, "format_version"),
        ("format_version", "1", "format_version"),
        ("name", "../evil", "name"),
        ("version", "not a version", "version"),
        ("parameters.0.unit", "m / s", "unit"),
        ("parameters.0.unit", "not-a-unit", "unit"),
        ("parameters.1.unit", "dex", "unit"),
        ("parameters.0.name", "color", "name"),
        ("parameters.0.std", 0.0, "std"),
        ("parameters.0.mean", "x", "mean"),
        ("parameters.0.range", [7000.0, 4000.0], "range"),
        ("parameters.0.range", [1.0], "range"),
        ("parameters.0.extra", 1, "extra"),
        ("parameters.1.name", "teff", "parameters"),
        ("parameters", [], "parameters"),
        ("architecture.n_params", 3, "architecture"),
        ("architecture.npix", NPIX + 1, "architecture"),
        ("architecture.n_layers", 1, "architecture"),
        ("architecture.n_blocks", _DELETE, "architecture"),
        ("wavelength_grid.segments.0.step", _DELETE, "wavelength_grid"),
        ("wavelength_grid.segments.0.step", 2.0, "architecture"),  # npix 16 != 32
        ("resolving_power", -1.0, "resolving_power"),
        ("resolving_power", {"B": 1000.0}, "resolving_power"),
        ("resolving_power", True, "resolving_power"),
        ("normalization", {"degree": 3}, "normalization"),
        ("snr_range", [-1.0, 10.0], "snr_range"),
        ("snr_range", [10.0, 5.0], "snr_range"),
        ("weights_sha256", "abc", "weights_sha256"),
        ("weights_sha256", "A" * 64, "weights_sha256"),
        ("training", [1, 2], "training"),
        ("description", 3, "description"),
        ("surprise", 1, "surprise"),
    ],
)
def test_malformed_metadata_names_the_field(path: str, value: Any, field: str) -> None:
    d = _mutate(path, value)
    with pytest.raises(ValueError, match=f"field '[^']*{field}"):
        ModelMetadata.from_dict(d)


def test_metadata_valid_baseline_of_mutation_helper() -> None:
    # the unmutated dictionary used above is valid: the failures come from the mutations
    d = _mutate("description", "still valid")
    assert ModelMetadata.from_dict(d).description == "still valid"


def test_metadata_not_json() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelMetadata.from_json("{not json")
    with pytest.raises(ValueError, match="JSON object"):
        ModelMetadata.from_json("[1, 2]")


def test_metadata_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="field 'architecture'"):
        tiny_metadata(architecture=tiny_architecture(npix=NPIX * 2))
    meta = tiny_metadata()
    with pytest.raises(ValueError, match="field 'snr_range'"):
        meta.replace(snr_range=(5.0, 1.0))


def test_standardize_round_trip_numpy_and_torch() -> None:
    meta = tiny_metadata()
    x = np.array([[5500.0, 3.0], [6300.0, 4.2]])
    s = meta.standardize(x)
    np.testing.assert_allclose(s, [[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(meta.destandardize(s), x)
    t = torch.tensor([[[6300.0, 1.8]]], dtype=torch.float32)
    st = meta.standardize(t)
    assert st.dtype == torch.float32 and st.shape == (1, 1, 2)
    assert torch.allclose(st, torch.tensor([[[1.0, -1.0]]]))
    assert torch.allclose(meta.destandardize(st), t)
    with pytest.raises(ValueError, match="last axis"):
        meta.standardize(np.zeros((4, 3)))


def test_validate_model_name() -> None:
    assert validate_model_name("4most-hr-lte-seed-v0.1.0") == "4most-hr-lte-seed-v0.1.0"
    for bad in ("../x", "a/b", "", ".hidden", "a..b", "a b", None):
        with pytest.raises(ValueError, match="invalid model name"):
            validate_model_name(bad)  # type: ignore[arg-type]


def test_emulator_metadata_is_validated() -> None:
    model = with_emulator(tiny_model())
    spec = model.metadata.emulator.to_dict()
    md = model.metadata.to_dict()
    for key, value, match in (
        ("chi2_threshold", -1.0, "chi2_threshold"),
        ("label_defaults", {}, "fe_h"),
        ("exclude", [[2.0, 1.0]], "exclude"),
        ("continuum_degree", 99, "continuum_degree"),
        ("sha256", "nothex", "sha256"),
        ("bogus", 1, "bogus"),
    ):
        bad = copy.deepcopy(md)
        bad["emulator"] = {**spec, key: value}
        with pytest.raises(ValueError, match=match):
            ModelMetadata.from_dict(bad)
    far = copy.deepcopy(md)
    far["emulator"]["architecture"]["grid"]["segments"][0].update(start=6000.0, stop=6010.0)
    with pytest.raises(ValueError, match="no pixel in common"):
        ModelMetadata.from_dict(far)


def test_emulator_lithium_from_the_predicted_li_fe() -> None:
    # an emulator of absolute A(Li) fits a model that predicts [Li/Fe] and [Fe/H] without a
    # default; a model that predicts neither [Li/Fe] nor has a default for it is refused
    from specutils_cinn.emulator import SpectrumEmulator
    from specutils_cinn.flows import build_cinn

    base = tiny_metadata().parameters
    fe_h = ParameterSpec("fe_h", "dex", (-2.0, 0.5), -0.5, 0.6)
    li_fe = ParameterSpec("li_fe", "dex", (-1.0, 3.0), 0.5, 0.8)
    torch.manual_seed(0)
    emu = SpectrumEmulator(["teff", "logg", "fe_h", "a_li"],
                           [[4000, 7000], [0, 5], [-2, 0.5], [-1, 4]], tiny_grid(),
                           n_components=3, hidden=[8])
    floor = np.full(emu.grid.npix, 0.01)
    for params, ok in (((*base, fe_h, li_fe), True), ((*base, fe_h), False)):
        arch = tiny_architecture(n_params=len(params))
        model = CINNModel(tiny_metadata(parameters=params, architecture=arch), build_cinn(arch))
        if ok:
            attached = model.attach_emulator(emu, floor, chi2_threshold=4.0)
            assert "li_fe" not in attached.metadata.emulator.label_defaults
        else:
            with pytest.raises(ValueError, match="a_li"):
                model.attach_emulator(emu, floor, chi2_threshold=4.0)
