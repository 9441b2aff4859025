"""Readers for 4MOST L1 spectra and containers, ESO Phase 3 spectra and odd flux units."""

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning
from fourmost_files import (
    HRS_ARMS,
    example_arrays,
    write_container,
    write_hrs_arms,
    write_iraf_1d,
    write_lj,
)
from specutils import Spectrum, SpectrumCollection, SpectrumList
from specutils.io.registers import identify_spectrum_format

import specutils_cinn  # noqa: F401  (registers the readers)
from specutils_cinn import cli
from specutils_cinn.io import (
    FORMATS,
    META_KEYS,
    group_arms,
    join_arms,
    read_paths,
    read_spectra,
    spectra_medium,
)
from specutils_cinn.io.lookalike import write_phase3_spectrum

HARPS = Path("/work/shared/data/sun/Sun_HARPS.fits")


def _formats(path, cls=Spectrum):
    found = identify_spectrum_format(path, cls)
    return [found] if isinstance(found, str) else list(found)


# ------------------------------------------------------------------ registration


def test_formats_are_registered_for_spectrum_and_list():
    from astropy.io import registry

    for fmt in FORMATS:
        assert registry.get_reader(fmt, Spectrum)
        assert registry.get_reader(fmt, SpectrumList)
    assert registry.get_reader("4MOST-MEC", SpectrumCollection)
    assert {"medium", "specsys", "resolving_power", "arm", "group_id"} <= set(META_KEYS)


# ------------------------------------------------------------------ 4MOST L1


def test_l1_lj_auto_identified_and_by_format_name(tmp_path):
    path = tmp_path / "qmost_J120000.00-300000.0_20260101_42_LJ1.fits"
    truth = write_lj(path)
    assert "4MOST-L1" in _formats(path)
    auto = Spectrum.read(path)
    named = Spectrum.read(path, format="4MOST-L1")
    assert auto.meta["format"] == named.meta["format"] == "4MOST-L1"
    assert auto.shape == (23201,)
    np.testing.assert_array_equal(auto.flux.value, named.flux.value)
    np.testing.assert_allclose(auto.spectral_axis.to_value(u.AA), truth["wave"])
    assert auto.flux.unit == u.Unit("erg / (s cm2 Angstrom)")
    assert len(SpectrumList.read(path)) == 1


def test_l1_qual_masked_uncertainty_and_meta(tmp_path):
    path = tmp_path / "qmost_J120000.00-300000.0_20260101_42_LJ1.fits"
    truth = write_lj(path, bad=slice(100, 110))
    s = Spectrum.read(path)
    assert isinstance(s.uncertainty, StdDevUncertainty)
    assert s.uncertainty.unit == s.flux.unit
    np.testing.assert_allclose(s.uncertainty.array, truth["err"], rtol=1e-6)
    expected = truth["qual"] != 0
    np.testing.assert_array_equal(s.mask, expected)  # the NaN lies under QUAL != 0
    m = s.meta
    assert m["medium"] == "air" and m["specsys"] == "HELIOCEN"
    assert m["resolving_power"] == 6500.0 and m["arm"] == "LJ"
    assert m["object"] == "J120000.00-300000.0" and m["filename"] == path.name
    assert m["header"]["INSTRUME"] == "QMOST" and m["data_header"]["EXTNAME"] == "PHASE3SPECTRUM"
    assert m["group_id"].startswith("J120000.00-300000.0|42|")
    assert s.spectral_axis.radial_velocity == 0 * u.km / u.s  # heliocentric, RV unknown


def test_l1_vacuum_from_ucd_and_medium_override(tmp_path):
    path = tmp_path / "qmost_J1_20260101_1_LJ1.fits"
    write_lj(path, wave_ucd="em.wl")
    assert Spectrum.read(path).meta["medium"] == "vacuum"
    assert Spectrum.read(path, medium="air").meta["medium"] == "air"
    write_lj(tmp_path / "qmost_J1_20260101_1_LR1.fits", wave_ucd=None)  # no UCD: 4MOST = air
    assert Spectrum.read(tmp_path / "qmost_J1_20260101_1_LR1.fits").meta["medium"] == "air"
    with pytest.raises(ValueError, match="air' or 'vacuum"):
        Spectrum.read(path, medium="glass")


def test_l1_flux_unit_override_and_noss_column(tmp_path):
    path = tmp_path / "qmost_J1_20260101_1_LJ1.fits"
    write_lj(path)
    s = Spectrum.read(path, flux_unit="adu")
    assert s.flux.unit == u.adu and s.uncertainty.unit == u.adu
    with pytest.raises(ValueError, match="no column 'FLUX_NOSS'"):
        Spectrum.read(path, flux_column="FLUX_NOSS")


