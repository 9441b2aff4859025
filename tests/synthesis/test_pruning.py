"""Per-star line-list pruning (specutils_cinn.synthesis.pruning)."""

import numpy as np
import pytest

from specutils_cinn.synthesis.linelists import read_turbospectrum_linelist
from specutils_cinn.synthesis.pruning import (
    FE_PROBE_LOGGF,
    MOLECULE_STRONG_LOGGF,
    PROBE_LOGGF,
    IndexedLineList,
    LinePruning,
    _log_k,
    species_in,
)
from specutils_cinn.synthesis.turbospectrum import synthesize

LIST = """\
'  26.000            '    1         3
'Fe I    LTE'
  5000.100  1.000 -1.000 2006.342    4.0  6.61E+07 'p' 'd'   0.0    1.0 'Fe I x'
  5001.200  2.000 -5.500    2.500    1.0  1.649E+08 'X' 'X'
  5003.300  0.500 -2.250    2.500    1.0  1.649E+08 'X' 'X'
'0607.012014         '    1         2
'CN 12C14N linemake'
  5000.015   1.703  -2.225    0.000    1.0  1.715E+08 'X' 'X'
  5002.500   0.300  -9.000    0.000    1.0  1.715E+08 'X' 'X'
"""


@pytest.fixture
def small_list(tmp_path):
    path = tmp_path / "small.list"
    path.write_text(LIST)
    return path


def test_indexed_list_reads_and_writes_exact_records(small_list, tmp_path):
    ll = IndexedLineList(small_list)
    assert len(ll) == 5
    assert ll.species == [("26.000", 1), ("0607.012014", 1)]
    np.testing.assert_allclose(ll.wavelength, [5000.1, 5001.2, 5003.3, 5000.015, 5002.5])
    np.testing.assert_allclose(ll.loggf, [-1.0, -5.5, -2.25, -2.225, -9.0])
    out = tmp_path / "all.list"
    assert ll.write_subset(np.ones(5, bool), out) == 5
    np.testing.assert_array_equal(read_turbospectrum_linelist(out),
                                  read_turbospectrum_linelist(small_list))
    # records are copied byte for byte (labels and NLTE columns kept)
    assert "'Fe I x'" in out.read_text()
    sub = tmp_path / "sub.list"
    assert ll.write_subset(np.array([True, False, True, False, False]), sub) == 2
    back = read_turbospectrum_linelist(sub)
    np.testing.assert_allclose(back["wavelength"], [5000.1, 5003.3])
    assert "CN" not in sub.read_text()  # empty blocks are dropped
    with pytest.raises(ValueError, match="shape"):
        ll.write_subset(np.ones(4, bool), sub)


def test_indexed_list_rejects_short_block(tmp_path):
    path = tmp_path / "bad.list"
    path.write_text(LIST.replace("    1         2\n", "    1         3\n"))
    with pytest.raises(ValueError, match="announces 3 lines"):
        IndexedLineList(path)


def test_log_k_regimes():
    # the strongest probe on the linear part wins
    assert _log_k([(-7, 1e-5), (-4, 0.002), (-1, 0.5)]) == pytest.approx(np.log10(0.002) + 4)
    # too weak everywhere: the floor bound at the strongest probe (an overestimate)
    assert _log_k([(-7, 0.0), (-4, 1e-6), (-1, 2e-5)]) == pytest.approx(np.log10(3e-5) + 1)
    # weak but readable (bsyn writes 1e-5): used
    assert _log_k([(-7, 0.0), (-4, 1e-6), (-1, 5e-5)]) == pytest.approx(np.log10(5e-5) + 1)
    # saturated everywhere: keep every line
    assert _log_k([(-7, 0.3), (-4, 0.8), (-1, 0.9)]) == np.inf


def test_probe_plan(small_list):
    species = species_in([small_list])
    assert {(c.strip(), i, m) for c, i, m in species} == {("26.000", 1, False),
                                                         ("0607.012014", 1, True)}
    windows, text, probes = LinePruning().probe_plan(species, (3700.0, 9500.0))
    for w, key, _chi, g, _role in probes:
        assert (g in PROBE_LOGGF or (key[0] == "0607.012014" and g in MOLECULE_STRONG_LOGGF)
                or (key[0] == "26.000" and g in FE_PROBE_LOGGF))
        assert any(a < w < b for a, b, _ in windows)
    edges = sorted((a, b) for a, b, _ in windows)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(edges, edges[1:], strict=False))
    roles = {p[4] for p in probes}
    assert roles == {"k", "theta", "theta_high", "lambda"}


def test_excitation_is_piecewise_and_never_steeper_above():
    from specutils_cinn.synthesis.pruning import SpeciesStrength

    s = SpeciesStrength(log_k={}, theta_atom=1.2, theta_molecule=1.4,
                        wavelength_knots=np.array([5000.0]), log_c=np.array([0.0]),
                        theta_atom_high=0.9, theta_molecule_high=1.1)
    np.testing.assert_allclose(s.excitation(np.array([2.0, 4.0, 10.0]), molecule=False),
                               [2.4, 4.8, 4.8 + 0.9 * 6])
    np.testing.assert_allclose(s.excitation(np.array([1.0, 3.0]), molecule=True),
                               [1.4, 2.8 + 1.1])


def test_min_depth_checked():
    with pytest.raises(ValueError, match="min_depth"):
        LinePruning(min_depth=0.0)


@pytest.mark.slow  # several Turbospectrum runs
def test_pruned_synthesis_matches(synthesis_install):
    """A short window of a cool giant: pruning drops most lines and changes little."""
    inst = synthesis_install
    lists = [inst.ges_linelist, inst.hlinedata,
             *(p for f, p in inst.extended_linelists.items() if f != "sih")]
    labels = {"teff": 4300.0, "logg": 2.0, "fe_h": -0.5, "vmic": 1.5}
    window = [(5160.0, 5190.0, 0.03)]
    full = synthesize(labels, window, install=inst, line_lists=lists)
    pruned = synthesize(labels, window, install=inst, line_lists=lists,
                        line_pruning=LinePruning(min_depth=1e-4))
    info = pruned.pruning
    assert info["lines_kept"] < 0.2 * info["lines_in"]
    assert info["min_depth"] == 1e-4
    diff = np.abs(full.flux[0] - pruned.flux[0])
    assert diff.max() < 0.01   # unbroadened; after the 4MOST LSF it is far smaller
    assert np.median(diff) < 1e-3
