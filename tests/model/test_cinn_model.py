"""Tests of specutils_cinn.model.cinn_model: save/load, hash verification, bounded loading."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from tiny_models import (
    NPIX,
    tiny_architecture,
    tiny_emulator,
    tiny_metadata,
    tiny_model,
    tiny_network,
    with_emulator,
)

from specutils_cinn.model import (
    METADATA_FILENAME,
    WEIGHTS_FILENAME,
    CINNModel,
    ModelMetadata,
    model_files,
    sha256_file,
)


def inputs(batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, 2), generator=gen)
    spec = torch.randn((batch, 3, NPIX), generator=gen)
    return x, spec


def outputs(net: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    x, spec = inputs()
    with torch.no_grad():
        z, log_det = net(x, spec)
        feats = net.condition(spec)
        draws = net.sample(feats, 5, generator=torch.Generator().manual_seed(7))
    return z, log_det, draws


@pytest.fixture
def saved(tmp_path: Path) -> tuple[CINNModel, Path]:
    model = tiny_model()
    model.save(tmp_path / "model")
    return model, tmp_path / "model"


# ---------------------------------------------------------------- save / load


def test_save_load_bit_identical(saved: tuple[CINNModel, Path]) -> None:
    model, directory = saved
    meta_path = directory / METADATA_FILENAME
    weights_path = directory / WEIGHTS_FILENAME
    assert meta_path.is_file() and weights_path.is_file()
    digest = sha256_file(weights_path)
    assert model.sha256 == digest
    assert model.metadata.weights_sha256 == digest
    assert json.loads(meta_path.read_text())["weights_sha256"] == digest
    # no temporary files left behind
    assert sorted(p.name for p in directory.iterdir()) == [METADATA_FILENAME, WEIGHTS_FILENAME]

    loaded = CINNModel.load(directory)
    assert loaded.metadata == model.metadata
    assert loaded.sha256 == digest
    assert loaded.source == directory
    assert not loaded.network.training
    ref_state, new_state = model.network.state_dict(), loaded.network.state_dict()
    assert list(ref_state) == list(new_state)
    for k in ref_state:
        assert torch.equal(ref_state[k], new_state[k]), k
    for a, b in zip(outputs(model.network), outputs(loaded.network), strict=True):
        assert torch.equal(a, b)
    # a fresh network gives different outputs: the comparison above is meaningful
    fresh = tiny_network(seed=5)
    assert not torch.equal(outputs(fresh)[0], outputs(loaded.network)[0])


def test_resave_is_byte_identical(saved: tuple[CINNModel, Path], tmp_path: Path) -> None:
    _, directory = saved
    loaded = CINNModel.load(directory)
    loaded.save(tmp_path / "again")
    for name in (METADATA_FILENAME, WEIGHTS_FILENAME):
        assert (tmp_path / "again" / name).read_bytes() == (directory / name).read_bytes()


def test_registry_names_and_path_forms(tmp_path: Path) -> None:
    model = tiny_model()
    meta_path = model.save(tmp_path, registry_names=True)
    stem = "tiny-test-v0.1.0"
    assert meta_path == tmp_path / f"{stem}.json"
    weights_path = tmp_path / f"{stem}.safetensors"
    assert weights_path.is_file()
    ref = outputs(model.network)
    for args in ((meta_path,), (weights_path,), (str(meta_path), str(weights_path))):
        loaded = CINNModel.load(*args)
        assert loaded.sha256 == sha256_file(weights_path)
        assert torch.equal(outputs(loaded.network)[2], ref[2])
    assert model_files(meta_path) == (meta_path, weights_path)
    # explicit pair with unrelated names
    shutil.copy(meta_path, tmp_path / "m.json")
    shutil.copy(weights_path, tmp_path / "w.bin")
    loaded = CINNModel.load(tmp_path / "m.json", tmp_path / "w.bin")
    assert loaded.metadata.full_name == stem


def test_tampered_weights_rejected_before_parsing(
    saved: tuple[CINNModel, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, directory = saved
    weights_path = directory / WEIGHTS_FILENAME
    data = bytearray(weights_path.read_bytes())
    data[-1] ^= 0x01  # flip one bit in the tensor data
    weights_path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    calls = []
    real_load = safetensors.torch.load
    monkeypatch.setattr(safetensors.torch, "load", lambda b: calls.append(1) or real_load(b))
    with pytest.raises(ValueError, match="does not match") as info:
        CINNModel.load(directory)
    assert model.sha256 in str(info.value)
    assert actual in str(info.value)
    assert calls == []  # weights never parsed


def test_load_never_unpickles(
    saved: tuple[CINNModel, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, directory = saved

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert CINNModel.load(directory).sha256 is not None


def test_malformed_metadata_file(saved: tuple[CINNModel, Path]) -> None:
    _, directory = saved
    meta_path = directory / METADATA_FILENAME
    d = json.loads(meta_path.read_text())
    d["parameters"][0]["unit"] = "km / s"
    meta_path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"metadata.json: .*field 'parameters\[teff\]\.unit'"):
        CINNModel.load(directory)
    meta_path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        CINNModel.load(directory)


def test_missing_hash_rejected(saved: tuple[CINNModel, Path]) -> None:
    _, directory = saved
    meta_path = directory / METADATA_FILENAME
    d = json.loads(meta_path.read_text())
    d["weights_sha256"] = None
    meta_path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="weights_sha256"):
        CINNModel.load(directory)


def test_not_safetensors_rejected(saved: tuple[CINNModel, Path]) -> None:
    _, directory = saved
    weights_path = directory / WEIGHTS_FILENAME
    weights_path.write_bytes(b"not a safetensors file at all")
    meta = ModelMetadata.read(directory / METADATA_FILENAME)
    meta.replace(weights_sha256=sha256_file(weights_path)).write(directory / METADATA_FILENAME)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        CINNModel.load(directory)


def test_weights_of_other_architecture_rejected(tmp_path: Path) -> None:
    model = tiny_model()
    model.save(tmp_path / "a")
    other = CINNModel(
        tiny_metadata(architecture=tiny_architecture(subnet_hidden=8)),
        tiny_network(subnet_hidden=8),
    )
    other.save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / WEIGHTS_FILENAME, tmp_path / "a" / WEIGHTS_FILENAME)
    meta = ModelMetadata.read(tmp_path / "a" / METADATA_FILENAME)
    meta.replace(weights_sha256=other.sha256).write(tmp_path / "a" / METADATA_FILENAME)
    with pytest.raises(ValueError, match="do not fit the architecture.*shape"):
        CINNModel.load(tmp_path / "a")

    # missing / unexpected tensors
    state = {k: v.clone() for k, v in model.network.state_dict().items()}
    state["extra.weight"] = state.pop("flow.module_list.0.subnet1.0.weight")
    data = safetensors.torch.save(state)
    (tmp_path / "a" / WEIGHTS_FILENAME).write_bytes(data)
    meta.replace(weights_sha256=hashlib.sha256(data).hexdigest()).write(
        tmp_path / "a" / METADATA_FILENAME
    )
    with pytest.raises(ValueError, match=r"missing tensors \['flow.module_list.0.subnet1.0"):
        CINNModel.load(tmp_path / "a")


def test_missing_files(tmp_path: Path, saved: tuple[CINNModel, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="no model"):
        CINNModel.load(tmp_path / "nowhere")
    _, directory = saved
    (directory / WEIGHTS_FILENAME).unlink()
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        CINNModel.load(directory)
    (tmp_path / "odd.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot load a model"):
        CINNModel.load(tmp_path / "odd.txt")


def test_constructor_checks() -> None:
    with pytest.raises(TypeError, match="ModelMetadata"):
        CINNModel({"name": "x"}, tiny_network())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="torch.nn.Module"):
        CINNModel(tiny_metadata(), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="architecture differs"):
        CINNModel(tiny_metadata(), tiny_network(n_blocks=3))


def test_build_to_and_repr() -> None:
    model = CINNModel.build(tiny_metadata())
    assert model.network.architecture == tiny_architecture()
    assert model.sha256 is None and model.source is None
    assert model.to("cpu") is model
    assert model.device == torch.device("cpu")
    assert "tiny-test-v0.1.0" in repr(model)


def test_save_updates_hash_and_keeps_metadata(tmp_path: Path) -> None:
    model = tiny_model()
    before = copy.deepcopy(model.metadata.to_dict())
    model.save(tmp_path)
    after = model.metadata.to_dict()
    assert after.pop("weights_sha256") == model.sha256
    before.pop("weights_sha256")
    assert after == before


# ---------------------------------------------------------------- optional spectrum emulator


def test_model_without_emulator_metadata_has_no_emulator_key(saved) -> None:
    model, directory = saved
    assert "emulator" not in json.loads((directory / METADATA_FILENAME).read_text())
    assert CINNModel.load(directory).emulator is None and model.metadata.emulator is None


def test_emulator_attach_save_load_lazy_and_verified(tmp_path: Path) -> None:
    from specutils_cinn.model import EMULATOR_FILENAME

    model = with_emulator(tiny_model())
    fe = model.emulator
    assert fe.spec.grid.npix == NPIX  # trimmed to the model's pixels
    np.testing.assert_array_equal(fe.model_index, np.arange(NPIX))
    np.testing.assert_allclose(fe.floor, np.linspace(0.001, 0.01, NPIX + 2)[2:], rtol=1e-6)
    assert fe.fit_pixels.sum() == NPIX - 2  # 5003 and 5004 excluded
    labels, vsini = fe.labels(["teff", "logg"], np.array([[5000.0, 4.0]]))
    np.testing.assert_array_equal(labels, [[5000.0, 4.0, -0.5]])
    np.testing.assert_array_equal(vsini, [0.0])
    full = tiny_emulator()(np.array([[5000.0, 4.0, -0.5]]))
    np.testing.assert_allclose(fe.emulator(labels), full[:, 2:], rtol=1e-6, atol=1e-6)

    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [METADATA_FILENAME, WEIGHTS_FILENAME, EMULATOR_FILENAME])
    doc = json.loads((tmp_path / METADATA_FILENAME).read_text())
    assert doc["emulator"]["sha256"] == sha256_file(tmp_path / EMULATOR_FILENAME)
    assert doc["emulator"]["chi2_threshold"] == 4.0
    loaded = CINNModel.load(tmp_path)
    assert loaded.metadata == model.metadata and loaded._emulator is None  # lazy
    np.testing.assert_allclose(loaded.emulator.emulator(labels), fe.emulator(labels))
    np.testing.assert_array_equal(loaded.emulator.floor, fe.floor)
    # re-saving gives the same bytes; registry names work too
    again = tmp_path / "again"
    loaded.save(again)
    assert (again / EMULATOR_FILENAME).read_bytes() == (tmp_path / EMULATOR_FILENAME).read_bytes()
    loaded.save(tmp_path / "reg", registry_names=True)
    reg = CINNModel.load(tmp_path / "reg" / f"{model.metadata.full_name}.json")
    assert reg.emulator is not None

    # a modified emulator file is rejected on first use, before parsing
    data = bytearray((tmp_path / EMULATOR_FILENAME).read_bytes())
    data[-1] ^= 1
    (tmp_path / EMULATOR_FILENAME).write_bytes(bytes(data))
    lazy = CINNModel.load(tmp_path)
    with pytest.raises(ValueError, match="SHA-256 of emulator file"):
        _ = lazy.emulator
    (tmp_path / EMULATOR_FILENAME).unlink()
    with pytest.raises(FileNotFoundError, match="emulator"):
        CINNModel.load(tmp_path)


# ---------------------------------------------------------------- bounded, checked loading


def _rewrite_metadata(directory: Path, change: Any) -> None:
    """Edit metadata.json in place (the weights and their hash stay as they are)."""
    meta_path = directory / METADATA_FILENAME
    d = json.loads(meta_path.read_text())
    change(d)
    meta_path.write_text(json.dumps(d))


def _write_weights(directory: Path, data: bytes) -> None:
    """Replace the weights, recording their hash in the metadata so that only the content
    can be wrong."""
    (directory / WEIGHTS_FILENAME).write_bytes(data)
    _rewrite_metadata(
        directory, lambda d: d.update(weights_sha256=hashlib.sha256(data).hexdigest())
    )


@pytest.fixture
def real_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the default device of every build_cinn call (load imports it at call time)."""
    import specutils_cinn.flows

    devices: list[str] = []
    real = specutils_cinn.flows.build_cinn

    def recording(arch: Any) -> torch.nn.Module:
        device = torch.empty(0).device.type
        devices.append(device)
        if device != "meta":  # a real build of a network that does not fit would be the bug
            sizes = (arch["subnet_hidden"], arch["n_blocks"], arch["subnet_layers"])
            if sizes != (16, 2, 1):
                raise RuntimeError(f"real network of architecture {sizes} allocated")
        return real(arch)

    monkeypatch.setattr(specutils_cinn.flows, "build_cinn", recording)
    return devices