def test_hrs_arms_grouped_into_one_spectrum_with_segments(tmp_path):
    paths = write_hrs_arms(tmp_path, "J1", ob=7)
    write_hrs_arms(tmp_path, "J2", ob=8, arms=("HG", "HR"))
    arms = [Spectrum.read(p) for p in paths]
    assert [s.meta["arm"] for s in arms] == ["HB", "HG", "HR"]
    assert len({s.meta["group_id"] for s in arms}) == 1
    joined = read_spectra(tmp_path)
    assert len(joined) == 2 and len(read_spectra(tmp_path, group=False)) == 5
    s = next(x for x in joined if x.meta["object"] == "J1")
    wave, flux, _, bad = example_arrays()
    assert s.shape == (wave.size,) and s.meta["arm"] == "HB+HG+HR"
    np.testing.assert_allclose(s.spectral_axis.to_value(u.AA), wave, atol=2e-3)  # float32
    np.testing.assert_array_equal(s.mask, bad)
    segs = s.meta["segments"]
    assert [g["arm"] for g in segs] == ["HB", "HG", "HR"]
    assert segs[0]["start"] == 0 and segs[-1]["stop"] == wave.size
    for g in segs:
        lo, hi = HRS_ARMS[g["arm"]]
        assert abs(g["wavelength_min"].to_value(u.AA) - lo) < 1e-3
        assert abs(g["wavelength_max"].to_value(u.AA) - hi) < 1e-3
        assert g["filename"].endswith(f"_{g['arm']}1.fits")
    assert s.meta["filename"].count("+") == 2
    # order and pass-through: an LJ spectrum among the arms stays where it was
    lj = tmp_path / "qmost_J3_20260101_9_LJ1.fits"
    write_lj(lj)
    out = group_arms([arms[1], Spectrum.read(lj), arms[0], arms[2]])
    assert [x.meta["arm"] for x in out] == ["HB+HG+HR", "LJ"]


def test_join_arms_refuses_overlap_and_duplicates(tmp_path):
    hg = Spectrum.read(write_hrs_arms(tmp_path, "J1", arms=("HG",))[0])
    with pytest.raises(ValueError, match="overlap"):
        join_arms([hg, hg])
    with pytest.raises(ValueError, match="each arm may appear once"):
        group_arms([hg, hg])


# ------------------------------------------------------------------ containers


def test_container_fibers_metadata_ivar_and_mask(tmp_path):
    path = write_container(tmp_path, "LJ", n_fibers=6, sky=2)
    assert "4MOST-MEC" in _formats(path, SpectrumList)
    two_d = Spectrum.read(path)
    assert two_d.meta["format"] == "4MOST-MEC" and two_d.shape == (6, 23201)
    assert isinstance(two_d.uncertainty, InverseVariance)
    assert two_d.uncertainty.unit == two_d.flux.unit**-2
    fib = two_d.meta["fibers"]
    assert len(fib) == 6 and list(fib["row"]) == list(range(6))
    assert list(fib["OBJ_NME"]) == [f"obj{i:03d}" for i in range(6)]
    assert two_d.mask[:, 10:13].all() and two_d.mask[:, 20].all()  # QUAL != 0, ivar == 0
    assert two_d.mask.sum() == 6 * 4
    w = two_d.spectral_axis.to_value(u.AA)
    assert w[0] == 3700.0 and w[-1] == 9500.0
    assert two_d.meta["arm"] == "LJ" and two_d.meta["medium"] == "air"
    per_fiber = SpectrumList.read(path)
    assert len(per_fiber) == 6
    f3 = per_fiber[3]
    assert f3.shape == (23201,) and f3.meta["fiber"]["FIB_ID"] == 4
    assert f3.meta["fiber"]["OBJ_NME"] == "obj003" and f3.meta["row"] == 3
    assert f3.meta["object"] == f3.meta["fiber"]["CNAME"]
    np.testing.assert_array_equal(f3.flux.value, two_d.flux.value[3])
    assert len(SpectrumList.read(path, fiber_status=None)) == 8
    assert len(SpectrumList.read(path, rows=slice(2, 7))) == 4  # rows 2-5; row 6 is sky
    coll = SpectrumCollection.read(path)
    assert coll.shape == (6,) and coll.flux.shape == (6, 23201)


