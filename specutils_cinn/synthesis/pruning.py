"""Per-star pruning of line lists: leave out the lines too weak to change this star's spectrum.

Most of the million lines of the extended lists (TiO, C2, CN, weak atomic lines) are far too weak
to matter in a given star, yet Turbospectrum reads each one and computes its level populations and
at least one profile point. :class:`LinePruning` measures, once per star and with Turbospectrum
itself, how strong a line of each species is in that star, predicts the central depth of every
line, and writes per-star lists without the lines predicted weaker than ``min_depth``.

How the strength is measured (a "probe" run)
--------------------------------------------
One extra short ``bsyn`` run on the star's own model atmosphere and abundances, with a
synthetic list of *probe lines* (almost undamped, so that only their Doppler cores count):

- every molecule and isotopologue in the lists at excitation 0 and log gf = -7, -4, -1
  (:data:`PROBE_LOGGF`) and, in a window of their own, +1 and +3
  (:data:`MOLECULE_STRONG_LOGGF`), and CN at 2 eV;
- Fe I at 0, 4 and 8 eV and Fe II at 3 eV (log gf -10 to -1, :data:`FE_PROBE_LOGGF`), near
  the middle of the synthesized range, and Fe I at 0 eV near both ends.

A probe whose central depth ``d`` lies on the linear part of the curve of growth
(3e-5 <= d <= 0.1) gives its species' depth per unit gf, ``log k = log d - log gf``. The CN and
Fe I probes give the excitation temperatures (``theta = 5040 / T``) of molecular and atomic
lines, piecewise (high-excitation lines form deeper, in hotter layers, so their slope is
measured separately and never taken steeper); the Fe I probes at the ends give the wavelength
dependence ``log c(lambda)`` of the line-to-continuum opacity ratio. The central depth of a
molecular line is predicted as::

    log d = log k(species) + log gf - theta_molecule(chi) * chi + log c(lambda)

Atomic species are too many to probe each (and their saturated probes have Lorentz wings that
would darken their neighbors), so atomic lines use the line-strength index of
:func:`~specutils_cinn.synthesis.line_strength.line_strength_index` (Saha-Boltzmann with
Turbospectrum's partition functions, evaluated at the measured excitation temperature),
calibrated to central depth by the Fe I probes for neutral species and the Fe II probes for
ions::

    log d = S(line) - log lambda + offset(stage) + log c(lambda)

Lines predicted below ``min_depth`` are left out, as are lines farther than
:data:`WINDOW_MARGIN` from every window (Turbospectrum ignores those anyway). A species whose
probes are all below 3e-5 gets ``log k`` from that bound (an overestimate: its lines are kept if
the bound says they might matter); a species saturated at every probe keeps all its lines.
Hydrogen lines are never pruned. Probe lines only measure; the star's spectrum is synthesized
without them.

The tolerance is set and checked by ``python benchmarks/bench_synthesis.py`` against unpruned
syntheses after the 4MOST line-spread functions (HR and LR) on stars chosen to be hard: a cool
metal-rich giant, a metal-poor giant, a hot dwarf and the Sun.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .line_strength import IrwinAtoms, line_strength_index
from .linelists import TS_DTYPE

__all__ = ["PROBE_LOGGF", "IndexedLineList", "LinePruning", "SpeciesStrength",
           "indexed_line_list", "irwin_atoms", "species_in"]

#: log gf of the probe lines of each species (excitation energy 0).
PROBE_LOGGF = (-7.0, -4.0, -1.0)
#: Extra, stronger probe levels of molecules (in a window of their own).
MOLECULE_STRONG_LOGGF = (1.0, 3.0)
#: Probe spacing and the sampling step of the probe run (Angstrom).
PROBE_SPACING = 0.5
PROBE_STEP = 0.25
#: Depth range in which a probe is on the linear part of the curve of growth (bsyn writes the
#: normalized flux to 1e-5, so 3e-5 is read to about 30 %: enough to rank lines).
_LINEAR = (3.0e-5, 0.1)
#: Lines farther than this (Angstrom) from every window are left out of the pruned lists.
#: bsyn itself ignores lines more than ``xlmarg`` = 2 A outside its window (``input.f``; 5 A
#: with velocity fields), so 5 A keeps every line it reads.
WINDOW_MARGIN = 5.0
_FE1, _FE2 = ("26.000", 1), ("26.000", 2)
_CN = "0607.012014"
_CHI_ATOM, _CHI_ION, _CHI_MOLECULE = 4.0, 3.0, 2.0
#: log gf of the Fe probes: Fe I lines at excitation 0 saturate even at log gf = -7 in cool
#: metal-rich giants.
FE_PROBE_LOGGF = (-10.0, -7.0, -4.0, -1.0)
#: Spacing of the atomic (Fe) probes, whose saturated members have Lorentz wings.
_ATOM_SPACING = 2.0
#: Gap between probe groups: more than twice bsyn's margin, so no run sees another's probes.
_GROUP_GAP = 12.0


@dataclass
class _Block:
    species: str          # the quoted species code as written in the file (padding kept)
    ion: int
    comment: bytes        # the block's comment line, unchanged
    start: int            # index of its first line in the list's line arrays
    stop: int

    @property
    def key(self) -> tuple[str, int]:
        return self.species.strip(), self.ion

    @property
    def is_molecule(self) -> bool:
        return float(self.species.strip().split(".")[0]) >= 100


class IndexedLineList:
    """A Turbospectrum line list held in memory, for writing per-star subsets fast.

    Line records are kept as the exact bytes of the file, so a written subset is the original
    list minus the left-out lines, character for character.

    Parameters
    ----------
    path : path-like
        A Turbospectrum v20 line list (``'species' ion nlines`` blocks).

    Attributes
    ----------
    path : pathlib.Path
    wavelength, chi, loggf : numpy.ndarray
        Per line (file order): air wavelength (A), lower excitation energy (eV), log gf.
    block_index : numpy.ndarray
        Per line: the index of its species block.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        self._records: list[bytes] = []
        self.blocks: list[_Block] = []
        nums: list[np.ndarray] = []
        i = 0
        while i < len(lines):
            head = lines[i].decode()
            if not head.strip():
                i += 1
                continue
            parts = head.split("'")
            if len(parts) < 3:
                raise ValueError(f"{self.path}: line {i + 1} is not a species header: {head!r}")
            ion, nline = (int(v) for v in parts[2].split()[:2])
            records = lines[i + 2:i + 2 + nline]
            if len(records) != nline:
                raise ValueError(f"{self.path}: block {parts[1].strip()!r} announces {nline} "
                                 f"lines, the file has {len(records)}")
            start = len(self._records)
            self.blocks.append(_Block(parts[1], ion, lines[i + 1], start, start + nline))
            self._records.extend(records)
            text = b" ".join(b" ".join(r.split(None, 3)[:3]) for r in records)
            nums.append(np.array(text.split(), dtype=np.float64).reshape(nline, 3))
            i += 2 + nline
        table = np.concatenate(nums) if nums else np.zeros((0, 3))
        self.wavelength, self.chi, self.loggf = table[:, 0], table[:, 1], table[:, 2]
        self.block_index = np.repeat(np.arange(len(self.blocks)),
                                     [b.stop - b.start for b in self.blocks])

    def __len__(self) -> int:
        return len(self._records)

    @property
    def species(self) -> list[tuple[str, int]]:
        """(species code, ion) of every block."""
        return [b.key for b in self.blocks]

    def write_subset(self, keep: np.ndarray, path: str | os.PathLike[str]) -> int:
        """Write the lines where ``keep`` is true as a Turbospectrum list (empty blocks dropped).

        Parameters
        ----------
        keep : numpy.ndarray of bool, shape ``[len(self)]``
        path : path-like

        Returns
        -------
        int
            Number of lines written.
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self),):
            raise ValueError(f"keep must have shape ({len(self)},), got {keep.shape}")
        out: list[bytes] = []
        n = 0
        for b in self.blocks:
            idx = np.flatnonzero(keep[b.start:b.stop]) + b.start
            if idx.size == 0:
                continue
            out.append(f"'{b.species}' {b.ion:4d} {idx.size:9d}".encode())
            out.append(b.comment)
            out.extend(self._records[j] for j in idx)
            n += idx.size
        Path(path).write_bytes(b"\n".join(out) + b"\n" if out else b"")
        return n


_CACHE: dict[tuple[str, int, int], IndexedLineList] = {}


def indexed_line_list(path: str | os.PathLike[str]) -> IndexedLineList:
    """Return the :class:`IndexedLineList` of a file, parsed once per process.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    IndexedLineList
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = IndexedLineList(p)
    return _CACHE[key]


