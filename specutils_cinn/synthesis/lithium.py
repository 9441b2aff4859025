r"""3D NLTE lithium line profiles from breidablik, to replace Turbospectrum's 1D LTE Li lines.

`breidablik <https://github.com/ellawang44/Breidablik>`_ (Wang et al. 2021, MNRAS 500, 2159;
MIT license; optional dependency, extra ``[synthesis]``) interpolates 3D NLTE Li line profiles
computed with Balder on Stagger model atmospheres. It ships radial-basis-function weights for
three windows, around Li I 6103.6, 6707.8 and 8126.3 A (air). Its output is the flux normalized
to the continuum, with only the Li lines in it (no blends, rotation or instrumental broadening).

Recipe for one star (what :func:`synthesize_with_lithium` does):

1. Synthesize with Turbospectrum using :func:`li_free_labels` (A(Li) = :data:`LI_FREE_A_LI`,
   i.e. no Li lines) when the star lies inside :func:`breidablik_coverage`; with the labels
   unchanged otherwise.
2. :func:`apply_3d_nlte_lithium` multiplies each window's continuum-normalized flux by
   :func:`lithium_profile` (1 outside breidablik's windows) and records the Li physics used.
3. Broaden (rotation, line-spread function) and resample afterwards, as for any synthesis.

Wavelengths
    breidablik works in **vacuum nanometers** (``Balder/wavelengths.dat``); Turbospectrum and
    this package in air Angstrom. The conversion uses ``specutils.utils.wcs_utils.vac_to_air``
    with its default refraction index, Morton (2000, ApJS 130, 403, eq. 8), as VALD does
    (the shift is 1.85 A at 6708 A). The profile minimum of the Sun's resonance line comes
    out at 6707.77 A (air). The profile is interpolated linearly from breidablik's native,
    non-uniform sampling (0.01 A in the line cores, up to 1.6 A in the far wings; it is not
    rebinned), and clipped to at most 1.

Coverage
    breidablik's own range check only warns, and not for every point outside its grid (it
    accepts [Fe/H] = -4.5, for instance). :func:`breidablik_coverage` applies hard limits
    taken from the grid nodes breidablik actually interpolates (its RBF nodes ``X.npy``:
    167 Stagger atmospheres x 10 A(Li) values):

    - A(Li) in [-0.5, 4.0] (the Balder abundances; breidablik extrapolates outside);
    - [Fe/H] in [-4, +0.5]; the Stagger models sit at [Fe/H] = -4, -3, -2, -1, 0 and +0.5;
    - at each [Fe/H] node that brackets the star (one node when [Fe/H] is a node, two
      otherwise), log g must lie within the node's log g rows (1.5-5.0 in steps of 0.5; 2.0-5.0
      at +0.5), and Teff between the coolest and the hottest model of the two neighboring
      log g rows, interpolated linearly in log g.

    So Teff stays within the span of actual Stagger models at both neighboring log g rows and
    both neighboring metallicities: giants (log g <= 2.5) end at about 5000-5500 K, Teff above
    6500 K exists only for log g 4.0-4.5. Outside the coverage the 1D LTE Li lines are kept and
    :func:`apply_3d_nlte_lithium` says so.

Caveats
    - The product F(no Li) x P assumes the Li opacity acts multiplicatively on the blends
      (Fe I 6707.43, CN); an exact treatment needs the blends in 3D NLTE too.
    - The 3D profiles do not depend on microturbulence (there is none in 3D); vmic still
      drives all other lines.
    - breidablik models 7Li; Turbospectrum's 1D LTE spectra include 6Li at its default
      isotopic fraction (7.5 %), unless the isotopes are set otherwise.
    - A(Li) = :data:`LI_FREE_A_LI` also removes the Li lines breidablik does not provide
      (e.g. Li I 4602.9 A, and weak high-excitation lines); in Li-rich giants 4602.9 is
      not negligible.
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .design import SOLAR_A_LI

__all__ = [
    "A_LI_RANGE",
    "BREIDABLIK_MIN_VERSION",
    "FE_H_RANGE",
    "LI_FREE_A_LI",
    "apply_3d_nlte_lithium",
    "breidablik_coverage",
    "li_free_labels",
    "lithium_abundance",
    "lithium_profile",
    "lithium_windows",
    "synthesize_with_lithium",
]

#: Oldest breidablik release this module is written and tested against.
BREIDABLIK_MIN_VERSION = "1.5.1"

#: A(Li) range of the Balder grid inside which breidablik's profiles are used.
A_LI_RANGE = (-0.5, 4.0)

#: [Fe/H] range of the Stagger models breidablik interpolates.
FE_H_RANGE = (-4.0, 0.5)

#: A(Li) given to Turbospectrum for a synthesis without Li lines (10^-5 of the solar
#: meteoritic Li/H: the lines are below 1e-5 in normalized flux even for Li-rich cool giants).
LI_FREE_A_LI = -5.0

_INSTALL_HINT = (
    "3D NLTE lithium needs the optional dependency breidablik (>= "
    f"{BREIDABLIK_MIN_VERSION}): pip install 'specutils-cinn[synthesis]' "
    "(or pip install breidablik)"
)
_PHYSICS_3D = "1D LTE, 3D NLTE Li"
_PHYSICS_1D = "1D LTE"
_LI_1D_OUTSIDE = "1D LTE (outside breidablik range)"
_REQUIRED = ("teff", "logg", "fe_h")
# breidablik windows are separated by more than 50 nm; points within one are < 0.5 nm apart.
_WINDOW_GAP_NM = 1.0
# Teff offset (K) used when a star falls exactly on an RBF node (see _predict_flux).
_NODE_NUDGE_K = 1e-3
# Rounding tolerance of the coverage limits (K, dex): 0.5000000000000002 is still +0.5.
_TOL = 1e-6


class _NumpyWithTrapz:
    """numpy as seen by ``breidablik.analysis.tools``: all of numpy, plus ``trapz``.

    ``tools.rew`` calls ``np.trapz``, which numpy 2.4 removed (``np.trapezoid`` is the same
    function). Rather than patch numpy for the whole process, only that breidablik module's
    ``np`` name is pointed at this proxy.
    """

    trapz = staticmethod(np.trapezoid)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _import_breidablik():
    """Import breidablik's ``Spectra`` module, with the ``np.trapz`` shim where needed.

    Returns
    -------
    module
        ``breidablik.interpolate.spectra``.

    Raises
    ------
    ImportError
        If breidablik is not installed, with the extra to install.
    """
    try:
        importlib.import_module("breidablik")
        spectra = importlib.import_module("breidablik.interpolate.spectra")
        tools = importlib.import_module("breidablik.analysis.tools")
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    # Shim, not a fork: applied only where numpy lacks trapz (>= 2.4), and only inside
    # breidablik.analysis.tools (its sole user); numpy itself is left untouched.
    if not hasattr(np, "trapz") and not isinstance(tools.np, _NumpyWithTrapz):
        tools.np = _NumpyWithTrapz()
    return spectra


def _breidablik_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("breidablik")
    except PackageNotFoundError:  # pragma: no cover - imported from a source tree
        return "unknown"


@functools.cache
def _spectra():
    """The shared ``breidablik.interpolate.spectra.Spectra`` instance (loads the RBF once)."""
    return _import_breidablik().Spectra()


@functools.cache
def _windows_vacuum_nm() -> tuple[np.ndarray, ...]:
    """breidablik's wavelengths (vacuum nm), split into its three windows."""
    wave = np.asarray(_import_breidablik().read.get_wavelengths(), dtype=float)
    cuts = np.flatnonzero(np.diff(wave) > _WINDOW_GAP_NM) + 1
    return tuple(np.split(wave, cuts))


