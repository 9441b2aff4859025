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
    "DWARF_LOGG",
    "FEH_BINS",
    "PARAMETER_LABELS",
    "QUANTILES",
    "SUN",
    "TARGETS",
    "TARGET_SNR",
    "flag_fractions",
    "flag_names",
    "format_value",
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


def population_masks(logg: np.ndarray, fe_h: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the populations reported separately (true labels).

    Parameters
    ----------
    logg, fe_h : numpy.ndarray
        True surface gravity and metallicity of each spectrum.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{"all", "dwarfs (log g >= 3.5)", "giants (log g < 3.5)", "[Fe/H] < -1.5",
        "-1.5 <= [Fe/H] < -0.5", "[Fe/H] >= -0.5"}``.
    """
    lo, hi = FEH_BINS
    logg, fe_h = np.asarray(logg, dtype=float), np.asarray(fe_h, dtype=float)
    return {
        "all": np.ones(logg.shape, dtype=bool),
        f"dwarfs (log g >= {DWARF_LOGG})": logg >= DWARF_LOGG,
        f"giants (log g < {DWARF_LOGG})": logg < DWARF_LOGG,
        f"[Fe/H] < {lo}": fe_h < lo,
        f"{lo} <= [Fe/H] < {hi}": (fe_h >= lo) & (fe_h < hi),
        f"[Fe/H] >= {hi}": fe_h >= hi,
    }


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