@dataclass
class SpeciesStrength:
    """The measured line strengths of one star (the result of a probe run).

    Attributes
    ----------
    log_k : dict of (str, int) to float
        Per probed species: log10 central depth per unit gf at excitation 0 (molecules at
        :attr:`molecule_wavelength`, the Fe references at the middle of the range). ``inf``
        for a species saturated at every probe.
    theta_atom, theta_molecule : float
        Excitation slopes (``5040 / T``) of atomic and molecular lines, measured between
        excitation 0 and 4 eV (Fe I) or 0 and 2 eV (CN).
    theta_atom_high, theta_molecule_high : float
        The slopes above those (between 4 and 8 eV, 2 and 4 eV), never steeper than the low
        ones: lines of high excitation form in deeper, hotter layers.
    wavelength_knots, log_c : numpy.ndarray
        The wavelength dependence of the line-to-continuum ratio, ``log c`` at the knots
        (0 at the middle one).
    atom_offset : dict of int to float
        Per ionization stage (1 = neutral): the constant that turns the atomic line-strength
        index (:func:`~specutils_cinn.synthesis.line_strength.line_strength_index`, at the
        measured excitation temperature, without its ``log lambda`` term) into log10 central
        depth at the middle of the range; measured on Fe I (neutrals) and Fe II (ions).
    teff : float
        The star's effective temperature.
    """

    log_k: dict[tuple[str, int], float]
    theta_atom: float
    theta_molecule: float
    wavelength_knots: np.ndarray
    log_c: np.ndarray
    atom_offset: dict[int, float] = field(default_factory=dict)
    teff: float = 5772.0
    theta_atom_high: float = np.nan
    theta_molecule_high: float = np.nan

    def excitation(self, chi: np.ndarray, molecule: bool) -> np.ndarray:
        """The Boltzmann term ``theta * chi``, piecewise: the measured low slope up to the
        middle probe's excitation, the (never steeper) high slope above it."""
        lo, hi, knee = ((self.theta_molecule, self.theta_molecule_high, _CHI_MOLECULE)
                        if molecule else (self.theta_atom, self.theta_atom_high, _CHI_ATOM))
        hi = lo if not np.isfinite(hi) else hi
        chi = np.asarray(chi, dtype=np.float64)
        return lo * np.minimum(chi, knee) + hi * np.maximum(chi - knee, 0.0)


