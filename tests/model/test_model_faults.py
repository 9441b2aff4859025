"""Fault suite for model downloads, the cache and loading (issue 15).

A misbehaving HTTP server on 127.0.0.1 serves a tiny registered model: slow drip, stall,
dripped headers, oversize and endless streams, truncation, wrong hash, tampered metadata,
and two concurrent downloads into one cache. The time limits are lowered so that every
test runs in about a second.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from specutils_cinn import CINNParameterEstimator, cli
from specutils_cinn.flows import build_cinn
from specutils_cinn.model import (
    METADATA_FILENAME,
    CINNModel,
    ModelCacheError,
    ModelDownloadError,
    ModelIntegrityError,
    ModelLoadError,
    ModelMetadata,
    ParameterSpec,
    Registry,
    RegistryEntry,
    download,
    registry,
    sha256_file,
)
from specutils_cinn.model import cache as cache_module
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

FULL = "tiny-fault-v0.1.0"
NPIX = 32
META = f"/v0.1.0/{FULL}.json"
WEIGHTS = f"/v0.1.0/{FULL}.safetensors"


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
    meta = ModelMetadata(
        name="tiny-fault",
        version="0.1.0",
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
    torch.manual_seed(0)
    return CINNModel(meta, build_cinn(arch).eval())


@dataclass
class Published:
    model: CINNModel
    files: dict[str, bytes]  # URL path -> content
    entry: RegistryEntry


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    directory = tmp_path_factory.mktemp("assets")
    model = _tiny_model()
    meta_path = model.save(directory, registry_names=True)
    entry = RegistryEntry.from_dict(registry.make_registry_entry(meta_path)[FULL], FULL)
    files = {
        META: meta_path.read_bytes(),
        WEIGHTS: (directory / f"{FULL}.safetensors").read_bytes(),
    }
    return Published(model, files, entry)


# ---------------------------------------------------------------- a misbehaving server


@dataclass
class FaultServer:
    """Serves ``files``; ``modes[path]`` chooses a misbehavior (see `_Handler`)."""

    files: dict[str, bytes]
    modes: dict[str, str] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)  # body bytes written per path
    stop: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v{{version}}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, a body without Content-Length ends at close
    fault: FaultServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _head(self, length: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.fault.sent[self.path] += len(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        f = self.fault
        f.requests[self.path] += 1
        data = f.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        mode = f.modes.get(self.path, "normal")
        try:
            if mode == "normal":
                self._head(len(data))
                self._write(data)
            elif mode == "slow":  # complete, but slow enough for downloads to overlap
                self._head(len(data))
                for i in range(0, len(data), 1024):
                    self._write(data[i : i + 1024])
                    time.sleep(0.02)
            elif mode == "drip":  # 1 byte every 50 ms: never stalls, never ends
                self._head(len(data))
                for i in range(len(data)):
                    if f.stop.wait(0.05):
                        return
                    self._write(data[i : i + 1])
            elif mode == "stall":  # a few bytes, then nothing
                self._head(len(data))
                self._write(data[:10])
                f.stop.wait(10)
            elif mode == "header-drip":  # the headers themselves never end
                self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                while not f.stop.wait(0.05):
                    self.wfile.write(b"a")
                    self.wfile.flush()
            elif mode == "endless":  # no Content-Length, 300 MB of junk after the file
                self._head(None)
                self._write(data)
                junk = b"\0" * (1 << 16)
                for _ in range((300 << 20) // len(junk)):
                    if f.stop.is_set():
                        return
                    self._write(junk)
            elif mode == "big-length":  # announces 1 GB more than registered
                self._head(len(data) + (1 << 30))
                self._write(data)
                junk = b"\0" * (1 << 16)
                for _ in range((300 << 20) // len(junk)):
                    if f.stop.is_set():
                        return
                    self._write(junk)
            elif mode == "truncate":  # announces the right size, closes half way
                self._head(len(data))
                self._write(data[: len(data) // 2])
            elif mode == "flip":  # right size, one bit differs
                bad = bytearray(data)
                bad[len(bad) // 2] ^= 0x01
                self._head(len(bad))
                self._write(bytes(bad))
            elif mode == "tamper-metadata":  # edited label mean, valid JSON
                d = json.loads(data)
                d["parameters"][0]["mean"] += 500.0
                body = json.dumps(d).encode()
                self._head(len(body))
                self._write(body)
            else:  # pragma: no cover - a typo in a test
                raise AssertionError(mode)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # join the handler threads on server_close()
    block_on_close = True


@pytest.fixture
def server(published: Published) -> Iterator[FaultServer]:
    fault = FaultServer(dict(published.files))
    handler = type("Handler", (_Handler,), {"fault": fault})
    httpd = _Server(("127.0.0.1", 0), handler)
    fault.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fault
    finally:
        fault.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    published: Published,
    server: FaultServer,
    cache: Path,
) -> FaultServer:
    """The tiny model as the only registered one, served by ``server``, short time limits."""
    reg = Registry({FULL: published.entry}, {"tiny": FULL}, base_url="http://invalid.invalid/")
    monkeypatch.setattr(registry, "REGISTRY", reg)
    monkeypatch.setattr(registry, "DATA_DIR", tmp_path / "pkgdata")
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT", 30.0)
    monkeypatch.setattr(download, "DOWNLOAD_STALL_TIMEOUT", 5.0)
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 0)
    monkeypatch.setattr(download, "_RETRY_WAIT", 0.01)
    monkeypatch.setenv(download.URL_ENV, server.url())
    monkeypatch.setenv(cache_module.CACHE_ENV, str(cache))
    return server


def _cache_files(cache: Path) -> list[str]:
    """Everything in the cache, temporary files included."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _timed(fn: Callable[[], Any]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