def _vacuum_nm_to_air_angstrom(wave_nm: np.ndarray) -> np.ndarray:
    import astropy.units as u
    from specutils.utils.wcs_utils import vac_to_air

    return vac_to_air(np.asarray(wave_nm, dtype=float) * u.nm).to_value(u.AA)


@functools.cache
def _windows_air() -> tuple[np.ndarray, ...]:
    return tuple(_vacuum_nm_to_air_angstrom(w) for w in _windows_vacuum_nm())


def lithium_windows() -> list[tuple[float, float]]:
    """Air-wavelength ranges of breidablik's three Li windows.

    Returns
    -------
    list of (float, float)
        ``(start, stop)`` in air Angstrom, around Li I 6103.6, 6707.8 and 8126.3 A.
        :func:`lithium_profile` is 1 outside them.

    Raises
    ------
    ImportError
        If breidablik is not installed.
    """
    return [(float(w[0]), float(w[-1])) for w in _windows_air()]


@functools.cache
def _coverage_table() -> dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per [Fe/H] node: log g rows and the Teff span of the Stagger models in each row."""
    s = _spectra()
    nodes = np.asarray(s.scalar.untransform(s.X), dtype=float)
    atmospheres = np.unique(np.round(nodes[:, :3], 2), axis=0)
    table = {}
    for fe_h in np.unique(atmospheres[:, 2]):
        sub = atmospheres[atmospheres[:, 2] == fe_h]
        rows = np.unique(sub[:, 1])
        tmin = np.array([sub[sub[:, 1] == g, 0].min() for g in rows])
        tmax = np.array([sub[sub[:, 1] == g, 0].max() for g in rows])
        table[float(fe_h)] = (rows, tmin, tmax)
    return table


def _inside_node(teff: np.ndarray, logg: np.ndarray, node: float) -> np.ndarray:
    rows, tmin, tmax = _coverage_table()[node]
    in_rows = (logg >= rows[0] - _TOL) & (logg <= rows[-1] + _TOL)
    lo = np.interp(logg, rows, tmin)
    hi = np.interp(logg, rows, tmax)
    return in_rows & (teff >= lo - _TOL) & (teff <= hi + _TOL)


def breidablik_coverage(teff, logg, fe_h, a_li):
    """Whether stars lie inside the grid breidablik interpolates (our hard limits).

    Parameters
    ----------
    teff, logg, fe_h, a_li : float or array-like
        Effective temperature (K), log g (cgs), [Fe/H] and absolute A(Li); broadcast
        against each other.

    Returns
    -------
    bool or numpy.ndarray of bool
        True where the 3D NLTE profiles are used: A(Li) in :data:`A_LI_RANGE`, [Fe/H] in
        :data:`FE_H_RANGE`, and, at each bracketing [Fe/H] node of the Stagger grid, log g
        inside the node's log g rows and Teff between the coolest and hottest model of the
        neighboring rows (linear in log g); see the module docstring. Non-finite inputs are
        not covered. A plain bool for scalar inputs.

    Raises
    ------
    ImportError
        If breidablik is not installed (the limits are read from its grid files).

    Examples
    --------
    >>> breidablik_coverage(5772, 4.44, 0.0, 1.05)  # doctest: +SKIP
    True
    >>> breidablik_coverage([5772, 6000], [4.44, 2.0], [0.0, 0.0], [1.05, 1.05])  # doctest: +SKIP
    array([ True, False])
    """
    _import_breidablik()
    table = _coverage_table()
    teff, logg, fe_h, a_li = np.broadcast_arrays(*(np.asarray(v, dtype=float)
                                                  for v in (teff, logg, fe_h, a_li)))
    shape = teff.shape
    teff, logg, fe_h, a_li = (v.ravel() for v in (teff, logg, fe_h, a_li))
    finite = np.isfinite(teff) & np.isfinite(logg) & np.isfinite(fe_h) & np.isfinite(a_li)
    ok = (finite & (a_li >= A_LI_RANGE[0] - _TOL) & (a_li <= A_LI_RANGE[1] + _TOL)
          & (fe_h >= FE_H_RANGE[0] - _TOL) & (fe_h <= FE_H_RANGE[1] + _TOL))
    nodes = np.array(sorted(table))
    fe = np.clip(np.where(ok, fe_h, nodes[0]), nodes[0], nodes[-1])
    fe = np.where(np.abs(fe - np.round(fe)) < _TOL, np.round(fe), fe)  # on a node: that one
    # the [Fe/H] nodes at and below / at and above the star (the same node when on one)
    lo = nodes[np.clip(np.searchsorted(nodes, fe, side="right") - 1, 0, nodes.size - 1)]
    hi = nodes[np.clip(np.searchsorted(nodes, fe, side="left"), 0, nodes.size - 1)]
    for node in nodes:
        for bracket in (lo, hi):
            use = ok & (bracket == node)
            if use.any():
                ok[use] = _inside_node(teff[use], logg[use], float(node))
    ok = ok.reshape(shape)
    return bool(ok) if ok.ndim == 0 else ok


def lithium_abundance(labels: Mapping[str, float]) -> float:
    """Absolute A(Li) of a star, as Turbospectrum would use it.

    Parameters
    ----------
    labels : mapping
        ``a_li`` (absolute, wins if finite), else ``li_fe`` ([Li/Fe], default 0) with ``fe_h``:
        A(Li) = :data:`~specutils_cinn.synthesis.design.SOLAR_A_LI` + [Fe/H] + [Li/Fe].

    Returns
    -------
    float
    """
    a_li = labels.get("a_li")
    if a_li is not None and math.isfinite(float(a_li)):
        return float(a_li)
    return SOLAR_A_LI + float(labels["fe_h"]) + float(labels.get("li_fe", 0.0) or 0.0)


def _star(labels: Mapping[str, float]) -> tuple[float, float, float, float]:
    missing = [k for k in _REQUIRED if k not in labels]
    if missing:
        raise KeyError(f"labels lack {missing}")
    return (float(labels["teff"]), float(labels["logg"]), float(labels["fe_h"]),
            lithium_abundance(labels))


def li_free_labels(labels: Mapping[str, float]) -> dict[str, float]:
    """Labels to synthesize with before multiplying by the 3D NLTE Li profile.

    Parameters
    ----------
    labels : mapping
        Star labels (``teff``, ``logg``, ``fe_h``, ``a_li`` or ``li_fe``, others passed on).

    Returns
    -------
    dict
        A copy of the labels. Inside :func:`breidablik_coverage`, ``a_li`` is set to
        :data:`LI_FREE_A_LI` and ``li_fe`` dropped, so that Turbospectrum's Li lines vanish
        (all of them, including those breidablik does not provide). Outside, unchanged: the
        1D LTE Li lines are kept.

    Raises
    ------
    KeyError
        If ``teff``, ``logg`` or ``fe_h`` is missing.
    ImportError
        If breidablik is not installed.
    """
    out = dict(labels)
    if breidablik_coverage(*_star(labels)):
        out.pop("li_fe", None)
        out["a_li"] = LI_FREE_A_LI
    return out


def _predict_flux(teff: float, logg: float, fe_h: float, a_li: float) -> np.ndarray:
    spectra = _spectra()
    with warnings.catch_warnings():
        # Our own hard limits (breidablik_coverage) decide the range; breidablik's lenient
        # distance check would otherwise warn near the edges of the covered region.
        warnings.filterwarnings("ignore", message="Input stellar parameters are outside",
                                category=UserWarning)
        with np.errstate(divide="ignore", invalid="ignore"):
            flux = np.asarray(spectra.predict_flux(teff, logg, fe_h, a_li), dtype=float)
            if not np.all(np.isfinite(flux)):
                # Exactly on an RBF node, breidablik's kernel r^2 log r evaluates 0 * -inf:
                # every point is NaN. A millikelvin away the kernel is continuous.
                flux = np.asarray(spectra.predict_flux(teff + _NODE_NUDGE_K, logg, fe_h, a_li),
                                  dtype=float)
    if not np.all(np.isfinite(flux)):  # pragma: no cover - defensive
        raise RuntimeError(f"breidablik returned non-finite flux for {teff, logg, fe_h, a_li}")
    return flux


@functools.lru_cache(maxsize=64)
def _native_profile(teff: float, logg: float, fe_h: float,
                    a_li: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    flux = _predict_flux(teff, logg, fe_h, a_li)
    out = []
    start = 0
    for wave in _windows_air():
        f = np.minimum(flux[start:start + wave.size], 1.0)
        f.setflags(write=False)
        out.append((wave, f))
        start += wave.size
    return tuple(out)


def lithium_profile(wavelength_air, teff: float, logg: float, fe_h: float,
                    a_li: float) -> np.ndarray:
    """3D NLTE Li line profile of a star, as a factor on the continuum-normalized flux.

    Parameters
    ----------
    wavelength_air : array-like or `~astropy.units.Quantity`
        Air wavelengths (Angstrom if plain numbers), any shape.
    teff, logg, fe_h, a_li : float
        Effective temperature (K), log g (cgs), [Fe/H] and absolute A(Li).

    Returns
    -------
    numpy.ndarray
        Same shape as ``wavelength_air``: breidablik's normalized flux of the Li lines,
        converted from vacuum to air and interpolated linearly from its native sampling;
        exactly 1 outside its three windows (:func:`lithium_windows`), at most 1 inside.

    Raises
    ------
    ValueError
        If the star is outside :func:`breidablik_coverage` (no silent extrapolation).
    ImportError
        If breidablik is not installed.
    """
    import astropy.units as u

    _import_breidablik()
    star = (float(teff), float(logg), float(fe_h), float(a_li))
    if not breidablik_coverage(*star):
        raise ValueError(f"Teff, log g, [Fe/H], A(Li) = {star} is outside breidablik's grid "
                         "(see breidablik_coverage); keep the 1D LTE Li lines there")
    wave = u.Quantity(wavelength_air, u.AA).to_value(u.AA)
    out = np.ones(wave.shape, dtype=float)
    for w, f in _native_profile(*star):
        inside = (wave >= w[0]) & (wave <= w[-1])
        out[inside] = np.interp(wave[inside], w, f)
    return np.minimum(out, 1.0)


def apply_3d_nlte_lithium(wavelengths: Sequence, fluxes: Sequence,
                          labels: Mapping[str, float]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Put 3D NLTE Li lines into a Li-free synthesis (or keep 1D LTE outside the grid).

    Parameters
    ----------
    wavelengths : sequence of array-like
        Air wavelengths (Angstrom) per window, e.g. ``SynthesisResult.wavelength``.
    fluxes : sequence of array-like
        Flux per window, unbroadened, synthesized with ``li_free_labels(labels)``:
        continuum-normalized (or absolute: the profile is relative to the continuum).
    labels : mapping
        The star's labels (``teff``, ``logg``, ``fe_h``, ``a_li`` or ``li_fe``), the same
        that were given to :func:`li_free_labels`.

    Returns
    -------
    fluxes : list of numpy.ndarray
        Inside :func:`breidablik_coverage`: each flux times :func:`lithium_profile`. Outside:
        copies of the input (its 1D LTE Li lines are kept).
    provenance : dict
        ``li_physics`` (``"3D NLTE (breidablik <version>)"`` or
        ``"1D LTE (outside breidablik range)"``), ``physics`` (``"1D LTE, 3D NLTE Li"`` or
        ``"1D LTE"``), ``li_3d_nlte`` (bool) and ``a_li`` (the A(Li) used).

    Raises
    ------
    ValueError
        If ``wavelengths`` and ``fluxes`` do not match.
    ImportError
        If breidablik is not installed.
    """
    if len(wavelengths) != len(fluxes):
        raise ValueError(f"{len(wavelengths)} wavelength arrays but {len(fluxes)} flux arrays")
    teff, logg, fe_h, a_li = _star(labels)
    covered = breidablik_coverage(teff, logg, fe_h, a_li)
    out = []
    for wave, flux in zip(wavelengths, fluxes, strict=True):
        wave, flux = np.asarray(wave, dtype=float), np.asarray(flux, dtype=float)
        if wave.shape != flux.shape:
            raise ValueError(f"wavelength shape {wave.shape} != flux shape {flux.shape}")
        out.append(flux * lithium_profile(wave, teff, logg, fe_h, a_li) if covered
                   else flux.copy())
    if covered:
        provenance = {"li_physics": f"3D NLTE (breidablik {_breidablik_version()})",
                      "physics": _PHYSICS_3D, "li_3d_nlte": True, "a_li": a_li}
    else:
        provenance = {"li_physics": _LI_1D_OUTSIDE, "physics": _PHYSICS_1D,
                      "li_3d_nlte": False, "a_li": a_li}
    return out, provenance


