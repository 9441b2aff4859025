"""Names and units of the stellar parameters that models can predict."""

from __future__ import annotations

from astropy import units as u

__all__ = ["PARAMETER_UNITS", "PARAMETER_DESCRIPTIONS", "PHYSICAL_MINIMUM", "parameter_unit"]

#: Unit of each known parameter. Abundance ratios ``<x>_fe`` are in dex.
PARAMETER_UNITS: dict[str, u.UnitBase] = {
    "teff": u.K,
    "logg": u.dex(u.cm / u.s**2),
    "fe_h": u.dex,
    "vmic": u.km / u.s,
    "vsini": u.km / u.s,
    "vmac": u.km / u.s,
    "a_li": u.dex,
}

#: Human-readable description of each known parameter.
PARAMETER_DESCRIPTIONS: dict[str, str] = {
    "teff": "effective temperature",
    "logg": "surface gravity, log10(g / (cm s-2))",
    "fe_h": "iron abundance [Fe/H]",
    "vmic": "microturbulence",
    "vsini": "projected rotational velocity",
    "vmac": "macroturbulence",
    "a_li": "absolute lithium abundance A(Li)",
}


#: Lower end of the physical support of parameters that cannot be negative (in their unit).
#: Posterior draws below it are set to it (`~specutils_cinn.CINNParameterEstimator` does this
#: after the posterior calibration), so quantiles never fall below it: a star rotating too
#: slowly to measure gets v sin i draws piled up at 0, not negative ones.
PHYSICAL_MINIMUM: dict[str, float] = {"vsini": 0.0, "vmic": 0.0, "vmac": 0.0}


def parameter_unit(name: str) -> u.UnitBase:
    """Return the unit of parameter ``name``.

    Abundance ratios named ``<element>_fe`` (e.g. ``mg_fe``) are in dex.

    Raises
    ------
    KeyError
        If the name is neither known nor an abundance ratio.
    """
    if name in PARAMETER_UNITS:
        return PARAMETER_UNITS[name]
    if name.endswith("_fe") and name[:-3].isalpha():
        return u.dex
    raise KeyError(f"unknown parameter {name!r}; known: {sorted(PARAMETER_UNITS)} or '<x>_fe'")
