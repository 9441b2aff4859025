"""The Turbospectrum driver: control texts (pure) and real runs (need the install)."""

import time
from pathlib import Path

import numpy as np
import pytest

from specutils_cinn.synthesis.atmospheres import Atmosphere
from specutils_cinn.synthesis.turbospectrum import (
    GAS07_FALLBACK,
    NLTEOptions,
    NLTESpecies,
    abundances_from_labels,
    babsma_control,
    bsyn_control,
    parse_solar_scale,
    solar_scale,
    synthesize,
)

SOLAR = {1: 12.0, 3: 1.1, 12: 7.5, 20: 6.3, 22: 4.9, 25: 5.4, 26: 7.4, 28: 6.2, 56: 2.2}


def _atm(spherical=False, marcs=False):
    return Atmosphere(path=Path("/x/model.mod"), marcs_file_format=marcs, spherical=spherical,
                      teff=5000, logg=2.0, m_h=-0.5, interpolated=True, filled=False,
                      extrapolated=False, nodes=("a",))


def _keys(text):
    return [ln.split("'")[1] for ln in text.splitlines() if ln.startswith("'")]


def test_abundances_on_the_solar_scale():
    ab = abundances_from_labels({"teff": 5000, "fe_h": -0.5, "mg_fe": 0.3, "Ba_fe": -0.2,
                                 "ni_fe": 0.0, "vmic": 1.0}, SOLAR)
    assert list(ab) == ["Mg", "Fe", "Ni", "Ba"]  # by atomic number, Fe always present
    assert ab["Fe"] == pytest.approx(6.9)
    assert ab["Mg"] == pytest.approx(7.5 - 0.5 + 0.3)
    assert ab["Ba"] == pytest.approx(2.2 - 0.5 - 0.2)
    assert ab["Ni"] == pytest.approx(5.7)


def test_lithium_absolute_wins_over_relative():
    rel = abundances_from_labels({"fe_h": -1.0, "li_fe": 0.5}, SOLAR)
    assert rel["Li"] == pytest.approx(1.1 - 1.0 + 0.5)
    both = abundances_from_labels({"fe_h": -1.0, "li_fe": 0.5, "a_li": 2.2}, SOLAR)
    assert both["Li"] == pytest.approx(2.2)


def test_unknown_element_is_rejected():
    with pytest.raises(ValueError, match="element"):
        abundances_from_labels({"fe_h": 0.0, "xx_fe": 0.1}, SOLAR)


def test_babsma_control_keys_and_values():
    ab = abundances_from_labels({"fe_h": -0.5, "mg_fe": 0.3}, SOLAR)
    text = babsma_control(lambda_min=5000, lambda_max=5100, step=0.02, atmosphere=_atm(),
                          metallicity=-0.5, vmic=1.7, abundances=ab, model_name="model.mod")
    assert _keys(text) == ["LAMBDA_MIN:", "LAMBDA_MAX:", "LAMBDA_STEP:", "MODELINPUT:",
                           "MARCS-FILE:", "MODELOPAC:", "METALLICITY:", "ALPHA/Fe:", "HELIUM:",
                           "R-PROCESS:", "S-PROCESS:", "INDIVIDUAL ABUNDANCES:", "XIFIX:"]
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if "INDIVIDUAL" in ln)
    assert lines[i] == "'INDIVIDUAL ABUNDANCES:' '2'"
    assert [ln.split() for ln in lines[i + 1:i + 3]] == [["12", "7.300"], ["26", "6.900"]]
    assert "'MARCS-FILE:' '.false.'" in lines and "'METALLICITY:' '-0.500'" in lines
    assert lines[-2:] == ["'XIFIX:' 'T'", "1.700"]
    marcs = babsma_control(lambda_min=5000, lambda_max=5100, step=0.02,
                           atmosphere=_atm(marcs=True), metallicity=0, vmic=1, abundances={})
    assert "'MARCS-FILE:' '.true.'" in marcs and "'INDIVIDUAL ABUNDANCES:' '0'" in marcs


@pytest.mark.parametrize("spherical", [True, False])
def test_bsyn_control_spherical_and_line_lists(spherical):
    text = bsyn_control(lambda_min=6100, lambda_max=6790, step=0.03,
                        atmosphere=_atm(spherical=spherical), metallicity=-0.5,
                        abundances={"Fe": 6.9}, line_lists=["/a/ges", "/b/Hlinedata"],
                        result_file="spec0")
    lines = text.splitlines()
    keys = _keys(text)
    assert keys[:6] == ["LAMBDA_MIN:", "LAMBDA_MAX:", "LAMBDA_STEP:", "INTENSITY/FLUX:",
                        "COS(THETA):", "ABFIND:"]
    assert keys[-2:] == ["NFILES:", "SPHERICAL:"] and "NLTE :" not in keys
    i = lines.index("'NFILES:' '2'")
    assert lines[i + 1:i + 3] == ["/a/ges", "/b/Hlinedata"]
    assert lines[i + 3] == f"'SPHERICAL:' '{'T' if spherical else 'F'}'"
    assert lines[i + 4:] == ["30", "300.00", "15", "1.30"]
    assert "'RESULTFILE:' 'spec0'" in lines and "'LAMBDA_STEP:' '0.0300'" in lines