def test_container_old_err_flux_nm_axis_and_missing_unit(tmp_path):
    path = write_container(tmp_path, "HG", n_fibers=3, sky=0, flux_unit=None,
                           ivar_name="ERR_FLUX", wave_unit="nm")
    with pytest.warns(AstropyUserWarning, match="no flux unit"):
        s = Spectrum.read(path)
    assert s.flux.unit == u.dimensionless_unscaled
    assert isinstance(s.uncertainty, StdDevUncertainty)
    assert s.spectral_axis.unit == u.nm
    assert abs(s.spectral_axis[0].to_value(u.AA) - 5160.0) < 1e-6
    s = Spectrum.read(path, flux_unit="erg / (s cm2 Angstrom)")
    assert s.flux.unit == u.Unit("erg / (s cm2 Angstrom)")


def test_hrs_containers_grouped_per_fiber(tmp_path):
    for arm in ("HB", "HG", "HR"):
        write_container(tmp_path, arm, n_fibers=4, sky=1)
    joined = read_spectra(sorted(tmp_path.glob("*.fits")))
    assert len(joined) == 4
    assert all(s.meta["arm"] == "HB+HG+HR" for s in joined)
    assert [s.meta["object"] for s in joined] == [joined[i].meta["fiber"]["CNAME"]
                                                 for i in range(4)]


# ------------------------------------------------------------------ ESO and generic FITS


def test_eso_phase3_spectrum_that_tabular_fits_misread(tmp_path):
    path = tmp_path / "ADP.2020-01-01T00:00:00.000.fits"
    wave_nm = np.linspace(480.0, 680.0, 3000)
    flux = np.ones(3000)
    qual = np.zeros(3000, dtype=np.int32)
    qual[7] = 16
    write_phase3_spectrum(path, wave_nm, flux, 0.01 * flux, qual, instrument="UVES",
                          wave_unit="nm", wave_ucd="em.wl;obs.atmos", err_name="ERR",
                          flux_unit="10**(-16)erg.cm**(-2).s**(-1).angstrom**(-1)",
                          primary={"SPEC_RES": 42000.0, "OBJECT": "HD 1"})  # fmt: skip
    with pytest.raises(Exception, match="lookup_table should be an array with 1 dimensions"):
        Spectrum.read(path, format="tabular-fits")  # specutils' own reader
    s = Spectrum.read(path)
    assert s.meta["format"] == "ESO-SDP"
    assert s.spectral_axis.unit == u.nm and s.shape == (3000,)
    assert s.flux.unit == u.Unit("1e-16 erg / (s cm2 Angstrom)")
    assert s.mask.sum() == 1 and s.mask[7]
    assert s.meta["medium"] == "air" and s.meta["resolving_power"] == 42000.0
    assert s.meta["object"] == "HD 1"


def test_iraf_bunit_relative_flux_and_override(tmp_path):
    path = tmp_path / "harps_like.fits"
    write_iraf_1d(path, "Relative Flux")
    with pytest.raises(ValueError, match="did not parse as unit"):
        Spectrum.read(path, format="wcs1d-fits")  # specutils' own reader
    s = Spectrum.read(path)
    assert s.meta["format"] == "wcs1d-fits-relaxed"
    assert s.flux.unit == u.dimensionless_unscaled
    assert s.meta["header"]["BUNIT"] == "Relative Flux"  # the header is left as it was
    np.testing.assert_allclose(s.spectral_axis.to_value(u.AA)[[0, -1]], [5000.0, 5019.99])
    assert Spectrum.read(path, flux_unit="adu").flux.unit == u.adu
    write_iraf_1d(tmp_path / "odd.fits", "furlongs of light")
    with pytest.warns(AstropyUserWarning, match="flux_unit"):
        assert Spectrum.read(tmp_path / "odd.fits").flux.unit == u.dimensionless_unscaled
    write_iraf_1d(tmp_path / "good.fits", "adu")  # astropy can parse it: specutils reads it
    assert Spectrum.read(tmp_path / "good.fits").meta.get("format") is None


@pytest.mark.skipif(not HARPS.exists(), reason="shared HARPS solar spectrum not available")
def test_harps_example_reads():
    s = Spectrum.read(HARPS)
    assert s.shape == (313025,) and s.flux.unit == u.dimensionless_unscaled
    assert 3783 < s.spectral_axis[0].to_value(u.AA) < 3784


def test_specutils_tabular_output_with_dimensionless_flux(tmp_path):
    axis = np.linspace(5000.0, 5010.0, 50) * u.AA
    flux = np.ones(50) * u.dimensionless_unscaled
    spec = Spectrum(flux=flux, spectral_axis=axis,
                    uncertainty=StdDevUncertainty(np.full(50, 0.01)))
    spec.write(tmp_path / "norm.fits", format="tabular-fits")
    with pytest.raises(OSError, match="Could not identify column containing the flux"):
        Spectrum.read(tmp_path / "norm.fits", format="tabular-fits")  # specutils' own reader
    back = Spectrum.read(tmp_path / "norm.fits")
    assert back.meta["format"] == "tabular-fits-relaxed"
    assert back.flux.unit == u.dimensionless_unscaled
    np.testing.assert_allclose(back.spectral_axis.to_value(u.AA), axis.value)
    np.testing.assert_allclose(back.uncertainty.array, 0.01)
    assert Spectrum.read(tmp_path / "norm.fits", flux_unit="Jy").flux.unit == u.Jy