@dataclass(frozen=True)
class LinePruning:
    """Per-star line-list pruning settings (see the module docstring).

    Parameters
    ----------
    min_depth : float
        Lines whose predicted central depth (before any broadening) is below this are left out.
    """

    min_depth: float = 1.0e-4

    def __post_init__(self) -> None:
        if not (np.isfinite(self.min_depth) and 0 < self.min_depth < 0.1):
            raise ValueError(f"min_depth must be in (0, 0.1), got {self.min_depth!r}")

    def to_dict(self) -> dict:
        """JSON-serializable description (recorded in grid provenance)."""
        return {"min_depth": self.min_depth, "probe_loggf": list(PROBE_LOGGF),
                "method": "probe run v2 (molecules; Fe I/Fe II calibrate the atomic index; "
                          "piecewise excitation)"}

    # -- the probe run -------------------------------------------------------------------
    def probe_plan(self, species: Sequence[tuple[str, int, bool]], span: tuple[float, float]
                   ) -> tuple[list[tuple[float, float, float]], str, list[tuple]]:
        """The probe windows, the probe list text and what each probe measures.

        Parameters
        ----------
        species : sequence of (code, ion, is_molecule)
            Species in the lists (the raw quoted code, as in the lists).
        span : (float, float)
            Wavelength range synthesized (air A).

        Returns
        -------
        windows : list of (start, stop, step)
        text : str
            The probe line list (Turbospectrum format).
        probes : list of (wavelength, key, chi, loggf, role)
            ``role`` is ``"k"`` (strength at excitation 0), ``"theta"`` (at the excitation
            ``chi``) or ``"lambda"`` (Fe I near an end of the range).
        """
        lo, hi = float(span[0]), float(span[1])
        mid = 0.5 * (lo + hi)
        levels = PROBE_LOGGF
        fe1 = next((s for s in species if (s[0].strip(), s[1]) == _FE1), None)
        fe2 = next((s for s in species if (s[0].strip(), s[1]) == _FE2), None)
        cn = next((s for s in species if s[0].strip() == _CN), None)
        # Molecular probes have no Lorentz wings (Turbospectrum gives molecules radiative
        # damping only, and the probes gamma_rad = 1/s), so they sit 0.5 A apart. Atomic probes
        # saturate with Stark/van der Waals wings, so the few Fe references sit 2 A apart.
        molecules = [(c, i, True, 0.0, g, "k") for c, i, m in species if m for g in levels]
        if cn is not None:
            molecules += [(cn[0], cn[1], True, _CHI_MOLECULE, g, "theta") for g in levels]
            molecules += [(cn[0], cn[1], True, 2 * _CHI_MOLECULE, g, "theta_high")
                          for g in levels]
        # strong molecular probes in a window of their own: they measure the species too weak
        # for the levels above (TiO in the Sun, anything in a hot metal-poor star)
        strong = [(c, i, True, 0.0, g, "k") for c, i, m in species if m
                  for g in MOLECULE_STRONG_LOGGF]
        atoms = []
        fe_levels = FE_PROBE_LOGGF
        if fe1 is not None:
            atoms += [(fe1[0], fe1[1], False, 0.0, g, "k") for g in fe_levels]
            atoms += [(fe1[0], fe1[1], False, _CHI_ATOM, g, "theta") for g in fe_levels]
            atoms += [(fe1[0], fe1[1], False, 2 * _CHI_ATOM, g, "theta_high")
                      for g in fe_levels]
        if fe2 is not None:
            atoms += [(fe2[0], fe2[1], False, _CHI_ION, g, "theta") for g in fe_levels]
        groups = [(molecules, PROBE_SPACING), (strong, PROBE_SPACING),
                  (atoms, _ATOM_SPACING)]
        total = sum(sp * (len(items) + 1) + _GROUP_GAP for items, sp in groups if items)
        start = round((mid - 0.5 * total) / PROBE_STEP) * PROBE_STEP
        placed = []
        for items, sp in groups:
            if items:
                placed.append((start, items, sp))
                start += sp * (len(items) + 1) + _GROUP_GAP
        ends = ([(fe1[0], fe1[1], False, 0.0, g, "lambda") for g in FE_PROBE_LOGGF[:3]]
                if fe1 is not None else [])
        if ends and hi - lo > total + 40.0:
            width = _ATOM_SPACING * (len(ends) + 1)
            placed += [(round((lo + 2.0) / PROBE_STEP) * PROBE_STEP, ends, _ATOM_SPACING),
                       (round((hi - 2.0 - width) / PROBE_STEP) * PROBE_STEP, ends,
                        _ATOM_SPACING)]
        windows, probes = [], []
        blocks: dict[tuple[str, int], list[str]] = {}
        for start, items, sp in placed:
            for j, (code, ion, mol, chi, g, role) in enumerate(items):
                wl = start + sp * (j + 1)
                probes.append((wl, (code.strip(), ion), chi, g, role))
                # Almost no damping: log gamma6 = -12 for atoms, gamma_rad = 1/s; only the
                # Doppler core is read, on the linear part of the curve of growth.
                fdamp = 0.0 if mol else -12.0
                blocks.setdefault((code, ion), []).append(
                    f"{wl:10.3f} {chi:6.3f} {g:7.3f} {fdamp:8.3f}    1.0  1.000E+00 'X' 'X'")
            # one extra step past the last probe: bsyn's first and last points are not read
            windows.append((start - sp, start + sp * (len(items) + 2), PROBE_STEP))
        text = []
        for (code, ion), recs in blocks.items():
            recs.sort(key=lambda r: float(r.split()[0]))
            text += [f"'{code}' {ion:4d} {len(recs):9d}", f"'{code.strip()} probe'", *recs]
        return windows, "\n".join(text) + "\n", probes

    def strengths(self, probes: Sequence[tuple], wavelength: np.ndarray, flux: np.ndarray,
                  labels: dict, atoms: IrwinAtoms | None,
                  abundances: dict[int, float] | None) -> SpeciesStrength:
        """Turn a probe run's spectrum into :class:`SpeciesStrength`.

        Parameters
        ----------
        probes : sequence
            As returned by :meth:`probe_plan`.
        wavelength, flux : numpy.ndarray
            The probe run's normalized spectrum (all windows concatenated).
        labels : dict
            The star's labels (``teff``, ``logg``, ``fe_h``, abundances).
        atoms : IrwinAtoms or None
            Partition functions for the atomic index (None: atoms are not pruned).
        abundances : dict of int to float or None
            log eps of every element in the star, by atomic number
            (`~specutils_cinn.synthesis.turbospectrum.element_abundances`).

        Returns
        -------
        SpeciesStrength
        """
        teff = float(labels["teff"])
        order = np.argsort(wavelength)
        wl, fl = np.asarray(wavelength)[order], np.asarray(flux)[order]
        by: dict[tuple, list[tuple[float, float]]] = {}
        where: dict[tuple, float] = {}
        for w, key, chi, g, role in probes:
            depth = float(1.0 - np.interp(w, wl, fl))
            group = (role, key, chi, round(w, -1) if role == "lambda" else 0)
            by.setdefault(group, []).append((g, depth))
            where.setdefault(group, w)
        k = {key[1]: _log_k(v) for key, v in by.items() if key[0] == "k"}
        theta, theta_high = {}, {}
        for (role, key, chi, _), pairs in by.items():
            if role == "theta" and key != _FE2:
                t = (k.get(key, np.nan) - _log_k(pairs)) / chi
                theta[key] = t if np.isfinite(t) and 0.2 < t < 3.0 else np.nan
        for (role, key, chi, _), pairs in by.items():
            if role == "theta_high":
                low = by.get(("theta", key, chi / 2, 0))
                t = (_log_k(low) - _log_k(pairs)) / (chi / 2) if low else np.nan
                theta_high[key] = t if np.isfinite(t) and 0.2 < t < 3.0 else np.nan
        # Fallbacks lean towards keeping lines: a hot layer (small theta) for the excitation.
        th_atom = theta.get(_FE1, np.nan)
        th_atom = th_atom if np.isfinite(th_atom) else 5040.0 / teff
        th_mol = theta.get((_CN, 1), np.nan)
        th_mol = th_mol if np.isfinite(th_mol) else 5040.0 / teff
        # Lines of high excitation form deeper, in hotter layers: their slope is measured
        # between the middle and the highest probe, and never taken steeper than the low one.
        th_atom_high = min(theta_high.get(_FE1, np.nan), th_atom, 5040.0 / teff)
        th_atom_high = th_atom_high if np.isfinite(th_atom_high) else min(th_atom, 5040.0 / teff)
        th_mol_high = min(theta_high.get((_CN, 1), np.nan), th_mol)
        th_mol_high = th_mol_high if np.isfinite(th_mol_high) else min(th_mol, 5040.0 / teff)
        mid_w = where.get(("k", _FE1, 0.0, 0), 0.5 * (wl[0] + wl[-1]))
        mid_k = k.get(_FE1, np.nan)
        pts = sorted((where[g], _log_k(v) - mid_k) for g, v in by.items()
                     if g[0] == "lambda" and np.isfinite(mid_k) and np.isfinite(_log_k(v)))
        pts.append((mid_w, 0.0))
        pts.sort()
        knots = np.array([p[0] for p in pts])
        logc = np.array([p[1] for p in pts])
        offset: dict[int, float] = {}
        if atoms is not None and abundances is not None:
            abund = abundances
            ref = np.zeros(2, TS_DTYPE)
            ref["element"], ref["ion"], ref["wavelength"] = 26, (1, 2), mid_w
            ref["chi"] = (0.0, _CHI_ION)
            s_ref = line_strength_index(ref, teff=teff, logg=float(labels["logg"]),
                                        m_h=float(labels["fe_h"]), abundances=abund,
                                        atoms=atoms, temperature_factor=5040.0 / th_atom / teff)
            s_ref -= np.log10(mid_w)
            fe2 = by.get(("theta", _FE2, _CHI_ION, 0))
            for stage, measured in ((1, mid_k), (2, _log_k(fe2) if fe2 else np.nan)):
                offset[stage] = float(measured - s_ref[stage - 1])
            if not np.isfinite(offset[2]):
                offset[2] = offset[1]
        return SpeciesStrength(log_k=k, theta_atom=float(th_atom), theta_molecule=float(th_mol),
                               wavelength_knots=knots, log_c=logc, atom_offset=offset,
                               teff=teff, theta_atom_high=float(th_atom_high),
                               theta_molecule_high=float(th_mol_high))

    def _log_depth(self, ll: IndexedLineList, strength: SpeciesStrength, labels: dict,
                   atoms: IrwinAtoms | None, abundances: dict[int, float] | None
                   ) -> np.ndarray:
        """Predicted log10 central depth of every line of one list."""
        out = np.full(len(ll), np.inf)
        c = np.interp(ll.wavelength, strength.wavelength_knots, strength.log_c)
        mol_blocks = np.array([b.is_molecule for b in ll.blocks])
        mol = mol_blocks[ll.block_index]
        if mol.any():
            k = np.array([strength.log_k.get(b.key, np.inf) for b in ll.blocks])
            sel = mol
            out[sel] = (k[ll.block_index[sel]] + ll.loggf[sel]
                        - strength.excitation(ll.chi[sel], molecule=True) + c[sel])
        if (~mol).any() and atoms is not None and abundances is not None \
                and strength.atom_offset:
            sel = ~mol
            rec = np.zeros(int(sel.sum()), TS_DTYPE)
            elem = np.array([int(float(b.species.strip().split(".")[0])) for b in ll.blocks])
            ion = np.array([b.ion for b in ll.blocks])
            rec["element"] = elem[ll.block_index[sel]]
            rec["ion"] = ion[ll.block_index[sel]]
            rec["wavelength"], rec["chi"] = ll.wavelength[sel], ll.chi[sel]
            rec["loggf"] = ll.loggf[sel]
            s = line_strength_index(rec, teff=strength.teff, logg=float(labels["logg"]),
                                    m_h=float(labels["fe_h"]),
                                    abundances=abundances, atoms=atoms,
                                    temperature_factor=5040.0 / strength.theta_atom
                                    / strength.teff)
            s -= np.log10(rec["wavelength"])
            # the index has -theta_atom * chi; replace it by the piecewise excitation term
            s += strength.theta_atom * rec["chi"] - strength.excitation(rec["chi"], False)
            off = np.where(rec["ion"] >= 2, strength.atom_offset.get(2, np.nan),
                           strength.atom_offset.get(1, np.nan))
            pred = s + off + c[sel]
            out[sel] = np.where(np.isfinite(pred), pred, np.inf)   # unknown: keep
        return out

    def write_pruned(self, lists: Sequence[str | os.PathLike[str]], strength: SpeciesStrength,
                     windows: Sequence[tuple[float, float, float]], workdir: Path, *,
                     labels: dict, atoms: IrwinAtoms | None = None,
                     abundances: dict[int, float] | None = None,
                     hydrogen: str | os.PathLike[str] | None = None
                     ) -> tuple[list[Path], dict[str, int]]:
        """Write this star's pruned copies of ``lists`` into ``workdir``.

        Parameters
        ----------
        lists : sequence of path-like
            The full line lists.
        strength : SpeciesStrength
            From :meth:`strengths`.
        windows : sequence of (start, stop, step)
            The windows to be synthesized (lines farther than :data:`WINDOW_MARGIN` from all
            windows are left out too; Turbospectrum would ignore them).
        workdir : pathlib.Path
        labels : dict
            The star's labels.
        atoms : IrwinAtoms, optional
            Partition functions for the atomic index (None: atomic lines are only cut to the
            windows).
        abundances : dict of int to float, optional
            log eps of every element in the star, by atomic number.
        hydrogen : path-like, optional
            The hydrogen line list: passed through unchanged.

        Returns
        -------
        paths : list of pathlib.Path
            The lists to give Turbospectrum (empty ones dropped).
        counts : dict
            ``{"lines_in": ..., "lines_kept": ..., "kept_per_list": {name: [kept, near]}}``
            (``near``: lines within reach of the windows).
        """
        out: list[Path] = []
        n_in = n_keep = 0
        per_list: dict[str, list[int]] = {}
        log_min = np.log10(self.min_depth)
        for i, path in enumerate(lists):
            if hydrogen is not None and Path(path).resolve() == Path(hydrogen).resolve():
                out.append(Path(path))
                continue
            ll = indexed_line_list(path)
            n_in += len(ll)
            near = np.zeros(len(ll), bool)
            for start, stop, _ in windows:
                near |= ((ll.wavelength >= start - WINDOW_MARGIN)
                         & (ll.wavelength <= stop + WINDOW_MARGIN))
            keep = near & (self._log_depth(ll, strength, labels, atoms, abundances) >= log_min)
            per_list[Path(path).name] = [int(keep.sum()), int(near.sum())]
            if not keep.any():
                continue
            dest = workdir / f"pruned{i:02d}.list"
            n_keep += ll.write_subset(keep, dest)
            out.append(dest)
        return out, {"lines_in": n_in, "lines_kept": n_keep, "kept_per_list": per_list}