# ---------------------------------------------------------------- downloads


def test_healthy_server_baseline(env: FaultServer, cache: Path, published: Published) -> None:
    """The fixture works: a normal download fills the cache and loads, verified."""
    model = CINNParameterEstimator.from_pretrained("tiny", device="cpu").model
    assert model.registry_name == FULL and model.digest == published.entry.digest
    assert _cache_files(cache) == [f"{FULL}.json", f"{FULL}.safetensors"]
    assert env.requests == {META: 1, WEIGHTS: 1}


@pytest.mark.slow  # waits out a download time limit (about 1 s)
def test_slow_drip_is_cut_off_by_the_time_limit(
    env: FaultServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6: 1 byte every 50 ms never trips a stall timeout; the overall limit ends it
    (and a download that ran out of time is not retried)."""
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT", 1.0)
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 1)
    env.modes[META] = "drip"

    def fetch() -> None:
        with pytest.raises(ModelDownloadError, match=r"took longer than 1 s.*DOWNLOAD_TIMEOUT"):
            download.fetch_model(FULL)

    assert _timed(fetch) < 2.5
    assert env.requests[META] == 1
    assert _cache_files(cache) == []


@pytest.mark.slow  # waits out a download time limit (about 1 s)
def test_dripping_headers_are_cut_off_too(
    env: FaultServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT", 1.0)
    env.modes[META] = "header-drip"

    def fetch() -> None:
        with pytest.raises(ModelDownloadError, match="took longer than 1 s"):
            download.fetch_model(FULL)

    assert _timed(fetch) < 2.5
    assert _cache_files(cache) == []


@pytest.mark.slow  # waits out a download time limit (about 1 s)
def test_stalled_download_times_out_and_is_retried(
    env: FaultServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "DOWNLOAD_STALL_TIMEOUT", 0.4)
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 1)
    env.modes[WEIGHTS] = "stall"

    def fetch() -> None:
        with pytest.raises(ModelDownloadError, match=r"no data for 0.4 s") as info:
            download.fetch_model(FULL)
        assert "specutils-cinn models download" in str(info.value)

    assert _timed(fetch) < 3.0
    assert env.requests[WEIGHTS] == 2
    assert _cache_files(cache) == [f"{FULL}.json"]  # the good file stays, nothing else


@pytest.mark.parametrize("mode", ["endless", "big-length"])
def test_oversize_stream_is_aborted_early(
    env: FaultServer, cache: Path, published: Published, mode: str
) -> None:
    """Finding 6: a 300 MB junk stream was downloaded in full before the hash check; the
    download now stops as soon as more bytes than registered arrive (or are announced)."""
    env.modes[WEIGHTS] = mode
    size = published.entry.weights.size
    assert size is not None
    with pytest.raises(ModelIntegrityError, match="does not match the registry") as info:
        download.fetch_model(FULL)
    assert f"{size:,}" in str(info.value)
    assert not isinstance(info.value, OSError)
    # what the server managed to write before the client hung up: socket buffers, not 300 MB
    assert env.sent[WEIGHTS] < size + (32 << 20), env.sent[WEIGHTS]
    assert _cache_files(cache) == [f"{FULL}.json"]


def test_truncated_download_is_discarded_and_retried(
    env: FaultServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "DOWNLOAD_RETRIES", 2)
    env.modes[WEIGHTS] = "truncate"
    with pytest.raises(ModelDownloadError, match=f"{FULL}.safetensors"):
        download.fetch_model(FULL)
    assert env.requests[WEIGHTS] == 3
    assert _cache_files(cache) == [f"{FULL}.json"]
    env.modes.clear()  # the server recovers: the next call completes the cache
    assert download.fetch_model(FULL) == cache / f"{FULL}.json"


def test_wrong_hash_is_discarded(env: FaultServer, cache: Path) -> None:
    env.modes[WEIGHTS] = "flip"
    with pytest.raises(ModelIntegrityError, match=r"SHA-256 is [0-9a-f]{64}, the registry"):
        download.fetch_model(FULL)
    assert _cache_files(cache) == [f"{FULL}.json"]


def test_tampered_metadata_is_rejected(env: FaultServer, cache: Path) -> None:
    """Finding 3: a metadata.json with an edited label mean is not the registered model."""
    env.modes[META] = "tamper-metadata"
    with pytest.raises(ModelIntegrityError, match=f"{FULL}.json .*does not match the registry"):
        CINNParameterEstimator.from_pretrained("tiny")
    assert _cache_files(cache) == []
    assert env.requests[WEIGHTS] == 0


def test_tampered_cache_is_repaired(
    env: FaultServer, cache: Path, published: Published
) -> None:
    download.fetch_model(FULL)
    meta = cache / f"{FULL}.json"
    d = json.loads(meta.read_text())
    d["posterior_calibration"] = {"scale": {"teff": 3.0}, "floor": {}}
    meta.write_text(json.dumps(d))
    model = CINNParameterEstimator.from_pretrained(FULL, device="cpu").model
    assert model.digest == published.entry.digest
    assert model.metadata.posterior_calibration is None
    assert env.requests[META] == 2


def test_file_changed_between_fetch_and_load_is_an_error(
    env: FaultServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry's hashes are checked again on the bytes that are loaded."""
    real_fetch = download.fetch_model

    def fetch_then_tamper(*args: Any, **kwargs: Any) -> Path:
        path = real_fetch(*args, **kwargs)
        d = json.loads(path.read_text())
        d["emulator"] = None
        d["snr_range"] = [1.0, 300.0]
        path.write_text(json.dumps(d))
        return path

    monkeypatch.setattr(download, "fetch_model", fetch_then_tamper)
    with pytest.raises(ModelIntegrityError, match=f"metadata file .*{FULL}.json does not match"):
        CINNParameterEstimator.from_pretrained("tiny")


def test_concurrent_downloads_leave_one_valid_copy(
    env: FaultServer, cache: Path, published: Published
) -> None:
    """Two threads downloading the same model into one cache both succeed, and the cache
    holds exactly one complete, valid copy of each file (no temporary files)."""
    env.modes[META] = env.modes[WEIGHTS] = "slow"
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = CINNParameterEstimator.from_pretrained("tiny", device="cpu")
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for r in results:
        assert isinstance(r, CINNParameterEstimator), r
        assert r.model.digest == published.entry.digest
    assert _cache_files(cache) == [f"{FULL}.json", f"{FULL}.safetensors"]
    for f in published.entry.files:
        assert sha256_file(cache / f.filename) == f.sha256
    assert env.requests[WEIGHTS] == 2  # both really downloaded, concurrently


# ---------------------------------------------------------------- the cache directory


@pytest.mark.parametrize("kind", ["file", "below a file"])
def test_bad_cache_variable_names_it(
    env: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Item from finding 9: a SPECUTILS_CINN_CACHE that is a file, or that cannot be
    created, gives an error naming the variable (was a bare NotADirectoryError)."""
    (tmp_path / "afile").write_text("x")
    bad = tmp_path / "afile" if kind == "file" else tmp_path / "afile" / "sub"
    monkeypatch.setenv(cache_module.CACHE_ENV, str(bad))
    with pytest.raises(ModelCacheError, match=r"\$SPECUTILS_CINN_CACHE") as info:
        download.fetch_model(FULL)
    assert str(bad) in str(info.value)
    assert env.requests.total() == 0
    if kind == "file":
        with pytest.raises(ModelCacheError, match="SPECUTILS_CINN_CACHE.*not a directory"):
            cache_module.cache_dir()
        with pytest.raises(ModelCacheError, match="SPECUTILS_CINN_CACHE"):
            cache_module.list_models()
    with pytest.raises(ModelCacheError, match=r"from cache_dir\)"):
        download.fetch_model(FULL, cache_dir=bad)


def test_complete_read_only_cache_is_used(
    env: FaultServer, cache: Path, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pre-filled cache is not written to (it may be read-only on a compute node)."""
    download.fetch_model(FULL)

    def no_writes(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the complete cache was written to")

    monkeypatch.setattr(cache_module, "_prepare_cache", no_writes)
    assert download.fetch_model(FULL) == cache / f"{FULL}.json"
    assert env.requests.total() == 2


# ---------------------------------------------------------------- command line


def _spectrum_file(tmp_path: Path) -> str:
    from astropy import units as u
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    wave = (5000.0 + np.arange(NPIX)) * u.AA
    unit = u.Unit("1e-17 erg / (s cm2 Angstrom)")
    spec = Spectrum(flux=np.ones(NPIX) * unit, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(np.full(NPIX, 0.01) * unit))
    path = tmp_path / "star.fits"
    spec.write(path, format="tabular-fits")
    return str(path)


def test_cli_model_that_does_not_fit_exits_cleanly(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 5: the CLI printed a torch traceback (RuntimeError of the allocator) for a
    metadata.json asking for a network that does not fit the weights. Now: one line, exit 2,
    no network allocated."""
    import specutils_cinn.flows

    real = specutils_cinn.flows.build_cinn

    def build(arch: Any) -> torch.nn.Module:
        if torch.empty(0).device.type != "meta":  # what the allocator did with 12000
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return real(arch)

    monkeypatch.setattr(specutils_cinn.flows, "build_cinn", build)
    model_dir = tmp_path / "model"
    published.model.save(model_dir)
    d = json.loads((model_dir / METADATA_FILENAME).read_text())
    d["architecture"]["subnet_hidden"] = 12000
    (model_dir / METADATA_FILENAME).write_text(json.dumps(d))
    spectrum = _spectrum_file(tmp_path)
    for argv in (
        ["predict", spectrum, "-m", str(model_dir), "-o", str(tmp_path / "o.ecsv"),
         "--format", "tabular-fits", "--device", "cpu"],
        ["models", "info", str(model_dir)],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "do not fit the architecture" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.ecsv").exists()


def test_cli_models_info_shows_the_digest_of_a_path(
    tmp_path: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    published.model.save(model_dir)
    assert cli.main(["models", "info", str(model_dir)]) == 0
    assert published.entry.digest in capsys.readouterr().out


def test_cli_bad_cache_exits_cleanly(
    env: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv(cache_module.CACHE_ENV, str(tmp_path / "afile"))
    assert cli.main(["models", "download", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "SPECUTILS_CINN_CACHE" in err and "Traceback" not in err


def test_cli_download_error_exits_cleanly(
    env: FaultServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT", 0.5)
    env.modes[META] = "drip"
    assert cli.main(["models", "download", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "took longer than 0.5 s" in err and "Traceback" not in err


# ---------------------------------------------------------------- local files


def test_local_model_errors_are_model_load_errors(tmp_path: Path, published: Published) -> None:
    """Every way a local model can be broken gives a ModelLoadError naming the file."""
    base = tmp_path / "base"
    published.model.save(base)

    def broken(name: str, edit: Callable[[Path], None]) -> Path:
        d = tmp_path / name
        shutil.copytree(base, d)
        edit(d)
        return d

    def set_meta(key: str, value: Any) -> Callable[[Path], None]:
        def edit(d: Path) -> None:
            doc = json.loads((d / METADATA_FILENAME).read_text())
            doc[key] = value
            (d / METADATA_FILENAME).write_text(json.dumps(doc))
        return edit

    cases = {
        "metadata not JSON": lambda d: (d / METADATA_FILENAME).write_text("{"),
        "metadata nested deeply": lambda d: (d / METADATA_FILENAME).write_text("[" * 100_000),
        "metadata not UTF-8": lambda d: (d / METADATA_FILENAME).write_bytes(b"\xff\xfe{}"),
        "weights hash": set_meta("weights_sha256", "0" * 64),
        "architecture": set_meta("architecture", {"n_params": 2}),
        "huge grid": set_meta("wavelength_grid", {"segments": [
            {"name": "A", "start": 1000.0, "stop": 1e9, "step": 1e-3}], "medium": "air"}),
        "weights a directory": lambda d: ((d / "weights.safetensors").unlink(),
                                          (d / "weights.safetensors").mkdir()),
    }
    for name, edit in cases.items():
        d = broken(name.replace(" ", "-"), edit)
        with pytest.raises(ModelLoadError) as info:
            CINNModel.load(d)
        assert str(d) in str(info.value), name


def test_digest_of_a_local_model_is_reported(tmp_path: Path, published: Published) -> None:
    published.model.save(tmp_path / "m")
    files = [tmp_path / "m" / METADATA_FILENAME, tmp_path / "m" / "weights.safetensors"]
    text = "specutils-cinn model digest 1\n" + "".join(
        f"{role} {sha256_file(p)}\n" for role, p in zip(("metadata", "weights"), files,
                                                          strict=True))
    expected = hashlib.sha256(text.encode()).hexdigest()
    est = CINNParameterEstimator.from_pretrained(tmp_path / "m", device="cpu")
    assert est.model.digest == expected == published.entry.digest
    meta = est._meta(10, 1, torch.device("cpu"))
    assert meta["MODELDIG"] == expected and meta["MODELSRC"] == "local"