@pytest.mark.parametrize(
    ("key", "value"),
    [("subnet_hidden", 12000), ("n_blocks", 10**9), ("subnet_layers", 10**8)],
)
def test_architecture_checked_against_header_before_building(
    saved: tuple[CINNModel, Path], real_builds: list[str], key: str, value: int
) -> None:
    """Finding 5: metadata asking for a huge network whose weights do not fit is refused from
    the safetensors header, without allocating the network (12000 hidden units allocated
    4.7 GB before torch failed)."""
    from specutils_cinn.model import ModelLoadError

    _, directory = saved
    _rewrite_metadata(directory, lambda d: d["architecture"].update({key: value}))
    with pytest.raises(ModelLoadError, match="do not fit the architecture") as info:
        CINNModel.load(directory)
    assert str(directory / WEIGHTS_FILENAME) in str(info.value)
    assert "cpu" not in real_builds  # only shape-only (meta device) builds, if any
    # the unmodified model still builds for real
    original = tiny_architecture()[key]
    _rewrite_metadata(directory, lambda d: d["architecture"].update({key: original}))
    assert CINNModel.load(directory).sha256 is not None
    assert real_builds[-1] == "cpu"


def test_tensor_shapes_checked_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specutils_cinn.model import ModelLoadError

    model = tiny_model()
    model.save(tmp_path)
    other = tiny_network(subnet_hidden=8)
    _write_weights(tmp_path, safetensors.torch.save(other.state_dict()))
    calls = []
    real_load = safetensors.torch.load
    monkeypatch.setattr(safetensors.torch, "load", lambda b: calls.append(1) or real_load(b))
    with pytest.raises(ModelLoadError, match=r"subnet1.0.weight' has shape \(8, "):
        CINNModel.load(tmp_path)
    assert calls == []