# ------------------------------------------------------------------ medium and paths


def test_spectra_medium():
    def spec(medium):
        return Spectrum(flux=np.ones(5) * u.Jy, spectral_axis=np.arange(1.0, 6.0) * u.AA,
                        meta={} if medium is None else {"medium": medium})  # fmt: skip

    assert spectra_medium(spec(None)) == "air"
    assert spectra_medium([spec("vacuum"), [spec("vac")]]) == "vacuum"
    assert spectra_medium(SpectrumList([spec("air"), spec(None)])) == "air"
    with pytest.raises(ValueError, match="mix air and vacuum"):
        spectra_medium([spec("vacuum"), spec(None)])


def test_read_paths_names_the_unreadable_file(tmp_path):
    bad = tmp_path / "junk.fits"
    bad.write_text("not a fits file")
    with pytest.raises(OSError, match="junk.fits"):
        read_paths([str(bad)])
    s = Spectrum(flux=np.ones(5) * u.Jy, spectral_axis=np.arange(1.0, 6.0) * u.AA)
    assert read_paths(s) is s


@pytest.fixture(scope="module")
def est():
    from specutils_cinn import CINNParameterEstimator

    return CINNParameterEstimator.from_pretrained(device="cpu")  # bundled, offline


def test_predict_reads_paths_and_uses_the_medium_from_meta(est, tmp_path):
    paths = write_hrs_arms(tmp_path, "J1")
    joined = read_spectra(paths)[0]
    kw = {"n_samples": 64, "seed": 3, "progress": False}
    ref = est.predict(joined, **kw)
    assert 5500 < ref["teff"][0].to_value(u.K) < 6000  # the Sun, through the readers
    hg = Spectrum.read(paths[1])
    t_path = est.predict(str(paths[1]), **kw)
    t_obj = est.predict(hg, **kw)
    assert t_path["teff"][0] == t_obj["teff"][0]
    assert len(est.predict([paths[0], hg, str(paths[2])], **kw)) == 3
    # vacuum in meta: the estimator converts as for medium="vacuum"
    hg.meta["medium"] = "vacuum"
    t_vac = est.predict(hg, **kw)
    assert t_vac["teff"][0] == est.predict(hg, medium="vacuum", **kw)["teff"][0]
    assert t_vac["teff"][0] != t_obj["teff"][0]
    assert est.predict(hg, medium="air", **kw)["teff"][0] == t_obj["teff"][0]
    with pytest.raises(ValueError, match="mix air and vacuum"):
        est.predict([hg, Spectrum.read(paths[2])], **kw)


def test_cli_group_arms_flux_unit_and_container(tmp_path):
    write_hrs_arms(tmp_path, "J1")
    files = sorted(str(p) for p in tmp_path.glob("*.fits"))
    out = tmp_path / "res.ecsv"
    base = ["predict", *files, "-o", str(out), "-n", "32", "--seed", "1", "--device", "cpu"]
    assert cli.main([*base, "--group-arms"]) == 0
    t = QTable.read(out)
    assert len(t) == 1 and t["filename"][0].count(";") == 2
    assert cli.main([*base, "--overwrite"]) == 0
    assert len(QTable.read(out)) == 3
    harps_like = tmp_path / "iraf.fits"
    write_iraf_1d(harps_like, "furlongs", n=200)
    args = ["predict", str(harps_like), "-o", str(tmp_path / "r2.ecsv"), "-n", "32",
            "--snr", "50", "--device", "cpu"]  # fmt: skip
    assert cli.main([*args, "--flux-unit", "adu"]) == 0
    assert list(QTable.read(tmp_path / "r2.ecsv")["status"]) == ["ok"]


def test_l1_header_of_file_written_by_helper_is_phase3(tmp_path):
    path = tmp_path / "qmost_J1_20260101_1_LJ1.fits"
    write_lj(path)
    with fits.open(path) as h:
        assert h[0].header["PRODCATG"] == "SCIENCE.SPECTRUM" and h[1].header["NAXIS2"] == 1
        assert h[1].header["TUCD1"] == "em.wl;obs.atmos" and h[1].columns["QUAL"].null == -1
