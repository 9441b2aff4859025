"""MARCS grid handling, bracketing and interpolation."""

import gzip
import itertools

import numpy as np
import pytest
from astropy.table import Table

from specutils_cinn.synthesis.atmospheres import (
    MarcsGrid,
    _parse_name,
    atmosphere_for,
    read_model_structure,
)


def _name(geom, teff, logg, m_h, filled=False):
    mass, t = ("1.0", "02") if geom == "s" else ("0.0", "01")
    name = (f"{geom}{teff:.0f}_g{logg:+.1f}_m{mass}_t{t}_x3_z{m_h:+.2f}_a+0.00_c+0.00_n+0.00"
            f"_o+0.00_r+0.00_s+0.00.mod")
    return name + (".filled" if filled else "")


@pytest.fixture()
def toy_grid(tmp_path):
    """A small synthetic grid (3-line 'models') with two holes."""
    holes = {(5000, 4.5, 0.0), (4000, 2.0, -0.5)}
    names, lines = [], []
    for t, g, z in itertools.product([4000, 4500, 5000, 5500], [1.5, 2.0, 2.5, 3.0, 3.5, 4.0,
                                                                  4.5], [-1.0, -0.5, 0.0, 0.5]):
        names.append(_name("s" if g <= 3.0 else "p", t, g, z, (t, g, z) in holes))
        lines += [names[-1], f"{t} {g} {z}", "end"]
    Table({"filename": names, "nlines": [3] * len(names)}).write(tmp_path / "marcs_index.fits")
    with gzip.open(tmp_path / "marcs_data.txt.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return MarcsGrid(tmp_path)


def test_parse_name():
    node = _parse_name(_name("s", 4250, -0.5, -1.75, filled=True))
    assert (node.spherical, node.teff, node.logg, node.m_h, node.filled) == \
        (True, 4250.0, -0.5, -1.75, True)
    with pytest.raises(ValueError):
        _parse_name("kurucz.dat")


def test_extraction_slices_by_nlines(toy_grid):
    node = toy_grid.node(4500, 2.5, -0.5)
    assert toy_grid.path(node).read_text().splitlines() == [node.name, "4500 2.5 -0.5", "end"]
    assert len(list(toy_grid.cache_dir.iterdir())) == len(toy_grid) + 1  # + .complete


def test_bracket_plain_and_order(toy_grid):
    nodes, widened, extra = toy_grid.bracket(5200, 3.7, 0.2, spherical=False)
    assert [(n.teff, n.logg, n.m_h) for n in nodes] == [
        (t, g, z) for t in (5000, 5500) for g in (3.5, 4.0) for z in (0.0, 0.5)]
    assert widened == () and not extra


def test_bracket_at_node_collapses(toy_grid):
    nodes, widened, extra = toy_grid.bracket(4500, 2.0, 0.0, spherical=True)
    assert {n.name for n in nodes} == {_name("s", 4500, 2.0, 0.0)}
    assert widened == () and not extra


def test_bracket_widens_around_a_hole(toy_grid):
    nodes, widened, extra = toy_grid.bracket(4800, 4.2, -0.2, spherical=False)
    assert not any(n.filled for n in nodes) and widened and not extra
    ts, gs, zs = ({getattr(n, a) for n in nodes} for a in ("teff", "logg", "m_h"))
    assert min(ts) <= 4800 <= max(ts) and min(gs) <= 4.2 <= max(gs)
    assert min(zs) <= -0.2 <= max(zs)


def test_bracket_extrapolates_outside_and_respects_geometry(toy_grid):
    nodes, _, extra = toy_grid.bracket(6000, 4.2, 0.2, spherical=False)
    assert extra and {n.teff for n in nodes} == {5000, 5500}
    nodes, _, _ = toy_grid.bracket(4700, 2.9, 0.2, spherical=True)
    assert all(n.spherical for n in nodes) and {n.logg for n in nodes} == {2.5, 3.0}


# --- with the real grid and interpol_modeles -----------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory, synthesis_install):
    install = synthesis_install
    return install, MarcsGrid(install.atmos_dir), tmp_path_factory.mktemp("atm")


@pytest.mark.parametrize("params", [(5750, 4.5, 0.0), (4500, 2.0, -0.5), (6000, 3.5, -1.5)])
def test_interpolation_at_a_node_reproduces_it(real, params):
    install, grid, work = real
    atm = atmosphere_for(*params, grid=grid, workdir=work, interpolator=install.interpolator)
    assert atm.spherical == (params[1] <= 3.0) and not atm.extrapolated and not atm.filled
    got = read_model_structure(atm.path)
    ref = read_model_structure(grid.path(grid.node(*params)))
    np.testing.assert_allclose(got["lgtaur"], ref["lgtaur"], atol=1e-4)
    np.testing.assert_allclose(got["T"], ref["T"], rtol=1e-4)
    np.testing.assert_allclose(got["logpe"], ref["logpe"], atol=2e-3)
    np.testing.assert_allclose(got["logpg"], ref["logpg"], atol=2e-3)


def test_midpoint_lies_between_neighbors(real):
    install, grid, work = real
    atm = atmosphere_for(5625, 4.5, 0.0, grid=grid, workdir=work,
                         interpolator=install.interpolator, name="mid.mod")
    assert atm.interpolated and len(set(atm.nodes)) == 2
    mid = read_model_structure(atm.path)
    lo = read_model_structure(grid.path(grid.node(5500, 4.5, 0.0)))
    hi = read_model_structure(grid.path(grid.node(5750, 4.5, 0.0)))
    for key in ("T", "logpe"):
        a, b = np.minimum(lo[key], hi[key]), np.maximum(lo[key], hi[key])
        tol = 1e-3 * np.abs(b)
        assert np.all((mid[key] >= a - tol) & (mid[key] <= b + tol)), key
        assert np.any(np.abs(mid[key] - lo[key]) > 1e-3)  # not just a copy of a node


def test_logg_gap_is_a_blend_between_sph_and_pp(real):
    install, grid, work = real
    kw = {"grid": grid, "workdir": work, "interpolator": install.interpolator}
    gap = atmosphere_for(4800, 3.25, -0.3, name="gap.mod", **kw)
    sph = atmosphere_for(4800, 3.0, -0.3, name="s30.mod", **kw)
    pp = atmosphere_for(4800, 3.5, -0.3, name="p35.mod", **kw)
    assert gap.source == "marcs-sph3.0-pp3.5-blend" and not gap.spherical
    assert sph.spherical and not pp.spherical and not gap.extrapolated
    g, s, p = (read_model_structure(a.path) for a in (gap, sph, pp))
    np.testing.assert_allclose(g["logpg"], 0.5 * (s["logpg"] + p["logpg"]), atol=2e-4)
    assert np.all(p["logpg"] > s["logpg"])  # higher gravity, higher pressure


def test_filled_nodes_are_avoided_in_the_real_grid(real):
    install, grid, work = real
    holes = [n for n in grid.nodes.values() if n.filled and not n.spherical
             and 4000 <= n.teff <= 7000 and n.m_h > -2.5]
    if not holes:
        pytest.skip("no plane-parallel holes in 4000-7000 K")
    h = holes[0]
    atm = atmosphere_for(h.teff, h.logg, h.m_h, grid=grid, workdir=work,
                         interpolator=install.interpolator, name="hole.mod")
    assert not atm.filled and atm.widened and h.name not in atm.nodes
