"""scripts/make_4most_files.py writes files that the readers take back."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from repo_scripts import script_module
from specutils import Spectrum, SpectrumList

from specutils_cinn.io import identify_format, read_spectra
from specutils_cinn.survey import plan_inputs


@pytest.fixture(scope="module")
def script():
    with script_module("make_4most_files") as module:
        yield module


def test_hrs_files_and_containers(script, tmp_path, capsys):
    assert script.main([str(tmp_path), "-n", "3", "--container", "--fibers", "2"]) == 0
    assert "wrote 12 files for 3 objects" in capsys.readouterr().out
    l1 = sorted(tmp_path.glob("qmost_*.fits"))
    assert len(l1) == 9 and all(identify_format(p) == "4MOST-L1" for p in l1)
    manifest = Table.read(tmp_path / "manifest.ecsv")
    assert len(manifest) == 3 and list(manifest["in_container"]) == [True, True, False]
    objects = read_spectra(l1)
    assert len(objects) == 3
    for s, row in zip(objects, manifest, strict=True):
        assert s.meta["arm"] == "HB+HG+HR" and s.meta["object"] == row["object"]
        assert s.meta["filename"] == row["files"]
        assert s.meta["medium"] == "air" and s.meta["resolving_power"] == 20000.0
        assert s.mask.sum() == 672  # the HARPS CCD gap, as in the example
    hg = Spectrum.read(tmp_path / "20260120_HG11_20260121.fits")
    assert hg.shape == (2, 11401) and hg.meta["format"] == "4MOST-MEC"
    assert hg.flux.unit == u.Unit("1e-17 erg / (s cm2 Angstrom)")
    single = objects[0]
    seg = single.meta["segments"][1]
    np.testing.assert_allclose(
        hg.flux.to_value(single.flux.unit)[0],
        single.flux.value[seg["start"] : seg["stop"]], rtol=1e-6,
    )
    from_containers = read_spectra(sorted(tmp_path.glob("2026*.fits")))
    assert len(from_containers) == 2 and from_containers[0].shape == single.shape


def test_lrs_files(script, tmp_path):
    assert script.main([str(tmp_path), "-n", "2", "--mode", "lrs", "--container"]) == 0
    lj = sorted(tmp_path.glob("qmost_*_LJ1.fits"))
    assert len(lj) == 2
    s = Spectrum.read(lj[0])
    assert s.shape == (23201,) and s.meta["arm"] == "LJ"
    assert 0.25 < 1 - s.mask.mean() < 0.32  # the HR example covers about 29% of LRS
    assert len(SpectrumList.read(tmp_path / "20260120_LJ11_20260121.fits")) == 2


def test_distinct_links_the_other_objects(script, tmp_path, capsys):
    assert script.main([str(tmp_path), "-n", "5", "--distinct", "2"]) == 0
    assert "wrote 15 files (9 linked) for 5 objects" in capsys.readouterr().out
    manifest = Table.read(tmp_path / "manifest.ecsv")
    assert list(manifest["copy_of"]) == [-1, -1, 0, 1, 0]
    assert len(set(manifest["object"])) == 5  # own names, so five inputs
    for row in manifest[2:]:
        source = manifest[row["copy_of"]]
        assert row["snr"] == source["snr"]
        for mine, theirs in zip(row["files"].split("+"), source["files"].split("+"),
                                strict=True):
            assert mine != theirs
            assert (tmp_path / mine).read_bytes() == (tmp_path / theirs).read_bytes()
    # a survey run groups arms by file name: five inputs, each read back whole
    units = plan_inputs(tmp_path, group_arms=True)
    assert len(units) == 5
    assert [len(read_spectra(list(un.paths))) for un in units] == [1] * 5


def test_distinct_refuses_containers_it_cannot_fill(script, tmp_path):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "-n", "5", "--distinct", "2", "--container"])
    assert not list(tmp_path.glob("*.fits"))
