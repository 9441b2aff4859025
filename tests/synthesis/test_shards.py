"""Grid v2: committed shards at 4MOST sampling (shards.py) and the sharded run (runner.py)."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.synthesis.runner import GridConfig, pack_shards, run_grid
from specutils_cinn.synthesis.sampling import doppler_windows
from specutils_cinn.synthesis.shards import (
    instrument_spectra,
    read_shards,
    shard_star_ids,
    write_shard,
)


@dataclass
class _Fake:
    wavelength: list
    flux: list


def fake_synthesis(labels, windows, options):
    """A continuum with one Gaussian line per 50 A whose depth follows [Fe/H]."""
    waves, fluxes = [], []
    depth = 0.3 + 0.1 * labels["fe_h"]
    for start, stop, step in windows:
        w = np.arange(start, stop + step / 2, step)
        centers = np.arange(3700.0, 9500.0, 50.0)
        f = np.ones_like(w)
        near = np.abs(w[:, None] - centers[None, :]) < 2.0
        f -= depth * np.sum(np.exp(-0.5 * ((w[:, None] - centers) / 0.1) ** 2) * near, axis=1)
        waves.append(w)
        fluxes.append(f)
    if labels["teff"] > 6900:
        raise RuntimeError("deliberate failure")
    return _Fake(waves, fluxes)


def _config(tmp_path, n=5, **kw):
    doc = {"grid": {"output": "work/g.h5", "n_stars": n, "processes": 1, "shards": "grid/x",
                    "shard_size": 2},
           "design": {"seed": 3},
           "window": [{"name": "full", "start": 3690.0, "stop": 9510.0, "step": 0.2}],
           "synthesis": {"line_lists": "ges", **kw}}
    return GridConfig.from_dict(doc, base=tmp_path)


def test_doppler_windows_cover_and_refine():
    labels = {"teff": 4000.0, "vmic": 0.5}
    pieces = doppler_windows(labels, 3690.0, 9510.0, 0.03, 0.5)
    assert pieces[0][0] == 3690.0 and pieces[-1][1] == 9510.0
    for (_a0, b0, s0), (a1, _, _) in zip(pieces, pieces[1:], strict=False):
        assert a1 == pytest.approx(b0 + s0)          # contiguous, no overlap
    steps = [p[2] for p in pieces]
    assert steps == sorted(steps)                     # redder pieces coarser
    # half the Doppler width of iron at 0.7 Teff with vmic 0.5 at 3690 A: ~0.0064 A
    assert 0.006 < steps[0] < 0.007
    hot = doppler_windows({"teff": 7000.0, "vmic": 2.5}, 3690.0, 9510.0, 0.03, 0.5)
    assert max(p[2] for p in hot) == 0.03             # capped at the window's own step
    with pytest.raises(ValueError, match="too fine"):
        doppler_windows(labels, 3690.0, 9510.0, 0.03, 0.01)


#: Strong metal lines whose wings reach tens of Angstrom (air): Ca II H and K, Al I, Fe I,
#: Ca I 4227, Mg b, Na D, the Ca II triplet, Mg I 8807.
STRONG_LINES = (3933.66, 3944.01, 3961.52, 3968.47, 4045.81, 4226.73, 5167.32, 5172.68,
                5183.60, 5889.95, 5895.92, 8498.02, 8542.09, 8662.14, 8806.76)


@pytest.mark.parametrize("teff", [4000.0, 5000.0, 6000.0, 7000.0])
@pytest.mark.parametrize("vmic", [0.5, 1.5, 2.5])
def test_doppler_piece_ends_avoid_strong_lines(teff, vmic):
    """bsyn ignores lines more than 2 A outside a window (xlmarg in Turbospectrum's input.f),
    so a piece that ends near a strong line loses that line's wing. The pieces of the v2 grid
    end at the same places for every star (3690 A x 1.25^k), away from strong lines."""
    pieces = doppler_windows({"teff": teff, "vmic": vmic}, 3690.0, 9510.0, 0.03, 0.5)
    ends = [p[1] for p in pieces[:-1]]
    np.testing.assert_allclose(ends, 3690.0 * 1.25 ** np.arange(1, len(ends) + 1), atol=0.5)
    assert min(abs(e - line) for e in ends for line in STRONG_LINES) > 15.0


def test_shard_round_trip(tmp_path):
    hr, lr = fourmost_setup("hr").grid.npix, fourmost_setup("lr").grid.npix
    rng = np.random.default_rng(1)
    spectra = {"hr": 1 - 0.5 * rng.random((3, hr)), "lr": 1 - 0.5 * rng.random((3, lr))}
    path = write_shard(tmp_path / "shard_00000.h5", star_id=[0, 1, 3],
                       labels={"teff": [5000.0, 6000.0, 4500.0], "fe_h": [0.0, -1.0, -3.0]},
                       spectra=spectra, info=[{"li_physics": "1D LTE"}] * 3,
                       provenance={"physics": "test"}, failed=[{"star_id": 2, "error": "x"}])
    assert path.stat().st_size < 3 * 200_000
    grid = read_shards(tmp_path, "hr")
    assert list(grid.segments) == ["HB", "HG", "HR"]
    flux = np.concatenate([grid.segments[s][1] for s in grid.segments], axis=1)
    # float16 depth: absolute error below 2.5e-4 for depths under 0.5
    np.testing.assert_allclose(flux, spectra["hr"], atol=2.5e-4)
    np.testing.assert_allclose(grid.segments["HB"][0], fourmost_setup("hr").grid.segments[0]
                               .centers)
    assert grid.meta["physics"] == "test"
    assert shard_star_ids(tmp_path) == ({0, 1, 3}, {2})
    with pytest.raises(ValueError, match="shape"):
        write_shard(tmp_path / "shard_00001.h5", star_id=[0], labels={}, spectra={"hr":
                    np.ones((1, 10))}, info=[{}], provenance={})


def test_sharded_run_resumes_and_packs(tmp_path):
    cfg = _config(tmp_path)
    summary = run_grid(cfg, synthesize_fn=fake_synthesis, progress=False)
    assert summary.done + summary.failed == 5
    shards = sorted(cfg.shards.glob("shard_*.h5"))
    assert [p.name for p in shards] == ["shard_00000.h5", "shard_00001.h5", "shard_00002.h5"]
    done, failed = shard_star_ids(cfg.shards)
    assert done | failed == set(range(5)) and not done & failed
    # a new machine with only the shards: nothing is synthesized again
    for part in cfg.parts_dir.glob("star_*"):
        part.unlink()
    again = run_grid(cfg, synthesize_fn=fake_synthesis, progress=False)
    assert again.done == 0 and again.skipped == 5
    grid = read_shards(cfg.shards, "lr")
    assert sorted(grid.star_id) == sorted(done)
    assert grid.segments["LJ"][1].shape == (len(done), fourmost_setup("lr").grid.npix)
    # the spectra are what the instrument records of the synthesis
    i = 0
    labels = {k: grid.labels[k][i] for k in grid.labels}
    fake = fake_synthesis(labels, [(3690.0, 9510.0, 0.2)], {})
    expect = instrument_spectra(fake.wavelength[0], fake.flux[0], ["lr"])["lr"]
    np.testing.assert_allclose(grid.segments["LJ"][1][i], expect, atol=3e-4)
    info = json.loads(json.dumps(grid.meta))
    assert info["shard_size"] == 2 and info["setups"] == ["hr", "lr"]


def test_synthesize_star_is_what_a_run_stores(tmp_path, monkeypatch):
    """synthesize_star gives the spectrum a sharded run keeps (before the instrument)."""
    from specutils_cinn.synthesis import runner, synthesize_star

    monkeypatch.setattr(runner, "_turbospectrum_v2",
                        lambda labels, pieces, options, parts: (
                            fake_synthesis(labels, pieces, options), {"li_physics": "x"}, None))
    cfg = _config(tmp_path, n=2)
    run_grid(cfg, synthesize_fn=None, progress=False)
    grid = read_shards(cfg.shards, "lr")
    labels = {k: grid.labels[k][0] for k in grid.labels}
    wave, flux, info = synthesize_star(cfg, labels, tmp_path / "w")
    assert np.all(np.diff(wave) > 0) and info["li_physics"] == "x"
    assert info["sampling"] == [[3690.0, 9510.0, 0.2]]
    np.testing.assert_allclose(instrument_spectra(wave, flux, ["lr"])["lr"],
                               grid.segments["LJ"][1][0], atol=3e-4)
    plain = GridConfig.from_dict({"grid": {"output": "g.h5", "n_stars": 1},
                                  "window": [{"name": "w", "start": 1, "stop": 2, "step": 1}]},
                                 base=tmp_path)
    with pytest.raises(ValueError, match="sharded"):
        synthesize_star(plain, labels, tmp_path)


def test_pack_needs_shards(tmp_path):
    cfg = GridConfig.from_dict({"grid": {"output": "g.h5", "n_stars": 1},
                                "window": [{"name": "w", "start": 1, "stop": 2, "step": 1}]},
                               base=tmp_path)
    with pytest.raises(ValueError, match="shards"):
        pack_shards(cfg)
    with pytest.raises(ValueError, match="lithium"):
        _config(tmp_path, lithium="nlte")


def _two_shards(folder):
    hr, lr = fourmost_setup("hr").grid.npix, fourmost_setup("lr").grid.npix
    for k in range(2):
        write_shard(folder / f"shard_{k:05d}.h5", star_id=[2 * k, 2 * k + 1],
                    labels={"teff": [5000.0, 6000.0]},
                    spectra={"hr": np.full((2, hr), 0.9), "lr": np.full((2, lr), 0.8)},
                    info=[{}, {}], provenance={"physics": "test"})


@pytest.fixture
def served(tmp_path):
    """The shards of a grid on a loopback HTTP server; yields (folder, url, request counts)."""
    import functools
    import http.server
    import threading
    from collections import Counter

    root = tmp_path / "www"
    folder = root / "v1.0.0"
    folder.mkdir(parents=True)
    _two_shards(folder)
    counts = Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            counts[self.path] += 1
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/v{{version}}/", counts
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_grid_product_fetch_verifies_and_caches(served, tmp_path):
    from specutils_cinn.model import ModelDownloadError, ModelIntegrityError, Registry
    from specutils_cinn.synthesis.shards import GridProduct, fetch_grid, grid_product

    folder, url, counts = served
    product = grid_product(folder, name="test-grid", version="1.0.0",
                           description="two shards", base_url=url)
    assert [f.filename for f in product.files] == ["shard_00000.h5", "shard_00001.h5"]
    reg = Registry(grids={product.full_name: product.to_dict()})
    assert Registry.from_dict(reg.to_dict()).grids == reg.grids       # round trip
    assert GridProduct.from_dict(product.to_dict(), product.full_name) == product
    got = fetch_grid("test-grid", cache_dir=tmp_path / "cache", registry=reg)
    for f in product.files:
        assert (got / f.filename).read_bytes() == (folder / f.filename).read_bytes()
    assert sorted(read_shards(got, "hr").star_id) == [0, 1, 2, 3]
    fetch_grid("test-grid-v1.0.0", cache_dir=tmp_path / "cache", registry=reg)
    assert sum(counts.values()) == 2                  # verified cache: no second download
    # a published file that does not match its registered hash is refused
    (got / "shard_00001.h5").unlink()
    (folder / "shard_00001.h5").write_bytes(b"not the grid")
    with pytest.raises((ModelDownloadError, ModelIntegrityError)):
        fetch_grid("test-grid", cache_dir=tmp_path / "cache", registry=reg)
    assert not (got / "shard_00001.h5").exists()
    with pytest.raises(KeyError, match="no grid"):
        fetch_grid("other", cache_dir=tmp_path / "cache", registry=reg)
    bad = dict(product.to_dict(), files=[{"filename": "x.h5", "sha256": "0" * 64, "size": 1}])
    with pytest.raises(ValueError, match="shard_NNNNN"):
        GridProduct.from_dict(bad, product.full_name)


def test_prepare_emulator_data_from_shards(tmp_path):
    """``specutils-cinn emulator prepare --shards``: the v2 grid's spectra as emulator data."""
    from specutils_cinn.emulator.prepare import prepare_training_data

    cfg = _config(tmp_path, n=4)
    run_grid(cfg, synthesize_fn=fake_synthesis, progress=False)
    out = tmp_path / "emu.npz"
    prepare_training_data(out, "lr", shards=cfg.shards, step=0.5)
    data = np.load(out)
    grid = read_shards(cfg.shards, "lr")
    assert data["flux"].shape == (len(grid), fourmost_setup("lr").grid.npix // 2)
    # averages of pairs of native pixels
    np.testing.assert_allclose(data["flux"][:, 0], grid.segments["LJ"][1][:, :2].mean(1),
                               rtol=1e-6)
    assert list(data["label_names"])[:3] == ["teff", "logg", "fe_h"]
    with pytest.raises(ValueError, match="whole multiple"):
        prepare_training_data(out, "lr", shards=cfg.shards, step=0.3)
