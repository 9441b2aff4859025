"""What a person sees of the output: units, display formats, FITS/ECSV round trips, flag names."""

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable

from specutils_cinn.flags import QualityFlag, flag_names
from specutils_cinn.parameters import parameter_unit
from specutils_cinn.results import (
    column_format,
    read_table,
    samples_table,
    summary_table,
    unit_string,
    write_table,
)

PARAMS = ["teff", "logg", "fe_h", "vsini", "mg_fe"]
UNITS = [parameter_unit(p) for p in PARAMS]


def _summary(unconstrained=("mg_fe",)):
    rng = np.random.default_rng(3)
    n = 3
    med = rng.normal(size=(n, len(PARAMS))) + [5718.09228515625, 4.4, 0.0, 5.0, 0.1]
    qs = np.stack([med - 0.1, med, med + 0.1], axis=1)
    return summary_table(
        PARAMS, UNITS, med, qs, [0.16, 0.5, 0.84], np.abs(med) * 0.01,
        np.array([50.0, 60.0, 70.0]), np.array([1.0, 1.0, 0.5]), np.array([0, 80, 8]),
        {"MODEL": "test-model", "QUANTILE": [0.16, 0.5, 0.84]},
        fit_chi2=np.array([1.0234, np.nan, 3.5]), unconstrained=unconstrained,
    )


def _samples():
    rng = np.random.default_rng(4)
    draws = (rng.normal(size=(2, 50, len(PARAMS))) + [5700.0, 4.4, 0.0, 5.0, 0.1]).astype(
        np.float32)
    return samples_table(PARAMS, UNITS, draws, np.array([50.0, 60.0]), np.array([1.0, 1.0]),
                         np.array([0, 64]), {"MODEL": "test-model"})


def _filled(col):
    """Values with masked entries as NaN (FITS stores both as NaN)."""
    values = np.asarray(getattr(col, "unmasked", col), dtype=float).copy()
    values[np.asarray(getattr(col, "mask", False)) & np.ones(values.shape, bool)] = np.nan
    return values


def _assert_same(read, table):
    assert read.colnames == table.colnames
    for name in table.colnames:
        a, b = read[name], table[name]
        assert getattr(a, "unit", None) == getattr(b, "unit", None), name
        if isinstance(b, u.Quantity):
            assert isinstance(a, type(b)), (name, type(a), type(b))
        np.testing.assert_array_equal(_filled(a), _filled(b))
        assert a.info.description == b.info.description
    assert read.meta["MODEL"] == "test-model"


# ------------------------------------------------------------------------------ units


def test_unit_strings_as_astronomers_write_them():
    assert unit_string(u.dex(u.cm / u.s**2)) == "log(cm s-2)"
    assert unit_string(u.dex) == "dex"
    assert unit_string(u.K) == "K"
    assert unit_string(u.km / u.s) == "km s-1"
    assert unit_string(None) is None


def test_logg_keeps_its_physical_unit():
    t = _summary()
    assert t["logg"].unit == u.dex(u.cm / u.s**2)
    assert t["logg_std"].unit == u.dex
    # dex(cm / s2) is log10(g / (cm s-2)): convertible to the physical gravity
    np.testing.assert_allclose(t["logg"].physical.to_value(u.cm / u.s**2),
                               10 ** t["logg"].value)


# ------------------------------------------------------------------------------ formats


def test_column_formats_by_unit():
    assert column_format(u.K) == ".0f"
    assert column_format(u.dex(u.cm / u.s**2)) == ".3f"
    assert column_format(u.dex) == ".3f"
    assert column_format(u.km / u.s) == ".2f"
    assert column_format(None) is None


def test_tables_print_with_sensible_digits():
    t = _summary()
    assert t["teff"].info.format == ".0f" and t["teff_p84"].info.format == ".0f"
    assert t["logg"].info.format == ".3f" and t["fe_h_std"].info.format == ".3f"
    assert t["vsini"].info.format == ".2f"
    assert t["snr"].info.format == ".1f" and t["coverage"].info.format == ".3f"
    assert t["fit_chi2"].info.format == ".2f"
    assert t["flags"].info.format is None
    text = "\n".join(t.pformat(max_width=-1))
    assert f"{t['teff'][0].value:.0f}" in text
    assert f"{t['teff'][0].value:.1f}" not in text  # no 5718.09228515625
    assert f"{t['logg'][0].value:.3f}" in text and f"{t['logg'][0].value:.5f}" not in text
    assert "1.02" in text and "1.0234" not in text
    # the values themselves are not rounded
    assert t["teff"][0].value != round(t["teff"][0].value)


def test_samples_table_has_formats():
    t = _samples()
    assert t["teff"].info.format == ".0f" and t["logg"].info.format == ".3f"


# ------------------------------------------------------------------------------ files


@pytest.mark.parametrize("suffix", [".ecsv", ".fits"])
@pytest.mark.parametrize("make", [_summary, _samples])
def test_round_trip_keeps_units_formats_and_meta_without_warnings(tmp_path, suffix, make):
    t = make()
    path = tmp_path / f"res{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy's "could not be saved" would fail here
        write_table(t, path)
        read = read_table(path)
        plain = QTable.read(path)  # astropy alone restores the units too
    _assert_same(read, t)
    for name in t.colnames:
        assert getattr(plain[name], "unit", None) == getattr(t[name], "unit", None), name
    assert read["logg"].info.format.strip("{:}").endswith(".3f")


