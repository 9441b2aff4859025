"""Solar log gf calibration pieces and the line-strength index."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.table import Table

from specutils_cinn.synthesis.line_strength import IrwinAtoms, line_strength_index
from specutils_cinn.synthesis.linelists import TS_DTYPE, write_turbospectrum_linelist
from specutils_cinn.synthesis.loggf import LoggfCalibration, fit_loggf_changes, separated_sets


def test_separated_sets_keep_members_apart_and_use_few_sets():
    rng = np.random.default_rng(1)
    w = np.sort(rng.uniform(5000, 5010, 200))
    sets = separated_sets(w, 0.6)
    assert sorted(np.concatenate(sets).tolist()) == list(range(200))
    for s in sets:
        assert np.all(np.diff(w[s]) >= 0.6)
    # optimal for intervals: the densest 0.6 A stretch
    densest = max(np.sum((w >= x) & (w < x + 0.6)) for x in w)
    assert len(sets) == densest


def test_fit_recovers_changes_and_respects_bounds():
    rng = np.random.default_rng(2)
    npix, nl = 400, 5
    r = np.zeros((npix, nl))
    for j in range(nl):
        c = 40 + 80 * j
        r[c - 10:c + 10, j] = -0.3 * np.exp(-0.5 * ((np.arange(20) - 10) / 3) ** 2)
    truth = np.array([0.2, -0.1, 0.0, 0.3, -0.25])
    y = r @ truth + 1e-4 * rng.standard_normal(npix)
    lo, hi = np.full(nl, -0.5), np.full(nl, 0.5)
    got = fit_loggf_changes(y, sp.csr_matrix(r), pixel_sigma=1e-3, prior_sigma=1.0,
                            lower=lo, upper=hi)
    np.testing.assert_allclose(got, truth, atol=0.01)
    capped = fit_loggf_changes(y, sp.csr_matrix(r), pixel_sigma=1e-3, prior_sigma=1.0,
                               lower=lo, upper=np.full(nl, 0.15))
    assert capped.max() <= 0.15 + 1e-9 and capped[3] == pytest.approx(0.15)
    # a tight prior pulls the changes towards the laboratory values (0)
    shrunk = fit_loggf_changes(y, sp.csr_matrix(r), pixel_sigma=1e-3, prior_sigma=1e-3,
                               lower=lo, upper=hi)
    assert np.all(np.abs(shrunk) < np.abs(truth) + 1e-3) and np.abs(shrunk).max() < 0.1


def _list(path: Path) -> np.ndarray:
    a = np.zeros(3, TS_DTYPE)
    a["wavelength"] = [5000.1, 5001.2, 6000.3]
    a["element"], a["ion"] = [26, 26, 22], [1, 2, 1]
    a["chi"], a["loggf"] = [2.0, 3.0, 1.0], [-1.0, -2.5, -0.5]
    a["fdamp"], a["gu"], a["raddmp"] = 2.5, 1.0, 1e8
    write_turbospectrum_linelist(a, path)
    return a


def test_calibration_applies_only_logged_changes_and_checks_the_source(tmp_path):
    from specutils_cinn.synthesis.linelists import read_turbospectrum_linelist

    src = tmp_path / "lab.ts"
    _list(src)
    lab = read_turbospectrum_linelist(src)
    k = int(np.flatnonzero(np.isclose(lab["wavelength"], 5001.2))[0])
    t = Table(rows=[("ges", k, 26, 2, 5001.2, 3.0, -2.5, 0.137)],
              names=("list", "record", "element", "ion", "wavelength", "chi", "loggf_lab",
                     "delta"))
    cal = LoggfCalibration.from_changes(t, {"ges": src}, {"fitted_on": "test"})
    cal.write(tmp_path / "cal.ecsv")
    back = LoggfCalibration.read(tmp_path / "cal.ecsv")
    assert back.sources == cal.sources and back.meta["fitted_on"] == "test"
    assert back.apply("ges", src, tmp_path / "cal.ts") == 1
    new = read_turbospectrum_linelist(tmp_path / "cal.ts")
    np.testing.assert_allclose(new["loggf"] - lab["loggf"],
                               np.where(np.arange(3) == k, 0.137, 0.0), atol=1e-9)
    for f in ("wavelength", "chi", "fdamp", "raddmp"):
        np.testing.assert_array_equal(new[f], lab[f])
    # a different source file, or a record that no longer holds the line, is refused
    other = tmp_path / "other.ts"
    other.write_text(src.read_text().replace("-1.000", "-1.100"))
    with pytest.raises(ValueError, match="SHA-256"):
        back.apply("ges", other, tmp_path / "x.ts")
    t2 = t.copy()
    t2["loggf_lab"] = -2.0
    with pytest.raises(ValueError, match="expected"):
        LoggfCalibration.from_changes(t2, {"ges": src}).apply("ges", src, tmp_path / "y.ts")
    with pytest.raises(ValueError, match="no source list"):
        back.apply("vald", src, tmp_path / "z.ts")


def test_line_strength_index(synthesis_install):
    atoms = IrwinAtoms(Path(synthesis_install.data_dir) / "IRWIN_atoms_v07.3.dat")
    frac = atoms.stage_fractions(26, 0.9 * 5772, 1.0)
    assert 0.02 < frac[0] < 0.15 and frac[1] > 0.85  # iron is mostly ionized in the Sun
    a = np.zeros(4, TS_DTYPE)
    a["wavelength"] = 6000.0
    a["element"], a["ion"] = [26, 26, 26, 607], [1, 1, 1, 1]
    a["chi"], a["loggf"] = [2.0, 2.0, 4.0, 1.0], [-2.0, -1.0, -2.0, -1.0]
    s = line_strength_index(a, teff=5772, logg=4.44, m_h=0.0, abundances={26: 7.45},
                            atoms=atoms)
    assert s[1] - s[0] == pytest.approx(1.0)
    assert s[0] - s[2] == pytest.approx(5040.0 * 2.0 / (0.9 * 5772))
    assert np.isnan(s[3])  # molecules have no index
    cool = line_strength_index(a, teff=4500, logg=2.0, m_h=0.0, abundances={26: 7.45},
                               atoms=atoms)
    assert cool[0] > s[0]  # neutral iron lines are stronger in a cool giant
