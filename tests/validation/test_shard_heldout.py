"""Held-out stars of a v2 grid (a folder of shards) on a model's grid (``heldout_from_grid``).

``heldout_from_grid`` reads only the estimator's ``model.metadata`` (grid, resolving power,
parameter names and ranges, training record), so a stand-in with those fields plays a model
on the 4MOST HR grid (no network is built or run).
"""

from types import SimpleNamespace

import numpy as np
import pytest

from specutils_cinn.instruments import InstrumentSetup, degrade, fourmost_setup
from specutils_cinn.synthesis.grid_file import SynthesisGrid, write_grid
from specutils_cinn.synthesis.shards import write_shard
from specutils_cinn.validation.heldout import heldout_from_grid
from specutils_cinn.validation.shard_heldout import (
    grid_source,
    lower_resolution,
    shard_setup_name,
)
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid, crop_grid

HR = fourmost_setup("hr")
R_HR = dict(HR.resolving_power)


def _estimator(grid=HR.grid, *, params=("teff", "logg", "fe_h", "vsini"), rp=None,
               training=None):
    ranges = {"teff": (4000.0, 7000.0), "logg": (1.0, 5.0), "fe_h": (-4.0, 0.5),
              "vsini": (0.0, 25.0), "vmacro": (0.0, 8.0)}
    md = SimpleNamespace(
        grid=grid, full_name="test-hr", parameter_names=list(params),
        ranges=np.array([ranges.get(p, (0.0, 1.0)) for p in params]),
        resolving_power=rp if rp is not None else {s.name: R_HR[s.name] for s in grid.segments},
        training=training if training is not None else {"data": {"macroturbulence": None},
                                                         "validation_groups": [3]})
    return SimpleNamespace(model=SimpleNamespace(metadata=md))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Ten stars with one deep narrow line per HR arm; star 9 is the held-out one."""
    root = tmp_path_factory.mktemp("v2") / "shards"
    wave = HR.grid.wavelength.value
    flux = np.ones((10, wave.size))
    for seg in HR.grid.segments:
        for mid in (0.5 * (seg.start + seg.stop), seg.start + 60.0):
            flux -= 0.6 * np.exp(-0.5 * ((wave - mid) / 0.08) ** 2)
    labels = {k: list(np.linspace(0.1, 0.2, 10)) for k in
              ("fe_h", "mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe", "li_fe", "a_li")}
    labels.update(teff=list(np.linspace(5000, 6000, 10)), logg=[4.0] * 10, vmic=[1.0] * 10)
    write_shard(root / "shard_00000.h5", star_id=list(range(10)), labels=labels,
                spectra={"hr": flux}, info=[{}] * 10, provenance={"physics": "test"})
    # the stored flux (float16 depth)
    from specutils_cinn.synthesis.shards import read_shards

    g = read_shards(root, "hr")
    stored = np.concatenate([g.segments[s.name][1] for s in HR.grid.segments], axis=1)
    return root, stored.astype(np.float64)


def test_holdout_stars_rotated_on_the_model_grid(shards):
    root, stored = shards
    held = heldout_from_grid(_estimator(), root, "holdout", 3, seed=2)
    assert held.flux.shape == (3, HR.grid.npix)
    np.testing.assert_array_equal(held.star, [9, 9, 9])  # star_id % 10 == 9 only
    assert held.truth[:, 0] == pytest.approx([6000.0] * 3)  # teff of star 9
    assert held.truth[:, 2] == pytest.approx([0.2] * 3)
    vsini = held.truth[:, 3]
    assert np.all((vsini >= 0) & (vsini <= 25)) and np.unique(vsini).size == 3
    assert held.extra["mg_fe"] == pytest.approx([0.2] * 3) and "vmacro" not in held.extra
    # rotated: shallower lines, equivalent width kept
    for row in held.flux:
        assert row.min() > stored[9].min() + 0.03
        for sl in HR.grid.segment_slices:
            np.testing.assert_allclose((1 - row[sl]).sum(), (1 - stored[9, sl]).sum(), rtol=2e-3)
    assert "shards" in held.description and "BinnedRotation" in held.description
    assert "no macroturbulence" in held.description
    assert held.higher_resolution_possible is False
    # the same draws for the same seed
    again = heldout_from_grid(_estimator(), root, "holdout", 3, seed=2)
    np.testing.assert_array_equal(again.flux, held.flux)


def test_grid_source_names_file_or_shards(shards, tmp_path):
    root, _ = shards
    assert grid_source(root) == "shards (v2 grid shards: 1 files, shard_00000.h5-shard_00000.h5)"
    assert grid_source(tmp_path / "g.h5") == "g.h5"
    held = heldout_from_grid(_estimator(), root, "holdout", 1, seed=0)
    assert held.description.startswith("``" + grid_source(root) + "``")


def test_validation_groups_and_no_rotation_maps_pixels_exactly(shards):
    root, stored = shards
    est = _estimator(params=("teff", "logg"))
    held = heldout_from_grid(est, root, "validation-groups", 2, seed=0)
    np.testing.assert_array_equal(held.star, [3, 3])
    # no v sin i, no macroturbulence: the shard pixels themselves
    np.testing.assert_array_equal(held.flux, np.repeat(stored[[3]], 2, axis=0))
    assert "no rotation" in held.description


def test_cropped_model_grid_takes_the_same_pixels(shards):
    root, _ = shards
    full = heldout_from_grid(_estimator(), root, "holdout", 2, seed=5)
    crop, keep = crop_grid(HR.grid, ["HG", "HR"], (5300.0, 6500.0))
    held = heldout_from_grid(_estimator(crop), root, "holdout", 2, seed=5)
    assert held.flux.shape == (2, crop.npix)
    # rotated on the setup's full arms, then cropped: the same values as the full grid's
    np.testing.assert_allclose(held.flux, full.flux[:, keep], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(held.truth, full.truth)


def test_the_v1_model_takes_every_other_shard_pixel(shards):
    """The bundled v1 model (HG and HR at 0.1 A) is a crop of the shards' HR pixels."""
    from specutils_cinn import CINNParameterEstimator

    est = CINNParameterEstimator.from_pretrained(device="cpu")
    md = est.model.metadata
    assert md.grid.segments[0].step == 0.1 and "vsini" in md.parameter_names
    root, _ = shards
    held = heldout_from_grid(est, root, "holdout", 2, seed=6)
    full = heldout_from_grid(_estimator(), root, "holdout", 2, seed=6)
    where = np.rint((md.grid.wavelength.value - 3900.0) / 0.05)
    cols = np.searchsorted(np.rint((HR.grid.wavelength.value - 3900.0) / 0.05), where)
    np.testing.assert_allclose(held.flux, full.flux[:, cols], rtol=0, atol=1e-12)
    j = md.parameter_names.index("vsini")
    np.testing.assert_array_equal(held.truth[:, j], full.truth[:, 3])