def synthesize_with_lithium(labels: Mapping[str, float], windows, **kwargs):
    """Turbospectrum synthesis with 3D NLTE Li lines where breidablik covers the star.

    Runs :func:`~specutils_cinn.synthesis.turbospectrum.synthesize` with
    :func:`li_free_labels` and applies :func:`apply_3d_nlte_lithium` to the continuum-normalized
    and the absolute flux.

    Parameters
    ----------
    labels : mapping
        Star labels (see :func:`~specutils_cinn.synthesis.turbospectrum.synthesize`).
    windows : sequence of (start, stop, step)
        Wavelength windows in air Angstrom.
    **kwargs
        Passed to :func:`~specutils_cinn.synthesis.turbospectrum.synthesize`.

    Returns
    -------
    result : `~specutils_cinn.synthesis.SynthesisResult`
        With the Li lines replaced; ``labels`` are the input labels, ``abundances`` what
        Turbospectrum was given (Li = :data:`LI_FREE_A_LI` where covered).
    provenance : dict
        As returned by :func:`apply_3d_nlte_lithium`.
    """
    from .turbospectrum import synthesize

    result = synthesize(li_free_labels(labels), windows, **kwargs)
    result.flux, provenance = apply_3d_nlte_lithium(result.wavelength, result.flux, labels)
    result.absolute_flux, _ = apply_3d_nlte_lithium(result.wavelength, result.absolute_flux,
                                                    labels)
    result.labels = dict(labels)
    return result, provenance
