"""The numbers of a model's validation page: populations, flags, resolutions, display.

Pure helpers of ``scripts/validation_report.py`` (which writes the page's RST and figures):
which held-out spectra belong to which population (`population_masks`), how often each
quality flag fires (`flag_fractions`, `flag_names`), the extra line-spread function that takes
a model's resolving power to another one (`quadrature_resolving_power`), which S/N values the
figures show (`pick_snr`), and how parameters and values are displayed (`parameter_label`,
`format_value`). The constants are the page's reference values: the target precisions
(`TARGETS`), the solar reference (`SUN`) and the population bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..flags import QualityFlag

__all__ = [
    "COOL_TEFF",
    "DWARF_LOGG",
    "FEH_BINS",
    "GOALS_COVERAGE_TOLERANCE",
    "GOALS_MIN_FE_H",
    "PARAMETER_LABELS",
    "QUANTILES",
    "SUN",
    "TARGETS",
    "TARGET_SNR",
    "V2_GOALS",
    "flag_fractions",
    "flag_names",
    "format_value",
    "goal_verdict",
    "parameter_label",
    "pick_snr",
    "population_masks",
    "quadrature_resolving_power",
]

#: Display name and unit of each known parameter in tables.
PARAMETER_LABELS = {
    "teff": ("Teff", "K"),
    "logg": ("log g", "dex"),
    "fe_h": ("[Fe/H]", "dex"),
    "vmic": ("vmic", "km/s"),
    "vsini": ("v sin i", "km/s"),
    "vmacro": ("vmacro", "km/s"),
    "a_li": ("A(Li)", "dex"),
}
#: Target precision (S/N 250) quoted in GitHub issue 4 from Ksoll et al. 2026.
TARGETS = {"teff": 33.0, "logg": 0.16, "fe_h": 0.12, "ca_fe": 0.10, "mg_fe": 0.11, "li_fe": 0.51}
#: The S/N per Angstrom of `TARGETS`.
TARGET_SNR = 250.0
#: Solar reference labels.
SUN = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0}
#: Quantiles asked from ``predict``: the 95 % and 68 % central intervals.
QUANTILES = (0.025, 0.16, 0.84, 0.975)
#: Dwarfs have a true log g at least this.
DWARF_LOGG = 3.5
#: Bounds of the three [Fe/H] populations.
FEH_BINS = (-1.5, -0.5)
#: Held-out stars below this Teff (K) form the cool population (the v2 emulators are several
#: times worse there).
COOL_TEFF = 4500.0
#: Precision goals of the v2 models (GitHub issue 12): scatter at `TARGET_SNR` on held-out
#: stars with [Fe/H] above `GOALS_MIN_FE_H`, per 4MOST setup; stars at or below it are
#: reported separately.
V2_GOALS = {
    "hr": {"teff": 25.0, "logg": 0.10, "fe_h": 0.05, "mg_fe": 0.05, "ca_fe": 0.05,
           "mn_fe": 0.08, "ni_fe": 0.08, "li_fe": 0.25},
    "lr": {"teff": 40.0, "logg": 0.12, "fe_h": 0.06, "mg_fe": 0.06, "ca_fe": 0.06},
}
#: The [Fe/H] above which `V2_GOALS` apply.
GOALS_MIN_FE_H = -2.0
#: Coverage goal of GitHub issue 12: each interval's coverage within this of its level.
GOALS_COVERAGE_TOLERANCE = 0.03


def parameter_label(p: str) -> str:
    """Display name of a parameter.

    Parameters
    ----------
    p : str
        Parameter name, e.g. ``"mg_fe"``.

    Returns
    -------
    str
        E.g. ``"[Mg/Fe]"``; unknown names are returned unchanged.
    """
    if p in PARAMETER_LABELS:
        return PARAMETER_LABELS[p][0]
    if p.endswith("_fe"):
        return f"[{p[:-3].capitalize()}/Fe]"
    return p


def format_value(p: str, value: float | None, kind: str = "value") -> str:
    """Format a number of parameter ``p`` for a table.

    Parameters
    ----------
    p : str
        Parameter name: Teff in whole K, velocities with 2 decimals, others with 3.
    value : float or None
        The number; None or a non-finite value gives ``"--"``.
    kind : {"value", "signed", "fraction"}
        ``"signed"`` always shows the sign; ``"fraction"`` two decimals whatever ``p``.

    Returns
    -------
    str
    """
    if value is None or not np.isfinite(value):
        return "--"
    if kind == "fraction":
        return f"{value:.2f}"
    if p == "teff":
        return f"{value:+.0f}" if kind == "signed" else f"{value:.0f}"
    if p in ("vmic", "vsini", "vmacro"):
        return f"{value:+.2f}" if kind == "signed" else f"{value:.2f}"
    return f"{value:+.3f}" if kind == "signed" else f"{value:.3f}"


def goal_verdict(scatter: float, goal: float, coverage_68: float, coverage_95: float) -> str:
    """Whether a parameter meets a `V2_GOALS` goal: scatter, and coverage near nominal.

    Parameters
    ----------
    scatter : float
        Standard deviation of posterior median minus truth.
    goal : float
        The goal for the scatter.
    coverage_68, coverage_95 : float
        Fractions of true values inside the 68 % and 95 % intervals.

    Returns
    -------
    str
        ``"**met**"`` when the scatter is at most ``goal`` and both coverages lie within
        `GOALS_COVERAGE_TOLERANCE` of 0.68 and 0.95; otherwise which part is not met
        (``"scatter met, coverage not"``, ``"coverage met, scatter not"``, ``"**not met**"``).
    """
    ok_scatter = bool(scatter <= goal)
    ok_coverage = bool(abs(coverage_68 - 0.68) <= GOALS_COVERAGE_TOLERANCE + 1e-12
                       and abs(coverage_95 - 0.95) <= GOALS_COVERAGE_TOLERANCE + 1e-12)
    if ok_scatter and ok_coverage:
        return "**met**"
    if ok_scatter:
        return "scatter met, coverage not"
    return "coverage met, scatter not" if ok_coverage else "**not met**"


def population_masks(logg: np.ndarray, fe_h: np.ndarray, teff: np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
    """Boolean masks of the populations reported separately (true labels).

    Parameters
    ----------
    logg, fe_h : numpy.ndarray
        True surface gravity and metallicity of each spectrum.
    teff : numpy.ndarray, optional
        True Teff of each spectrum; adds the cool population (below `COOL_TEFF`).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{"all", "dwarfs (log g >= 3.5)", "giants (log g < 3.5)", "[Fe/H] < -1.5",
        "-1.5 <= [Fe/H] < -0.5", "[Fe/H] >= -0.5"}``, and ``"Teff < 4500"`` with ``teff``.
    """
    lo, hi = FEH_BINS
    logg, fe_h = np.asarray(logg, dtype=float), np.asarray(fe_h, dtype=float)
    masks = {
        "all": np.ones(logg.shape, dtype=bool),
        f"dwarfs (log g >= {DWARF_LOGG})": logg >= DWARF_LOGG,
        f"giants (log g < {DWARF_LOGG})": logg < DWARF_LOGG,
        f"[Fe/H] < {lo}": fe_h < lo,
        f"{lo} <= [Fe/H] < {hi}": (fe_h >= lo) & (fe_h < hi),
        f"[Fe/H] >= {hi}": fe_h >= hi,
    }
    if teff is not None:
        masks[f"Teff < {COOL_TEFF:.0f}"] = np.asarray(teff, dtype=float) < COOL_TEFF
    return masks


def flag_fractions(flags: np.ndarray) -> dict[str, float]:
    """Fraction of rows with each `~specutils_cinn.flags.QualityFlag` set.

    Parameters
    ----------
    flags : numpy.ndarray
        The ``flags`` column of a results table.

    Returns
    -------
    dict of str to float
        One entry per flag name, plus ``"none"`` (no flag at all).
    """
    f = np.asarray(flags, dtype=np.int64)
    n = max(f.size, 1)
    out = {fl.name: float(np.count_nonzero(f & int(fl)) / n) for fl in QualityFlag if int(fl)}
    out["none"] = float(np.count_nonzero(f == 0) / n)
    return out


def flag_names(value: int) -> str:
    """Names of the flags set in one ``flags`` value.

    Parameters
    ----------
    value : int
        A ``flags`` value.

    Returns
    -------
    str
        E.g. ``"PARAMETER_AT_EDGE|LOW_SNR"``, or ``"none"``.
    """
    names = [fl.name for fl in QualityFlag if int(fl) and int(value) & int(fl)]
    return "|".join(names) if names else "none"


def quadrature_resolving_power(
    r_target: float, r_model: float | Callable[[np.ndarray], Any]
) -> Callable[[np.ndarray], np.ndarray]:
    """Resolving power of the extra Gaussian LSF that takes ``r_model`` to ``r_target``.

    Parameters
    ----------
    r_target : float
        The resolving power wanted.
    r_model : float or callable
        The model's resolving power, constant or a function of wavelength.

    Returns
    -------
    callable
        Wavelength (Angstrom) to resolving power; it raises `ValueError` when called where
        ``r_target`` is not below the model's resolving power.
    """

    def r_eff(w: np.ndarray) -> np.ndarray:
        rm = np.broadcast_to(
            np.asarray(r_model(w) if callable(r_model) else r_model, dtype=float), np.shape(w)
        )
        if np.any(rm <= r_target):
            raise ValueError(f"R = {r_target:g} is not below the model's R ({rm.min():g})")
        return 1.0 / np.sqrt(1.0 / r_target**2 - 1.0 / rm**2)

    return r_eff


def pick_snr(snrs: Sequence[float], wanted: Sequence[float]) -> list[float]:
    """The S/N values a figure shows.

    Parameters
    ----------
    snrs : sequence of float
        The S/N values that were run.
    wanted : sequence of float
        The S/N values the figure would like.

    Returns
    -------
    list of float
        Those of ``wanted`` that were run, else the lowest and highest run.
    """
    have = [s for s in wanted if s in snrs]
    if have:
        return have
    return sorted({min(snrs), max(snrs)})