def test_macroturbulence_of_the_training_simulator(shards):
    root, stored = shards
    training = {"data": {"macroturbulence": {"distribution": "uniform", "range": [3.0, 6.0]}}}
    est = _estimator(params=("teff", "logg"), training=training)
    held = heldout_from_grid(est, root, "holdout", 2, seed=1)
    vm = held.extra["vmacro"]
    assert np.all((vm >= 3.0) & (vm <= 6.0))
    assert "macroturbulence drawn uniformly in 3-6 km/s" in held.description
    # no rotation, but macroturbulence: shallower lines, same equivalent width
    assert held.flux.min() > stored[9].min() + 0.02
    np.testing.assert_allclose((1 - held.flux).sum(axis=1), (1 - stored[9]).sum(), rtol=2e-3)


def test_clear_errors(shards):
    root, _ = shards
    lr = fourmost_setup("lr")
    mixed = WavelengthGrid((GridSegment("HB", 4000.0, 4010.0, 0.05),
                            GridSegment("LJ", 9000.0, 9010.0, 0.25)))
    with pytest.raises(ValueError, match="not segments of one 4MOST setup"):
        heldout_from_grid(_estimator(mixed, rp={"HB": 20000.0, "LJ": 5000.0}), root,
                          "holdout", 1, seed=0)
    with pytest.raises(ValueError, match="no spectra of setup 'lr'"):
        heldout_from_grid(_estimator(lr.grid, rp=dict(lr.resolving_power)), root, "holdout", 1,
                          seed=0)
    off = WavelengthGrid((GridSegment("HB", 4000.025, 4010.025, 0.1),))
    with pytest.raises(ValueError, match=r"pixels of model segment 'HB' are not shard pixels"):
        heldout_from_grid(_estimator(off), root, "holdout", 1, seed=0)
    beyond = WavelengthGrid((GridSegment("HB", 4300.0, 4400.0, 0.05),))
    with pytest.raises(ValueError, match="not shard pixels"):
        heldout_from_grid(_estimator(beyond), root, "holdout", 1, seed=0)
    with pytest.raises(ValueError, match="resolving power in segment 'HB'"):
        heldout_from_grid(_estimator(rp={"HB": 10000.0, "HG": 20000.0, "HR": 20000.0}), root,
                          "holdout", 1, seed=0)
    with pytest.raises(ValueError, match="no label 'vmic_x'"):
        heldout_from_grid(_estimator(params=("teff", "vmic_x")), root, "holdout", 1, seed=0)
    assert shard_setup_name(lr.grid) == "lr" and shard_setup_name(HR.grid) == "hr"


