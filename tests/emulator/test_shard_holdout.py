"""specutils-cinn emulator holdout on a v2 grid (a folder of shards)."""

import numpy as np
import pytest

from specutils_cinn.emulator import SpectrumEmulator, load_emulator, save_emulator
from specutils_cinn.emulator.prepare import prepare_holdout_sets
from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.parameters import EMULATOR_LABELS
from specutils_cinn.synthesis.shards import write_shard
from specutils_cinn.training import load_training_set
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid, crop_grid


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2")
    setups = {s: fourmost_setup(s) for s in ("hr", "lr")}
    # ten stars with one deep narrow line per arm; star 9 is the held-out one
    spectra = {}
    for name, setup in setups.items():
        wave = setup.grid.wavelength.value
        flux = np.ones((10, wave.size))
        for seg in setup.grid.segments:
            mid = 0.5 * (seg.start + seg.stop)
            flux -= 0.6 * np.exp(-0.5 * ((wave - mid) / 0.08) ** 2)
        spectra[name] = flux
    labels = {k: list(np.linspace(0.1, 0.2, 10)) for k in
              ("fe_h", "mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe", "li_fe", "a_li")}
    labels.update(teff=list(np.linspace(5000, 6000, 10)), logg=[4.0] * 10, vmic=[1.0] * 10)
    write_shard(root / "shards" / "shard_00000.h5", star_id=list(range(10)), labels=labels,
                spectra=spectra, info=[{}] * 10, provenance={"physics": "test"})
    hr = setups["hr"]
    # an emulator grid as prepare makes it from the shards: ends a few 1e-9 A off
    grid = WavelengthGrid(tuple(GridSegment(s.name, s.start, s.stop + 2e-9, s.step)
                                for s in hr.grid.segments))
    assert grid.npix == hr.grid.npix
    emu = SpectrumEmulator(list(EMULATOR_LABELS), [[4000, 7000], [1, 5], [-4, 0.5], [0.5, 2.5]]
                           + [[-0.5, 0.7]] * 5 + [[-0.5, 3.5]], grid, n_components=2,
                           hidden=[4])
    save_emulator(root / "emulators" / "4most-hr-emulator-v2", emu,
                  {"resolving_power": {s.name: 20000.0 for s in hr.grid.segments}})
    return root, spectra["hr"]


def test_shard_holdout_rotates_binned_spectra(v2):
    root, flux = v2
    (path,) = prepare_holdout_sets(root / "shards", emulators=root / "emulators",
                                   out_dir=root / "out", setups=["hr"], tag="v2",
                                   vmacro_range=(3.0, 6.0), log=lambda _: None)
    assert path.name == "emu_v2_hr_holdout.npz"
    ts = load_training_set(path)
    assert ts.flux.shape == (1, fourmost_setup("hr").grid.npix)    # star 9 only, all 3 arms
    vsini = ts.labels[0, ts.parameters.index("vsini")]
    assert 0.0 <= vsini <= 25.0
    assert ts.labels[0, ts.parameters.index("teff")] == pytest.approx(6000.0)
    # broadened: shallower lines, equivalent width kept (float16 depth in the shards)
    assert ts.flux.min() > flux[9].min() + 0.03
    np.testing.assert_allclose((1 - ts.flux[0]).sum(), (1 - flux[9]).sum(), rtol=2e-3)
    assert "radial-tangential" in ts.provenance["vmacro"]
    # on the grid the training simulator crops from the emulator's (specutils-cinn train
    # refuses a held-out set on another grid)
    emu = load_emulator(root / "emulators" / "4most-hr-emulator-v2")
    assert ts.grid == crop_grid(emu.grid, None, None)[0]


def test_shard_holdout_needs_a_tag(v2):
    root, _ = v2
    with pytest.raises(ValueError, match="tag"):
        prepare_holdout_sets(root / "shards", emulators=root / "emulators",
                             out_dir=root / "out", setups=["hr"])
    with pytest.raises(ValueError, match="v2 grid"):
        prepare_holdout_sets(root / "x.h5", tag="v2")