def test_csv_keeps_full_values(tmp_path):
    t = _summary()
    write_table(t, tmp_path / "res.csv")
    back = QTable.read(tmp_path / "res.csv")
    np.testing.assert_array_equal(back["teff"], t["teff"].value)
    assert t["teff"].info.format == ".0f"  # the table itself keeps its formats


def test_fits_labels_dex_columns_for_other_software(tmp_path):
    t = _summary()
    path = tmp_path / "res.fits"
    write_table(t, path)
    header = fits.getheader(path, 1)
    names = [header[f"TTYPE{i}"] for i in range(1, header["TFIELDS"] + 1)]
    i_logg, i_feh, i_teff = (names.index(n) + 1 for n in ("logg", "fe_h", "teff"))
    assert header[f"TUNIT{i_teff}"] == "K"
    assert header.comments[f"TTYPE{i_logg}"] == "[log(cm s-2)]"
    assert header.comments[f"TTYPE{i_feh}"] == "[dex]"
    assert f"TUNIT{i_logg}" not in header  # astropy could not read it back
    assert header[f"TDISP{i_logg}"].startswith("F") and header[f"TDISP{i_logg}"].endswith(".3")


def test_fits_standard_units_get_tunit_and_read_back(tmp_path):
    t = _summary()
    path = tmp_path / "res.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_table(t, path, fits_units="standard")
        read = read_table(path)
    header = fits.getheader(path, 1)
    tunits = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}")
              for i in range(1, header["TFIELDS"] + 1)}
    assert tunits["logg"] == "log(cm s-2)" and tunits["logg_p16"] == "log(cm s-2)"
    assert tunits["fe_h"] == "dex" and tunits["logg_std"] == "dex" and tunits["mg_fe"] == "dex"
    assert tunits["teff"] == "K" and tunits["vsini"] == "km s-1"
    _assert_same(read, t)


def test_read_table_restores_units_from_tunit_alone(tmp_path):
    # a FITS file with the conventional TUNITs but no astropy metadata (another program's)
    cols = [fits.Column("logg", "D", unit="log(cm s-2)", array=[4.4, 2.5]),
            fits.Column("fe_h", "D", unit="dex", array=[0.0, -1.0]),
            fits.Column("teff", "D", unit="K", array=[5772.0, 4500.0])]
    path = tmp_path / "other.fits"
    fits.BinTableHDU.from_columns(cols).writeto(path)
    t = read_table(path)
    assert t["logg"].unit == u.dex(u.cm / u.s**2) and t["fe_h"].unit == u.dex
    assert t["teff"].unit == u.K
    np.testing.assert_array_equal(t["logg"].value, [4.4, 2.5])


def test_write_table_checks_fits_units(tmp_path):
    with pytest.raises(ValueError, match="fits_units"):
        write_table(_summary(), tmp_path / "x.fits", fits_units="cgs")


# ------------------------------------------------------------------------------ flags


def test_flag_names_of_values_and_columns():
    assert QualityFlag.names(80) == ["PARAMETER_AT_EDGE", "POOR_FIT"]
    assert QualityFlag.names(0) == []
    assert flag_names(80) == "PARAMETER_AT_EDGE|POOR_FIT"
    assert flag_names(np.int32(0)) == ""
    t = _summary()
    names = flag_names(t["flags"])
    assert names.tolist() == ["", "PARAMETER_AT_EDGE|POOR_FIT", "NOISE_ESTIMATED"]
    assert flag_names(np.array([[1, 2]]), sep=",").tolist() == [["LOW_COVERAGE", "NO_OVERLAP"]]
    masked = np.ma.array([8, 8], mask=[False, True])
    assert flag_names(masked).tolist() == ["NOISE_ESTIMATED", ""]
    assert flag_names([]).shape == (0,)


def test_flags_unknown_to_this_version_are_named_by_bit():
    assert QualityFlag.names(1 << 20 | 1) == ["LOW_COVERAGE", "BIT1048576"]
    assert "BIT1048576 (1048576): not defined in this version" in QualityFlag.describe(1 << 20)


def test_describe_explains_each_flag():
    text = QualityFlag.describe(80, width=None)
    lines = text.splitlines()
    assert lines[0].startswith("PARAMETER_AT_EDGE (16): ")
    assert lines[1].startswith("POOR_FIT (64): ") and "fit_chi2" in lines[1]
    assert QualityFlag.describe(0) == "NONE (0): no problem found"
    wrapped = QualityFlag.describe(80, width=40)
    assert all(len(line) <= 40 for line in wrapped.splitlines())
    assert len(wrapped.splitlines()) > 2


def test_every_flag_has_a_short_description():
    for flag in QualityFlag:
        assert "not defined" not in QualityFlag.describe(int(flag)), flag.name


@pytest.mark.parametrize("bad", [-1, 1.5, "8", True])
def test_flag_helpers_refuse_non_flags(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        QualityFlag.describe(bad)
    with pytest.raises(ValueError):
        flag_names(bad)
