"""The emulator's data: a synthesis grid degraded to a 4MOST grid (``emulator prepare``)."""

import numpy as np
import pytest

from specutils_cinn import cli
from specutils_cinn.emulator import load_training_data
from specutils_cinn.emulator.prepare import prepare_training_data, restrict_setup
from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.parameters import EMULATOR_LABELS


def _seed_grid(path, n=10, labels=EMULATOR_LABELS):
    """A tiny grid in the seed grid's .npz layout: 6000-6030 A for LR, one line per star."""
    rng = np.random.default_rng(0)
    arrays = {f"label_{k}": rng.uniform(0.0, 1.0, n) for k in labels}
    arrays["star_id"] = np.arange(n)
    for name, (start, stop) in {"hr_blue": (4000.0, 4001.0), "hr_green": (5200.0, 5201.0),
                                "hr_red": (6200.0, 6201.0), "lr": (6000.0, 6030.0)}.items():
        step = 0.01
        wave = start + step * np.arange(int(round((stop - start) / step)) + 1)
        depth = 0.5 * rng.uniform(size=(n, 1))
        arrays[name] = 1.0 - depth * np.exp(-0.5 * ((wave - 0.5 * (start + stop)) / 0.1) ** 2)
        arrays[f"grid_{name}"] = np.array([start, stop, step])
    np.savez(path, **arrays)
    return path


def test_restrict_setup_insets_by_the_lsf_and_keeps_the_phase():
    full = fourmost_setup("lr")
    cut = restrict_setup(full, [(6000.0, 6030.0)])
    (seg,) = cut.grid.segments
    assert 6000.0 < seg.start < 6005.0 and 6025.0 < seg.stop < 6030.0
    assert (seg.start - full.grid.segments[0].start) / seg.step == pytest.approx(
        round((seg.start - full.grid.segments[0].start) / seg.step))
    with pytest.raises(ValueError, match="covers no segment"):
        restrict_setup(full, [(100.0, 200.0)])


def test_prepare_from_a_seed_grid_through_the_cli(tmp_path, capsys):
    grid = _seed_grid(tmp_path / "seed.npz")
    out = tmp_path / "emu.npz"
    assert cli.main(["emulator", "prepare", "--grid", str(grid), "--setup", "lr",
                     "-o", str(out)]) == 0
    assert "10 stars (1 held out)" in capsys.readouterr().out
    data = load_training_data(out)
    assert data["label_names"] == list(EMULATOR_LABELS)
    assert data["flux"].shape == (10, data["setup"].grid.npix) and data["flux"].dtype == np.float32
    assert list(data["holdout"]) == [False] * 9 + [True]  # star_id % 10 == 9
    assert data["setup"].grid.segments[0].step == 0.5
    # the continuum stays at 1, the line (6015 A) is diluted by the LSF but still there
    wave = data["setup"].grid.wavelength.value
    assert np.allclose(data["flux"][:, np.abs(wave - 6015.0) > 5.0], 1.0, atol=1e-4)
    line = data["flux"][:, np.argmin(np.abs(wave - 6015.0))]
    assert np.all(line < 1.0) and np.all(line > 0.5)
    assert data["provenance"]["synthesis_segments"] == ["lr"]


def test_prepare_refuses_bad_sources(tmp_path, capsys):
    grid = _seed_grid(tmp_path / "few.npz", labels=EMULATOR_LABELS[:3])
    with pytest.raises(ValueError, match="missing labels"):
        prepare_training_data(tmp_path / "x.npz", "lr", grid=grid)
    with pytest.raises(ValueError, match="exactly one"):
        prepare_training_data(tmp_path / "x.npz", "lr", grid=grid, shards=tmp_path)
    with pytest.raises(ValueError, match="setup"):
        prepare_training_data(tmp_path / "x.npz", "mr", grid=grid)
    # the command line: one line, exit status 2
    assert cli.main(["emulator", "prepare", "--grid", str(grid), "--setup", "lr",
                     "-o", str(tmp_path / "x.npz")]) == 2
    assert "missing labels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a source is required
        cli.main(["emulator", "prepare", "--setup", "lr", "-o", str(tmp_path / "x.npz")])
    assert info.value.code == 2