def test_rerender_lowers_the_resolution_only(shards):
    root, _ = shards
    held = heldout_from_grid(_estimator(), root, "holdout", 2, seed=3)
    low = held.rerender(np.array([1]), 7000.0)
    assert low.shape == (1, HR.grid.npix) and low.min() > held.flux[1].min() + 0.05
    with pytest.raises(ValueError, match="not below the model's R"):
        held.rerender(np.array([0]), 40000.0)


def test_lower_resolution_matches_degrade_on_a_line():
    # a Gaussian line at synthesis resolution, degraded to R = 20000 on 0.05 A pixels; then
    # taken to R = 7000 by the extra Gaussian, against degrade straight to R = 7000
    wave = np.arange(5150.0, 5740.0, 0.005)
    flux = 1.0 - 0.7 * np.exp(-0.5 * ((wave - 5445.0) / 0.1) ** 2)
    hg = WavelengthGrid((HR.grid.segments[1],))
    hi = degrade(wave, flux, InstrumentSetup("hi", hg, {"HG": 20000.0}))
    direct = degrade(wave, flux, InstrumentSetup("lo", hg, {"HG": 7000.0}))
    low = lower_resolution(hi[None], hg, {"HG": 20000.0}, 7000.0)[0]
    assert direct.min() < 0.85  # the line is there
    np.testing.assert_allclose(low, direct, rtol=0, atol=1.5e-3)
    np.testing.assert_allclose((1 - low).sum(), (1 - direct).sum(), rtol=1e-3)


def test_grid_file_path_is_unchanged(tmp_path):
    """A synthesis grid file is degraded with ``degrade`` as before (any resolving power)."""
    wave = np.arange(5150.0, 5740.0, 0.01)
    ids = np.arange(20)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wave - 5400.0 - ids[:, None]) / 0.05) ** 2)
    g = SynthesisGrid(labels={"teff": 4000.0 + 10 * ids, "logg": np.full(20, 4.0)},
                      star_id=ids, segments={"hg": (wave, flux)},
                      atmosphere={"file": np.asarray(["m"] * 20)}, seconds=np.ones(20),
                      cpu_seconds=np.ones(20))
    path = write_grid(tmp_path / "g.h5", g)
    model = WavelengthGrid((GridSegment("HG", 5300.0, 5500.0, 0.05),))
    est = _estimator(model, params=("teff", "logg", "vsini"))
    held = heldout_from_grid(est, path, "holdout", 2, seed=4)
    np.testing.assert_array_equal(held.star, [9, 9, 19, 19])
    vsini = np.random.default_rng(4).uniform(0.0, 25.0, 4)
    np.testing.assert_array_equal(held.truth[:, 2], vsini)
    setup = InstrumentSetup("test-hr", model, {"HG": 20000.0})
    expected = degrade(wave, flux.astype(np.float32)[[9, 9, 19, 19]].astype(np.float64), setup,
                       vsini=vsini)
    np.testing.assert_allclose(held.flux, expected, rtol=0, atol=1e-12)
    assert held.higher_resolution_possible is True
    assert "synthesis grid ``g.h5``" in held.description
    assert held.rerender(np.array([0]), 40000.0).shape == (1, model.npix)
