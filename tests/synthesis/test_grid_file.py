import numpy as np
import pytest

from specutils_cinn.synthesis.grid_file import SynthesisGrid, holdout_mask, read_grid, write_grid


def _grid(n=12, p=50):
    rng = np.random.default_rng(1)
    return SynthesisGrid(
        labels={"teff": rng.uniform(4000, 7000, n), "fe_h": rng.uniform(-2, 0, n)},
        star_id=np.arange(n) * 3,
        segments={"hr_green": (np.linspace(5160, 5730, p), rng.uniform(0.2, 1, (n, p))),
                  "lr": (np.linspace(3700, 9500, 2 * p), rng.uniform(0.2, 1, (n, 2 * p)))},
        atmosphere={"file": np.asarray([f"m{i}.mod" for i in range(n)]),
                    "interpolated": np.ones(n, bool)},
        seconds=rng.uniform(5, 10, n),
    )


def test_round_trip(tmp_path):
    g = _grid()
    path = write_grid(tmp_path / "g.h5", g, provenance={"code": "test"})
    r = read_grid(path)
    assert len(r) == len(g) and r.label_names == sorted(g.labels)
    np.testing.assert_array_equal(r.star_id, g.star_id)
    np.testing.assert_array_equal(r.holdout, holdout_mask(g.star_id))
    for k, (w, f) in g.segments.items():
        np.testing.assert_array_equal(r.segments[k][0], w)
        np.testing.assert_array_equal(r.segments[k][1], f.astype(np.float32))
    assert list(r.atmosphere["file"]) == list(g.atmosphere["file"])
    assert r.meta["provenance"] == {"code": "test"}
    only = read_grid(path, segments=["lr"])
    assert list(only.segments) == ["lr"]
    with pytest.raises(FileExistsError):
        write_grid(path, g)


def test_holdout_and_subset():
    g = _grid(30)
    assert g.holdout.sum() == np.sum(np.arange(30) * 3 % 10 == 9)
    s = g.subset(~g.holdout)
    assert not s.holdout.any() and len(s) == len(g) - g.holdout.sum()
    np.testing.assert_array_equal(s.label_array(["teff"])[:, 0], g.labels["teff"][~g.holdout])
    with pytest.raises(KeyError, match="mg_fe"):
        g.label_array(["mg_fe"])


def test_shape_errors_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="flux shape"):
        SynthesisGrid({"teff": np.ones(3)}, np.arange(3), {"x": (np.arange(4), np.ones((2, 4)))})
    with pytest.raises(FileNotFoundError):
        read_grid(tmp_path / "none.h5")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="not a specutils-cinn synthesis grid"):
        read_grid(tmp_path / "other.h5")


def test_reads_seed_npz_layout(tmp_path):
    n = 5
    np.savez(tmp_path / "seed.npz", label_teff=np.linspace(4000, 6000, n),
             label_logg=np.full(n, 4.0), star_id=np.arange(n),
             grid_lr=np.array([3700.0, 3701.0, 0.5]), lr=np.ones((n, 3), np.float16))
    g = read_grid(tmp_path / "seed.npz")
    assert g.segments["lr"][1].shape == (n, 3)
    np.testing.assert_allclose(g.segments["lr"][0], [3700.0, 3700.5, 3701.0])