def _header(tensors: dict[str, Any], body: bytes = b"") -> bytes:
    text = json.dumps(tensors).encode()
    return len(text).to_bytes(8, "little") + text + body


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"abc", "shorter than the 8-byte header length"),
        ((2**62).to_bytes(8, "little") + b"{}", "header length"),
        (_header([1, 2]), "not a JSON object"),
        (b"\x05\x00\x00\x00\x00\x00\x00\x00{abc}", "not JSON"),
        (_header({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
         "outside"),
        (_header({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
         "8 bytes for shape"),
        (_header({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
         "unsupported dtype"),
        (_header({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
         "invalid shape"),
        (_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
         "do not fit the architecture"),
    ],
)
def test_malformed_safetensors_header(
    saved: tuple[CINNModel, Path], real_builds: list[str], data: bytes, match: str
) -> None:
    from specutils_cinn.model import ModelLoadError

    _, directory = saved
    _write_weights(directory, data)
    with pytest.raises(ModelLoadError, match=match):
        CINNModel.load(directory)
    assert "cpu" not in real_builds


def test_any_weights_bytes_give_a_model_load_error(tmp_path: Path) -> None:
    """Whatever the weights file holds (with a matching hash), load fails with a
    ModelLoadError, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from specutils_cinn.model import ModelLoadError

    tiny_model().save(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILENAME).read_text())
    dtypes = st.sampled_from(["F32", "F64", "I64", "BOOL", "U8", "Q4", 3])
    entry = st.fixed_dictionaries({
        "dtype": dtypes,
        "shape": st.lists(st.integers(-2, 70), max_size=3),
        "data_offsets": st.lists(st.integers(-1, 300), min_size=0, max_size=3),
    })
    names = st.sampled_from(["flow.module_list.1.perm", "conditioner.net.1.weight", "x"])
    headers = st.builds(
        _header, st.dictionaries(names, entry, max_size=3), st.binary(max_size=300)
    )

    # as many examples as the hypothesis profile says (tests/conftest.py: 25, 1000 in CI)
    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.binary(max_size=64), headers))
    def check(data: bytes) -> None:
        (tmp_path / WEIGHTS_FILENAME).write_bytes(data)
        meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
        (tmp_path / METADATA_FILENAME).write_text(json.dumps(meta))
        with pytest.raises(ModelLoadError):
            CINNModel.load(tmp_path)

    check()


def test_metadata_and_weights_sizes_are_capped(
    saved: tuple[CINNModel, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6 (local files): metadata.json is refused above MAX_METADATA_BYTES (1 MB) and
    a weights file above MAX_WEIGHTS_BYTES, both before being read."""
    from specutils_cinn.model import ModelLoadError, cinn_model, metadata

    _, directory = saved
    assert metadata.MAX_METADATA_BYTES == 1 << 20
    meta_path = directory / METADATA_FILENAME
    good = meta_path.read_bytes()
    padded = json.loads(good)
    padded["training"]["notes"] = "x" * (1 << 20)
    meta_path.write_text(json.dumps(padded))
    with pytest.raises(ModelLoadError, match=r"MAX_METADATA_BYTES.*not read") as info:
        CINNModel.load(directory)
    assert str(meta_path) in str(info.value)
    with pytest.raises(ModelLoadError, match="MAX_METADATA_BYTES"):
        ModelMetadata.read(meta_path)

    meta_path.write_bytes(good)
    size = (directory / WEIGHTS_FILENAME).stat().st_size
    monkeypatch.setattr(cinn_model, "MAX_WEIGHTS_BYTES", size - 1)
    with pytest.raises(ModelLoadError, match=r"MAX_WEIGHTS_BYTES.*not read") as info:
        CINNModel.load(directory)
    assert str(directory / WEIGHTS_FILENAME) in str(info.value)
    monkeypatch.setattr(cinn_model, "MAX_WEIGHTS_BYTES", size)
    assert CINNModel.load(directory).sha256 is not None


def test_save_refuses_metadata_that_load_would_refuse(tmp_path: Path) -> None:
    model = CINNModel(tiny_metadata(training={"notes": "x" * (1 << 20)}), tiny_network())
    with pytest.raises(ValueError, match="MAX_METADATA_BYTES"):
        model.save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_errors_are_model_load_errors(tmp_path: Path, saved) -> None:
    from specutils_cinn.model import ModelFileNotFoundError, ModelIntegrityError, ModelLoadError

    assert issubclass(ModelIntegrityError, ModelLoadError)
    assert issubclass(ModelLoadError, ValueError)
    assert issubclass(ModelFileNotFoundError, ModelLoadError)
    assert issubclass(ModelFileNotFoundError, FileNotFoundError)
    with pytest.raises(ModelFileNotFoundError, match="no model"):
        CINNModel.load(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="empty model path"):
        CINNModel.load("")
    _, directory = saved
    _rewrite_metadata(directory, lambda d: d["architecture"].update(subnet_hidden="wide"))
    with pytest.raises(ModelLoadError, match="metadata.json"):
        CINNModel.load(directory)


# ---------------------------------------------------------------- model digest


def test_digest_covers_metadata_weights_and_emulator(tmp_path: Path) -> None:
    """Finding 3: the model's identity covers every file, so that editing the metadata (label
    means, calibration, chi2_threshold, ranges) changes it even though the weights and their
    SHA-256 (MODELSHA) stay the same."""
    from specutils_cinn.model import EMULATOR_FILENAME, model_digest

    model = with_emulator(tiny_model())
    assert model.digest is None
    model.save(tmp_path)
    files = [tmp_path / n for n in (METADATA_FILENAME, WEIGHTS_FILENAME, EMULATOR_FILENAME)]
    expected = model_digest(*(sha256_file(f) for f in files))
    assert model.digest == expected
    loaded = CINNModel.load(tmp_path)
    assert loaded.digest == expected and loaded.registry_name is None
    assert expected != model_digest(sha256_file(files[0]), sha256_file(files[1]))

    seen = {expected}
    for change in (
        lambda d: d["parameters"][0].update(mean=6000.0),
        lambda d: d["parameters"][1].update(range=[0.5, 5.0]),
        lambda d: d["emulator"].update(chi2_threshold=40.0),
        lambda d: d.update(snr_range=[5.0, 300.0]),
    ):
        original = files[0].read_bytes()
        _rewrite_metadata(tmp_path, change)
        edited = CINNModel.load(tmp_path)
        assert edited.sha256 == loaded.sha256  # the weights did not change ...
        assert edited.digest not in seen  # ... but the model's identity did
        seen.add(edited.digest)
        files[0].write_bytes(original)
    assert CINNModel.load(tmp_path).digest == expected


def test_expected_sha256_checked_on_load(tmp_path: Path) -> None:
    """With the registry's hashes (expected_sha256), any differing file is an error that
    names it."""
    from specutils_cinn.model import EMULATOR_FILENAME, ModelIntegrityError

    model = with_emulator(tiny_model())
    model.save(tmp_path)
    paths = {"metadata": tmp_path / METADATA_FILENAME, "weights": tmp_path / WEIGHTS_FILENAME,
             "emulator": tmp_path / EMULATOR_FILENAME}
    expected = {k: sha256_file(p) for k, p in paths.items()}
    assert CINNModel.load(tmp_path, expected_sha256=expected).digest == model.digest

    _rewrite_metadata(tmp_path, lambda d: d["parameters"][0].update(std=900.0))
    with pytest.raises(ModelIntegrityError, match="metadata file .*metadata.json does not match"):
        CINNModel.load(tmp_path, expected_sha256=expected)
    model.save(tmp_path)
    for role in ("weights", "emulator"):
        wrong = {**expected, role: "0" * 64}
        with pytest.raises(ModelIntegrityError, match=role):
            CINNModel.load(tmp_path, expected_sha256=wrong)
    with pytest.raises(ModelIntegrityError, match="no emulator"):
        CINNModel.load(tmp_path, expected_sha256={k: expected[k] for k in ("metadata", "weights")})
    with pytest.raises(ValueError, match="missing"):
        CINNModel.load(tmp_path, expected_sha256={"weights": expected["weights"]})


def test_model_with_gaussian_process_emulator(tmp_path):
    """A ``kind = "gp"`` emulator travels in the model's emulator file like the MLP kinds."""
    from specutils_cinn.emulator import EmulatorConfig, train_emulator

    grid = tiny_emulator().grid
    rng = np.random.default_rng(0)
    lab = np.column_stack([rng.uniform(4000, 7000, 40), rng.uniform(0, 5, 40),
                           rng.uniform(-2, 0.5, 40)])
    flux = 1.0 - 0.3 * np.exp(-0.5 * ((grid.wavelength.value - 5004.0) / (1 + lab[:, 1:2])) ** 2)
    flux *= 1.0 - 0.05 * lab[:, 2:3] ** 2
    emu, _ = train_emulator(lab, flux, ["teff", "logg", "fe_h"], grid,
                            EmulatorConfig(kind="gp", n_components=4, gp_groups=(), gp_steps=20),
                            log=None)
    model = tiny_model().attach_emulator(emu, 0.005, chi2_threshold=4.0,
                                         label_defaults={"fe_h": -0.5})
    labels = np.array([[5000.0, 3.0, -0.5]])
    np.testing.assert_allclose(model.emulator.emulator(labels), emu(labels)[:, 2:], atol=1e-7)
    model.save(tmp_path)
    loaded = CINNModel.load(tmp_path)
    assert loaded.metadata.emulator.architecture["kind"] == "gp"
    np.testing.assert_array_equal(loaded.emulator.emulator(labels),
                                  model.emulator.emulator(labels))
