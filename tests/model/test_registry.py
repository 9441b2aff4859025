"""Tests of the registry, cache, downloads and loading of specutils_cinn.model against a real HTTP
server on the loopback interface."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pooch
import pytest
import torch

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.flows import build_cinn
from specutils_cinn.model import (
    METADATA_FILENAME,
    WEIGHTS_FILENAME,
    CINNModel,
    ModelDownloadError,
    ModelIntegrityError,
    ModelMetadata,
    ModelNotFoundError,
    ParameterSpec,
    Registry,
    RegistryEntry,
    RegistryFile,
    download,
    registry,
    sha256_file,
)
from specutils_cinn.model import cache as cache_module
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

FULL = "tiny-test-v0.1.0"
NPIX = 32


# ---------------------------------------------------------------- fixtures


def _tiny_model() -> CINNModel:
    arch = {
        "n_params": 2,
        "npix": NPIX,
        "conditioner": {"kind": "mlp", "channels": [4], "features": 8, "pool": 1, "hidden": 16},
        "n_blocks": 2,
        "subnet_hidden": 16,
        "subnet_layers": 1,
        "clamp": 2.0,
        "permutation_seed": 3,
    }
    net = build_cinn(arch)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    meta = ModelMetadata(
        name="tiny-test",
        version="0.1.0",
        description="tiny",
        parameters=(
            ParameterSpec("teff", "K", (4000.0, 7000.0), 5500.0, 800.0),
            ParameterSpec("logg", "dex(cm / s2)", (0.0, 5.0), 3.0, 1.2),
        ),
        architecture=arch,
        grid=WavelengthGrid((GridSegment("A", 5000.0, 5000.0 + NPIX - 1, 1.0),)),
        resolving_power=20000.0,
        normalization={"kind": "continuum"},
        snr_range=(10.0, 300.0),
    )
    return CINNModel(meta, net.eval())


@dataclass
class Published:
    """A tiny model saved as registry release assets."""

    model: CINNModel
    directory: Path
    entry: RegistryEntry

    @property
    def meta_file(self) -> Path:
        return self.directory / f"{FULL}.json"

    @property
    def weights_file(self) -> Path:
        return self.directory / f"{FULL}.safetensors"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    directory = tmp_path_factory.mktemp("assets")
    model = _tiny_model()
    model.save(directory, registry_names=True)
    entry_dict = registry.make_registry_entry(directory / f"{FULL}.json")
    entry = RegistryEntry.from_dict(entry_dict[FULL], FULL)
    return Published(model, directory, entry)


class _Server(http.server.ThreadingHTTPServer):
    # join the handler threads on server_close(), so that none outlives a test
    daemon_threads = False
    block_on_close = True


class _QuietCountingHandler(http.server.SimpleHTTPRequestHandler):
    counter: Counter[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.counter[self.path] += 1
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class Server:
    """A running loopback server, its document root and its GET counts."""

    root: Path
    port: int
    counter: Counter[str]

    @property
    def requests(self) -> int:
        return sum(self.counter.values())

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/releases/v{{version}}/"


@pytest.fixture
def server(tmp_path: Path, published: Published) -> Iterator[Server]:
    root = tmp_path / "www"
    release = root / "releases" / "v0.1.0"
    release.mkdir(parents=True)
    shutil.copy(published.meta_file, release)
    shutil.copy(published.weights_file, release)
    counter: Counter[str] = Counter()
    handler = type("Handler", (_QuietCountingHandler,), {"counter": counter})
    httpd = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Server(root, httpd.server_address[1], counter)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL on which nothing listens (bound socket, no listen: refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v{{version}}/"
    finally:
        sock.close()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    published: Published,
    server: Server,
    cache: Path,
) -> Server:
    """Point the registry at the tiny model, the loopback server and a temporary cache."""
    reg = Registry({FULL: published.entry}, {"tiny": FULL}, base_url="http://invalid.invalid/")
    monkeypatch.setattr(registry, "REGISTRY", reg)
    data_dir = tmp_path / "pkgdata"
    (data_dir / "models").mkdir(parents=True)
    monkeypatch.setattr(registry, "DATA_DIR", data_dir)
    monkeypatch.setenv(download.URL_ENV, server.url())
    monkeypatch.setenv(cache_module.CACHE_ENV, str(cache))
    return server


def _bundle(data_dir: Path, published: Published) -> Path:
    bundled = data_dir / "models" / FULL
    bundled.mkdir(parents=True)
    shutil.copy(published.meta_file, bundled / METADATA_FILENAME)
    shutil.copy(published.weights_file, bundled / WEIGHTS_FILENAME)
    return bundled


def _outputs(net: torch.nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    spec = torch.randn((2, 3, NPIX), generator=gen)
    with torch.no_grad():
        return net.sample(net.condition(spec), 4, generator=torch.Generator().manual_seed(2))


# ---------------------------------------------------------------- downloads


def test_download_and_load(env: Server, cache: Path, published: Published) -> None:
    path = download.fetch_model(FULL)
    assert path == cache / f"{FULL}.json"
    assert sorted(p.name for p in cache.iterdir()) == [f"{FULL}.json", f"{FULL}.safetensors"]
    assert env.counter == {
        f"/releases/v0.1.0/{FULL}.json": 1,
        f"/releases/v0.1.0/{FULL}.safetensors": 1,
    }
    model = CINNModel.load(path)
    assert model.sha256 == published.entry.weights.sha256
    assert torch.equal(_outputs(model.network), _outputs(published.model.network))


def test_second_fetch_uses_cache(env: Server, cache: Path) -> None:
    first = download.fetch_model(FULL)
    assert env.requests == 2
    for name in (FULL, "tiny", "tiny-test"):
        assert download.fetch_model(name) == first
    assert env.requests == 2
    assert download.download_models(["tiny"]) == [first]
    assert env.requests == 2


def test_hash_mismatch_leaves_nothing(env: Server, cache: Path) -> None:
    served = env.root / "releases" / "v0.1.0" / f"{FULL}.safetensors"
    data = bytearray(served.read_bytes())
    data[-1] ^= 0x01
    served.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the registry") as info:
        download.fetch_model(FULL)
    assert not isinstance(info.value, OSError)
    assert FULL in str(info.value)
    # the good metadata file may stay; nothing else, in particular no temporary file
    assert sorted(p.name for p in cache.iterdir()) == [f"{FULL}.json"]
    # pooch retried the download DOWNLOAD_RETRIES times
    assert env.counter[f"/releases/v0.1.0/{FULL}.safetensors"] == 1 + download.DOWNLOAD_RETRIES


def test_corrupted_cache_is_redownloaded(env: Server, cache: Path, published: Published) -> None:
    download.fetch_model(FULL)
    cached = cache / f"{FULL}.safetensors"
    cached.write_bytes(b"garbage")
    path = download.fetch_model(FULL)
    assert sha256_file(cached) == published.entry.weights.sha256
    assert env.counter[f"/releases/v0.1.0/{FULL}.safetensors"] == 2
    assert env.counter[f"/releases/v0.1.0/{FULL}.json"] == 1
    assert CINNModel.load(path).sha256 == published.entry.weights.sha256


def test_offline_empty_cache(
    env: Server, cache: Path, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(download.URL_ENV, dead_url)
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 0)  # a retry waits 1 s
    with pytest.raises(ModelDownloadError) as info:
        download.fetch_model("tiny")
    assert isinstance(info.value, OSError)
    message = str(info.value)
    assert str(cache) in message
    assert f"specutils-cinn models download {FULL}" in message
    assert "SPECUTILS_CINN_CACHE" in message
    assert not any(p.is_file() for p in cache.rglob("*"))
    assert env.requests == 0


def test_offline_corrupted_cache(
    env: Server, cache: Path, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    download.fetch_model(FULL)
    (cache / f"{FULL}.json").write_text("{}")
    monkeypatch.setenv(download.URL_ENV, dead_url)
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 0)
    with pytest.raises(ModelDownloadError, match=f"{FULL}.json"):
        download.fetch_model(FULL)


def test_http_error_is_download_error(
    env: Server, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 0)
    (env.root / "releases" / "v0.1.0" / f"{FULL}.json").unlink()
    with pytest.raises(ModelDownloadError, match="404"):
        download.fetch_model(FULL)


def test_explicit_cache_dir_overrides_env(env: Server, tmp_path: Path, cache: Path) -> None:
    other = tmp_path / "other"
    path = download.fetch_model(FULL, cache_dir=other, progressbar=True)
    assert path == other / f"{FULL}.json"
    assert not cache.exists()


def test_cache_dir_reads_env_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cache_module.CACHE_ENV, str(tmp_path / "a"))
    assert cache_module.cache_dir() == tmp_path / "a"
    monkeypatch.setenv(cache_module.CACHE_ENV, str(tmp_path / "b"))
    assert cache_module.cache_dir() == tmp_path / "b"
    monkeypatch.delenv(cache_module.CACHE_ENV)
    assert cache_module.cache_dir() == Path(os.path.abspath(pooch.os_cache("specutils-cinn")))
    assert not (tmp_path / "a").exists()


def test_bad_url_template(env: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(download.URL_ENV, "http://127.0.0.1:1/{release}/")
    with pytest.raises(ValueError, match="SPECUTILS_CINN_MODELS_URL"):
        download.fetch_model(FULL)


# ---------------------------------------------------------------- bundled models


def _bundled_registry(published: Published) -> Registry:
    entry = RegistryEntry.from_dict({**published.entry.to_dict(), "bundled": FULL}, FULL)
    return Registry({FULL: entry}, {"tiny": FULL})


def test_bundled_model_needs_no_network(
    env: Server, cache: Path, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "REGISTRY", _bundled_registry(published))
    bundled = _bundle(registry.DATA_DIR, published)

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("download attempted for a bundled model")

    monkeypatch.setattr(download, "download_file", no_download)
    assert download.fetch_model("tiny") == bundled
    assert env.requests == 0
    assert not cache.exists()
    model = CINNModel.load(bundled)
    assert torch.equal(_outputs(model.network), _outputs(published.model.network))


@pytest.mark.parametrize("filename", [METADATA_FILENAME, WEIGHTS_FILENAME])
def test_modified_bundled_model_is_an_error(
    env: Server, cache: Path, published: Published, monkeypatch: pytest.MonkeyPatch,
    filename: str,
) -> None:
    """Finding 3: a bundled file that differs from the registry (same size or not) is an
    error naming the file, not silently replaced by a download or loaded."""
    monkeypatch.setattr(registry, "REGISTRY", _bundled_registry(published))
    bundled = _bundle(registry.DATA_DIR, published)
    data = bytearray((bundled / filename).read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, different content
    (bundled / filename).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="reinstall") as info:
        download.fetch_model("tiny")
    assert str(bundled / filename) in str(info.value)
    with pytest.raises(ModelIntegrityError, match=filename):
        CINNParameterEstimator.from_pretrained("tiny")
    assert env.requests == 0


def test_incomplete_bundled_model_is_downloaded(
    env: Server, cache: Path, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "REGISTRY", _bundled_registry(published))
    bundled = _bundle(registry.DATA_DIR, published)
    (bundled / WEIGHTS_FILENAME).unlink()
    assert download.fetch_model("tiny") == cache / f"{FULL}.json"
    assert env.requests == 2


# ---------------------------------------------------------------- names and listing


def test_unknown_name_lists_available(env: Server) -> None:
    with pytest.raises(ModelNotFoundError, match=f"'nope'.*{FULL}.*tiny -> {FULL}") as info:
        download.fetch_model("nope")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        registry.resolve_name("../../etc/passwd")
    with pytest.raises(ModelNotFoundError):
        download.download_models([FULL, "nope"])
    assert env.requests == 0  # names are checked before any download


def test_unregistered_folder_must_be_given_as_a_path(
    env: Server, tmp_path: Path, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    published.model.save(tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"give it as a path, e.g. './mine'"):
        CINNParameterEstimator.from_pretrained("mine")
    model = CINNParameterEstimator.from_pretrained("./mine", device="cpu").model
    assert model.digest == published.model.digest and model.registry_name is None
    assert env.requests == 0


def test_aliases_and_versions(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    newer = RegistryEntry.from_dict(
        {**published.entry.to_dict(), "version": "0.10.0"}, "tiny-test-v0.10.0"
    )
    reg = Registry(
        {FULL: published.entry, newer.full_name: newer},
        {"tiny": FULL, "tiny-latest": "tiny-test-v0.10.0"},
    )
    monkeypatch.setattr(registry, "REGISTRY", reg)
    assert registry.resolve_name("tiny") == FULL
    assert registry.resolve_name("tiny-latest") == "tiny-test-v0.10.0"
    assert registry.resolve_name(FULL) == FULL
    assert registry.resolve_name("tiny-test") == "tiny-test-v0.10.0"  # 0.10 > 0.1 (not text order)


def test_list_models(env: Server, cache: Path, published: Published) -> None:
    table = cache_module.list_models()
    assert table.colnames == ["name", "version", "aliases", "description", "bundled", "cached"]
    assert list(table["name"]) == [FULL]
    assert table["aliases"][0] == "tiny"
    assert table["description"][0] == "tiny"
    assert not table["bundled"][0] and not table["cached"][0]
    download.fetch_model(FULL)
    assert cache_module.list_models()["cached"][0]
    assert env.requests == 2  # listing never downloads


def test_list_models_empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "REGISTRY", Registry())
    table = cache_module.list_models(cache_dir=tmp_path)
    assert len(table) == 0 and "cached" in table.colnames


# ---------------------------------------------------------------- registry file


def test_package_registry_is_valid() -> None:
    path = Path(registry.__file__).parents[1] / "data" / "registry.json"
    reg = Registry.read(path)
    assert reg == registry.REGISTRY
    assert "{version}" in reg.base_url
    doc = json.loads(path.read_text())
    assert doc["format_version"] == registry.REGISTRY_FORMAT_VERSION == 2
    for full, entry in reg.models.items():
        assert doc["models"][full]["digest"] == entry.digest
        assert all(f.size is not None and f.size > 0 for f in entry.files), full
        if entry.bundled is not None:  # bundled models must load and match the registry
            directory = cache_module._bundled_dir(entry)
            assert directory is not None, full
            model = CINNModel.load(directory, expected_sha256=entry.expected_sha256)
            assert model.sha256 == entry.weights.sha256
            assert model.digest == entry.digest
            for path_, f in cache_module._bundled_files(entry):
                assert path_.stat().st_size == f.size


def test_registry_round_trip(published: Published) -> None:
    reg = Registry({FULL: published.entry}, {"tiny": FULL})
    assert Registry.from_dict(reg.to_dict()) == reg


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(format_version=1), "format_version"),
        (lambda d: d["models"][FULL]["files"]["weights"].pop("size"), "missing key 'size'"),
        (lambda d: d["models"][FULL]["files"]["weights"].update(size=-1), "invalid size"),
        (lambda d: d["models"][FULL]["files"]["weights"].update(size=1.5), "invalid size"),
        (lambda d: d["models"][FULL]["files"]["weights"].update(url="x"), "url"),
        (lambda d: d["models"][FULL].update(digest="0" * 64), "digest"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["aliases"].update(tiny="missing-v1"), "aliases"),
        (lambda d: d["aliases"].update({FULL: FULL}), "alias"),
        (lambda d: d["models"][FULL]["files"]["weights"].update(sha256="x"), "SHA-256"),
        (lambda d: d["models"][FULL]["files"]["weights"].update(filename="../w"), "file name"),
        (lambda d: d["models"][FULL].update(version="0.2.0"), "key must be"),
        (lambda d: d["models"][FULL].update(bundled="../../x"), "bundled"),
        (lambda d: d["models"][FULL].pop("files"), "missing key 'files'"),
        (lambda d: d["models"][FULL].update(size=3), "size"),
    ],
)
def test_malformed_registry(published: Published, change: Any, match: str) -> None:
    d = Registry({FULL: published.entry}, {"tiny": FULL}).to_dict()
    change(d)
    with pytest.raises(ValueError, match=match):
        Registry.from_dict(d)


def test_make_registry_entry(published: Published, tmp_path: Path) -> None:
    entry = published.entry
    assert entry.full_name == FULL
    assert entry.metadata == RegistryFile(
        f"{FULL}.json", sha256_file(published.meta_file), published.meta_file.stat().st_size
    )
    assert entry.weights == RegistryFile(
        f"{FULL}.safetensors", sha256_file(published.weights_file),
        published.weights_file.stat().st_size,
    )
    assert entry.digest == published.model.digest
    assert entry.bundled is None
    # from a model directory, bundled
    published.model.save(tmp_path / "m")
    d = registry.make_registry_entry(tmp_path / "m", bundled=True, description="x")
    assert d[FULL]["bundled"] == FULL and d[FULL]["description"] == "x"
    assert d[FULL]["files"]["weights"]["sha256"] == registry.registry_sha256(
        tmp_path / "m" / WEIGHTS_FILENAME
    )
    (tmp_path / "m" / WEIGHTS_FILENAME).write_bytes(b"other")
    with pytest.raises(ValueError, match="weights_sha256"):
        registry.make_registry_entry(tmp_path / "m")


@pytest.mark.parametrize("alias", ["4most-hr", "4most-lr"])
def test_bundled_models_ship_a_working_fit_check(alias: str) -> None:
    """The bundled emulator loads (hash-verified) and gives chi2 ~ 1 for a spectrum of the
    model's kind, and well above the threshold for garbage (absorption lines turned into
    emission lines)."""
    import numpy as np
    from astropy import units as u
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from specutils_cinn import CINNParameterEstimator
    from specutils_cinn.flags import QualityFlag

    est = CINNParameterEstimator.from_pretrained(alias, device="cpu")
    md, fe = est.model.metadata, est.model.emulator
    assert fe is not None and md.emulator.chi2_threshold > 1
    star = {"teff": 5200.0, "logg": 4.3, "fe_h": -0.3, "vmic": 1.1, "vsini": 2.0, "mg_fe": 0.1,
            "ca_fe": 0.1, "ti_fe": 0.05, "mn_fe": 0.0, "ni_fe": 0.0, "li_fe": 0.5}
    truth = np.array([[star[p] for p in md.parameter_names]])
    labels, _ = fe.labels(md.parameter_names, truth)
    flux = np.full(md.grid.npix, np.nan)
    flux[fe.model_index] = fe.emulator(labels)[0, fe.emulator_index]
    rng = np.random.default_rng(5)
    sigma = np.full(md.grid.npix, 1.0 / 100.0)
    spectra = [flux + sigma * rng.normal(size=flux.size),
               2.0 - flux + sigma * rng.normal(size=flux.size)]
    t = est.predict(
        [Spectrum(flux=f * u.one, spectral_axis=md.grid.wavelength,
                  uncertainty=StdDevUncertainty(sigma)) for f in spectra],
        n_samples=100, seed=1, progress=False,
    )
    good, bad = t["fit_chi2"]
    assert 0.5 < good < 2.0 and not t["flags"][0] & QualityFlag.POOR_FIT
    assert bad > 2 * md.emulator.chi2_threshold and t["flags"][1] & QualityFlag.POOR_FIT