def test_nlte_control_text_and_info_file():
    # Only the text is tested: no model atoms or departure grids are available here.
    opts = NLTEOptions(species={"Fe": NLTESpecies("atom.fe607a", "NLTEgrid_Fe.bin", binary=True),
                                "Mg": NLTESpecies("atom.mg86b", "mg_dep.dat"),
                                "Ca": NLTESpecies("atom.ca105b", "ca.dat", nlte=False)},
                       model_atom_dir="/atoms", departure_dir="/deps", segments_file="seg.txt")
    text = bsyn_control(lambda_min=5000, lambda_max=5001, step=0.01, atmosphere=_atm(),
                        metallicity=0, abundances={}, line_lists=["l"], nlte=opts,
                        nlte_info_file="info.dat")
    assert {"'NLTE :' '.true.'", "'NLTEINFOFILE:' 'info.dat'",
            "'SEGMENTSFILE:' 'seg.txt'"} <= set(text.splitlines())
    assert text.index("NLTEINFOFILE") < text.index("NFILES")
    info = opts.info_file_text().splitlines()
    assert info[info.index("# path for model atom files     ! don't change this line !") + 1] \
        == "/atoms/"
    assert info[info.index("# path for departure files      ! don't change this line !") + 1] \
        == "/deps/"
    rows = [ln.split("\t") for ln in info if ln[:1].isdigit()]
    assert [r[0] for r in rows] == ["12", "20", "26"]
    assert rows[2] == ["26", "'Fe'", "'nlte'", "'atom.fe607a'", "'NLTEgrid_Fe.bin'", "'binary'"]
    assert rows[1][2] == "'lte'" and rows[0][5] == "'ascii'"


def test_parse_solar_scale_from_log():
    log = ("junk\n ELEMENT  ATOMIC NUMBER   LOG(ABUNDANCE)\n     H             1       12.000\n"
           "     Li            3        1.050\n     Fe           26        7.450\n"
           " MOLECPARTF. suppressing: 1\n     Xx           99        1.000\n")
    assert parse_solar_scale(log) == {1: 12.0, 3: 1.05, 26: 7.45}
    with pytest.raises(ValueError):
        parse_solar_scale("no table here")


def test_bad_inputs_fail_before_running(tmp_path):
    with pytest.raises(KeyError, match="vmic"):
        synthesize({"teff": 5000, "logg": 4, "fe_h": 0}, [(5000, 5001, 0.01)])
    with pytest.raises(ValueError, match="windows"):
        synthesize({"teff": 5000, "logg": 4, "fe_h": 0, "vmic": 1}, [(5001, 5000, 0.01)])


# --- real runs -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def install(synthesis_install):
    return synthesis_install


@pytest.fixture(scope="session")
def lists(install):
    return [install.ges_linelist, install.hlinedata]


@pytest.fixture(scope="session")
def grid(install):
    from specutils_cinn.synthesis.atmospheres import MarcsGrid

    return MarcsGrid(install.atmos_dir)


def test_solar_scale_read_from_babsma(install):
    scale = solar_scale(install)
    for z in (3, 12, 20, 22, 25, 26, 28):  # Turbospectrum v20 default is GAS07
        assert scale[z] == pytest.approx(GAS07_FALLBACK[z], abs=0.006)


def test_real_solar_run_mg_b(install, lists, grid, tmp_path):
    t0 = time.perf_counter()
    res = synthesize({"teff": 5772, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0},
                     [(5160.0, 5170.0, 0.02)], install=install, line_lists=lists,
                     workdir=tmp_path, grid=grid)
    assert time.perf_counter() - t0 < 60
    w, f = res.wavelength[0], res.flux[0]
    assert w.size == 501 and w[0] == 5160.0 and w[-1] == pytest.approx(5170.0)
    assert np.all(f > 0) and np.all(f <= 1.05)
    assert np.interp(5167.32, w, f) < 0.35  # Mg I b2 (blended with Fe I 5167.49)
    assert np.median(f) > 0.8
    assert res.atmosphere.spherical is False and res.abundances == {"Fe": 7.45}
    assert (tmp_path / "bsyn0.inp").is_file() and np.all(res.absolute_flux[0] > 0)


def test_real_giant_spherical_and_mg_sensitivity(install, lists, grid):
    base = {"teff": 4500, "logg": 2.0, "fe_h": -0.5, "vmic": 1.5}
    win = [(5172.0, 5174.5, 0.02)]  # Mg I b1 5172.68
    poor = synthesize({**base, "mg_fe": -0.3}, win, install=install, line_lists=lists,
                      grid=grid)
    rich = synthesize({**base, "mg_fe": 0.5}, win, install=install, line_lists=lists,
                      grid=grid)
    assert poor.atmosphere.spherical and not poor.atmosphere.extrapolated
    assert rich.abundances["Mg"] - poor.abundances["Mg"] == pytest.approx(0.8)
    w = poor.wavelength[0]
    near = np.abs(w - 5172.68) < 0.8
    # more Mg: a wider, deeper b1 line (equivalent width grows)
    assert np.sum(1 - rich.flux[0][near]) > 1.1 * np.sum(1 - poor.flux[0][near])


def test_real_run_in_the_logg_gap(install, lists, grid):
    res = synthesize({"teff": 4800, "logg": 3.3, "fe_h": -0.3, "vmic": 1.2},
                     [(6150.0, 6160.0, 0.02)], install=install, line_lists=lists, timeout=120,
                     grid=grid)
    assert res.atmosphere.source == "marcs-sph3.0-pp3.5-blend"
    f = res.flux[0]
    assert np.all(np.isfinite(f)) and 0 < f.min() < 0.9 and f.max() <= 1.05
