"""The survey's direct reader (specutils_cinn.io._direct) gives what Spectrum.read gives.

A survey run reads plain 4MOST L1 / ESO Phase 3 files without ``Spectrum.read`` and reads the
next chunk while one is inferred; the tables must equal, column for column and bit for bit,
those of reading every file with ``Spectrum.read`` and ``group_arms`` (``_DIRECT_READ =
False``, no read-ahead), on files the direct reader reads and files it declines alike.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from fourmost_files import example_arrays, l1_keys, write_container, write_hrs_arms, write_lj
from specutils import Spectrum

import specutils_cinn.survey.reading as survey_reading
from specutils_cinn import survey
from specutils_cinn.io import _direct, group_arms, read_spectra
from specutils_cinn.io.lookalike import cname, write_phase3_spectrum
from specutils_cinn.survey import run_survey

FAST = {"n_samples": 32, "device": "cpu", "progress": False, "seed": 3}


@pytest.fixture(scope="module")
def est():
    return survey.cached_estimator(None, "cpu")


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    """34 files: HRS objects read directly, and files the direct reader declines or that fail.

    - six HRS objects (18 files), one with a header radial velocity and a HIERARCH card,
      one with an arm in vacuum (``TUCD = em.wl``: joined arms must agree, an error row);
    - an object whose HG arm has a scaled flux column (``TSCAL2``: declined, read by
      astropy, which scales it);
    - an object with a missing arm (two files joined), one whose "HG" file holds its HB arm
      (overlapping arms: an error row) and one whose HG arm is of another observation (two
      groups, two rows: declined);
    - an LRS joined file, a generic ESO Phase 3 file (``ESO-SDP``), a file without flux unit;
    - a 4MOST container (declined: more HDUs) and a file that is not FITS.
    """
    folder = tmp_path_factory.mktemp("mixed")
    for i in range(6):
        paths = write_hrs_arms(folder, cname(30.0 + 25 * i, -20.0), ob=200 + i, seed=i,
                               extra_noise=0.02)
        if i == 1:
            for p in paths:
                with fits.open(p, mode="update") as h:
                    h[0].header["VRAD"] = 12.5
                    h[0].header.append(fits.Card("HIERARCH ESO OBS NAME", "survey test"))
        if i == 2:
            fits.setval(paths[1], "TUCD1", value="em.wl", ext=1)
    (p,) = [q for q in write_hrs_arms(folder, cname(200.0, -20.0), ob=300, seed=7,
                                      arms=("HB", "HG", "HR")) if "_HG" in q.name]
    with fits.open(p, mode="update") as h:
        h[1].header.insert("TFORM2", ("TSCAL2", 2.0), after=True)
    write_hrs_arms(folder, cname(210.0, -20.0), ob=301, seed=8, arms=("HB", "HR"))
    hb, _ = write_hrs_arms(folder, cname(220.0, -20.0), ob=302, seed=9, arms=("HB", "HR"))
    hb.with_name(hb.name.replace("_HB1", "_HG1")).write_bytes(hb.read_bytes())  # overlap
    _, hg, _ = write_hrs_arms(folder, cname(225.0, -20.0), ob=303, seed=10)
    fits.setval(hg, "OBID1", value=999)  # another observation: two groups, two rows
    write_lj(folder / f"qmost_{cname(230.0, -20.0)}_20260101_400_LJ1.fits")
    wave, flux, err, bad = example_arrays()
    sel = (wave > 5200) & (wave < 5700)
    keys = l1_keys(cname(240.0, -20.0))
    write_phase3_spectrum(folder / "eso_sdp_spectrum.fits", wave[sel], flux[sel] * 1e-17,
                          err[sel] * 1e-17, bad[sel].astype(np.int32), instrument="UVES",
                          primary=keys)  # fmt: skip
    write_phase3_spectrum(folder / "no_unit_spectrum.fits", wave[sel], flux[sel],
                          err[sel], bad[sel].astype(np.int32), flux_unit=None,
                          primary=l1_keys(cname(250.0, -20.0)))  # fmt: skip
    write_container(folder, "HG", n_fibers=3, sky=1)
    (folder / "zz_not_fits.fits").write_text("not FITS")
    return folder


def _same(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames and len(a) == len(b)
    for c in a.colnames:
        x, y = np.asarray(a[c]), np.asarray(b[c])
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), c
        else:
            assert np.array_equal(x, y), c
    assert dict(a.meta) == dict(b.meta)


# Two survey runs over 34 files each (2-3 s): in the full run only. The fast set reads through
# the direct reader in tests/survey/test_run.py and compares spectra in the next test.
@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"group_arms": True},
    {"group_arms": False},
    {"group_arms": True, "radial_velocity": "header:VRAD"},
    {"group_arms": False, "reader_format": "4MOST-L1"},
])  # fmt: skip
def test_direct_reading_gives_the_same_table(est, mixed_dir, tmp_path, monkeypatch, options):
    calls = {"n": 0}
    real = survey_reading._read_one

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(survey_reading, "_read_one", counted)
    monkeypatch.setattr(survey_reading, "_DIRECT_READ", False)
    monkeypatch.setattr(survey_reading, "_READ_AHEAD", 0)
    old = tmp_path / "old.ecsv"
    run_survey([mixed_dir], old, chunk_size=5, **FAST, **options)
    n_old = calls["n"]
    monkeypatch.setattr(survey_reading, "_DIRECT_READ", True)
    monkeypatch.setattr(survey_reading, "_READ_AHEAD", 1)
    new = tmp_path / "new.ecsv"
    run_survey([mixed_dir], new, chunk_size=5, **FAST, **options)
    a, b = Table.read(old), Table.read(new)
    _same(a, b)
    assert calls["n"] - n_old < 0.6 * n_old  # most files were read directly
    ok = a["status"] == "ok"
    assert ok.any() and not ok.all()
    if "radial_velocity" in options:  # from the RawHeader of the direct reader
        assert list(a["rv"][ok]) == [12.5]


def test_direct_spectrum_equals_spectrum_read(mixed_dir):
    names = sorted(p.name for p in mixed_dir.glob("*.fits"))
    read = declined = 0
    for name in names:
        path = mixed_dir / name
        arrays = _direct.read_phase3_direct(path)
        if arrays is None:
            declined += 1
            continue
        read += 1
        ref = Spectrum.read(path)
        got = arrays.spectrum()
        np.testing.assert_array_equal(got.flux.value, ref.flux.value)
        assert got.flux.unit == ref.flux.unit and got.flux.dtype == ref.flux.dtype
        np.testing.assert_array_equal(got.spectral_axis.value, ref.spectral_axis.value)
        assert got.spectral_axis.unit == ref.spectral_axis.unit
        np.testing.assert_array_equal(got.uncertainty.array, ref.uncertainty.array)
        assert got.uncertainty.unit == ref.uncertainty.unit
        np.testing.assert_array_equal(got.mask, ref.mask)
        assert set(got.meta) == set(ref.meta)
        for key, value in ref.meta.items():
            if key in ("header", "data_header"):
                assert got.meta[key].header() == value
                assert dict(got.meta[key].header()) == dict(value)
            else:
                assert got.meta[key] == value, key
    assert read >= 25 and declined == 3  # the scaled arm, the container, not FITS


def test_joined_arms_equal_group_arms(mixed_dir):
    obj = cname(30.0, -20.0)
    paths = sorted(str(p) for p in mixed_dir.glob(f"qmost_{obj}_*.fits"))
    (got,) = _direct.read_arms_direct(paths)
    (ref,) = group_arms(read_spectra(paths, group=False))
    np.testing.assert_array_equal(got.flux.value, ref.flux.value)
    np.testing.assert_array_equal(got.spectral_axis.value, ref.spectral_axis.value)
    np.testing.assert_array_equal(got.uncertainty.array, ref.uncertainty.array)
    np.testing.assert_array_equal(got.mask, ref.mask)
    assert [s["arm"] for s in got.meta["segments"]] == ["HB", "HG", "HR"]
    assert got.meta["resolving_power"] == ref.meta["resolving_power"]
    # the second object shares the first's wavelengths: it shares its spectral WCS too
    other = sorted(str(p) for p in mixed_dir.glob(f"qmost_{cname(55.0, -20.0)}_*.fits"))
    (again,) = _direct.read_arms_direct(other)
    assert again.wcs is got.wcs
    np.testing.assert_array_equal(again.spectral_axis.value, ref.spectral_axis.value)


def _odd_header() -> fits.Header:
    h = fits.Header()
    h["SIMPLE"] = True
    h["NAXIS"] = 0
    h["OBJECT"] = "J000000.00+000000.0"
    h["EMPTY"] = ""
    h["UNDEF"] = None
    h["SPEC_RES"] = 20000.0
    h["DP1"] = "AXIS.1: 1"  # a record-valued card
    h["COMMENT"] = "a comment"
    h["SPEC_RES"] = 1.0  # replaces, not duplicates
    h.append(fits.Card("OBID1", 7))
    h.append(fits.Card("OBID1", 8))  # a duplicate: astropy answers the first
    return h


@pytest.mark.parametrize("extra", [None, "hierarch", "continue"])
def test_raw_header_answers_as_astropy(extra):
    h = _odd_header()
    if extra == "hierarch":
        h.append(fits.Card("HIERARCH ESO OBS ID", 5))
    elif extra == "continue":
        h["LONGSTR"] = "x" * 100
    text = h.tostring()
    raw = _direct.RawHeader(text)
    full = fits.Header.fromstring(text)
    keys = ["OBJECT", "object", " EMPTY", "UNDEF", "SPEC_RES", "DP1", "DP1.AXIS.1", "OBID1",
            "COMMENT", "NOPE", "ESO OBS ID", "OBS ID", "LONGSTR", ("OBID1", 1)]
    for key in keys:
        assert (key in raw) == (key in full), key
        try:
            want = full[key]
        except (KeyError, IndexError) as exc:
            with pytest.raises(type(exc)):
                raw[key]  # noqa: B018
            assert raw.get(key, "absent") == "absent"
            continue
        got = raw[key]
        if key == "COMMENT":
            assert list(got) == list(want)
        else:
            assert got == want and type(got) is type(want), key