def _log_k(pairs: Sequence[tuple[float, float]]) -> float:
    """log10 depth per unit gf from probes (log gf, depth) of one species and excitation."""
    ok = [(g, d) for g, d in pairs if _LINEAR[0] <= d <= _LINEAR[1]]
    if ok:
        g, d = max(ok, key=lambda p: p[1])
        return float(np.log10(d) - g)
    if all(d < _LINEAR[0] for _, d in pairs):
        return float(np.log10(_LINEAR[0]) - max(g for g, _ in pairs))
    if all(d > _LINEAR[1] for _, d in pairs):
        return np.inf
    # strong probes saturated, weak ones below the floor: the floor bound of the strongest
    # unsaturated one, an overestimate
    return float(np.log10(_LINEAR[0]) - max(g for g, d in pairs if d <= _LINEAR[1]))


_ATOMS: dict[str, IrwinAtoms] = {}


def irwin_atoms(install) -> IrwinAtoms | None:
    """Turbospectrum's atomic partition functions for an install (read once per process)."""
    path = Path(install.data_dir) / "IRWIN_atoms_v07.3.dat"
    if not path.is_file():
        return None
    key = str(path)
    if key not in _ATOMS:
        _ATOMS[key] = IrwinAtoms(path)
    return _ATOMS[key]


def species_in(lists: Sequence[str | os.PathLike[str]],
               hydrogen: str | os.PathLike[str] | None = None) -> list[tuple[str, int, bool]]:
    """Distinct (raw species code, ion, is_molecule) of the lists, hydrogen excluded."""
    seen: dict[tuple[str, int], tuple[str, int, bool]] = {}
    for path in lists:
        if hydrogen is not None and Path(path).resolve() == Path(hydrogen).resolve():
            continue
        for b in indexed_line_list(path).blocks:
            seen.setdefault(b.key, (b.species, b.ion, b.is_molecule))
    return list(seen.values())
