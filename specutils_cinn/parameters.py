"""Names, units and conventions of the stellar parameters: the one home of the label
conventions.

The parameters a model predicts (`DEFAULT_PARAMETERS` for the emulator-trained models) and the
labels a spectrum emulator takes (`EMULATOR_LABELS`) differ in one respect: models predict
[Li/Fe] (``li_fe``), emulators take the absolute A(Li) (``a_li``), related through the solar
scale of the synthesis grids, ``a_li = li_fe + SOLAR_A_LI + fe_h`` (`a_li_from_li_fe`,
`li_fe_from_a_li`). `emulator_label_values` turns a model's parameters into an emulator's
labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy import units as u

__all__ = [
    "DEFAULT_PARAMETERS",
    "EMULATOR_LABELS",
    "PARAMETER_DESCRIPTIONS",
    "PARAMETER_UNITS",
    "PHYSICAL_MINIMUM",
    "SOLAR_A_LI",
    "a_li_from_li_fe",
    "emulator_label_values",
    "li_fe_from_a_li",
    "parameter_unit",
    "parameter_values",
]

#: Solar lithium abundance A(Li) of the synthesis grids' solar scale, Turbospectrum's default
#: (Grevesse, Asplund & Sauval 2007): ``li_fe = a_li - SOLAR_A_LI - fe_h``.
SOLAR_A_LI: float = 1.05

#: Parameters of the emulator-trained models, in network order.
DEFAULT_PARAMETERS: tuple[str, ...] = (
    "teff", "logg", "fe_h", "vmic", "vsini", "mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe", "li_fe",
)

#: Default emulator input labels (A(Li) absolute).
EMULATOR_LABELS: tuple[str, ...] = (
    "teff", "logg", "fe_h", "vmic", "mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe", "a_li",
)

#: Unit of each known parameter. Abundance ratios ``<x>_fe`` are in dex.
PARAMETER_UNITS: dict[str, u.UnitBase] = {
    "teff": u.K,
    "logg": u.dex(u.cm / u.s**2),
    "fe_h": u.dex,
    "vmic": u.km / u.s,
    "vsini": u.km / u.s,
    "vmacro": u.km / u.s,
    "a_li": u.dex,
}

#: Human-readable description of each known parameter.
PARAMETER_DESCRIPTIONS: dict[str, str] = {
    "teff": "effective temperature",
    "logg": "surface gravity, log10(g / (cm s-2))",
    "fe_h": "iron abundance [Fe/H]",
    "vmic": "microturbulence",
    "vsini": "projected rotational velocity",
    "vmacro": "radial-tangential macroturbulence zeta (as in instruments.degrade)",
    "a_li": "absolute lithium abundance A(Li)",
}


#: Lower end of the physical support of parameters that cannot be negative (in their unit).
#: Posterior draws below it are set to it (`~specutils_cinn.CINNParameterEstimator` does this
#: after the posterior calibration), so quantiles never fall below it: a star rotating too
#: slowly to measure gets v sin i draws piled up at 0, not negative ones.
PHYSICAL_MINIMUM: dict[str, float] = {"vsini": 0.0, "vmic": 0.0, "vmacro": 0.0}


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


def _values(x: Any) -> Any:
    """Torch tensors as they are, anything else as a numpy array (or numpy scalar)."""
    return x if hasattr(x, "__torch_function__") else np.asarray(x)


def a_li_from_li_fe(li_fe: Any, fe_h: Any) -> Any:
    """Absolute A(Li) from [Li/Fe] and [Fe/H]: ``li_fe + SOLAR_A_LI + fe_h``.

    The inverse of `li_fe_from_a_li`.

    Parameters
    ----------
    li_fe, fe_h : float, array-like or `torch.Tensor`
        [Li/Fe] and [Fe/H] in dex.

    Returns
    -------
    numpy.ndarray, numpy scalar or `torch.Tensor`
        A(Li) in dex; a tensor for tensor input, numpy otherwise.

    Examples
    --------
    >>> from specutils_cinn.parameters import a_li_from_li_fe
    >>> float(a_li_from_li_fe(0.5, -1.0))
    0.55
    """
    return _values(li_fe) + SOLAR_A_LI + _values(fe_h)


def li_fe_from_a_li(a_li: Any, fe_h: Any) -> Any:
    """[Li/Fe] from absolute A(Li) and [Fe/H]: ``a_li - SOLAR_A_LI - fe_h``.

    The inverse of `a_li_from_li_fe`.

    Parameters
    ----------
    a_li, fe_h : float, array-like or `torch.Tensor`
        A(Li) and [Fe/H] in dex.

    Returns
    -------
    numpy.ndarray, numpy scalar or `torch.Tensor`
        [Li/Fe] in dex; a tensor for tensor input, numpy otherwise.
    """
    return _values(a_li) - SOLAR_A_LI - _values(fe_h)


def emulator_label_values(
    label_names: Sequence[str],
    values: Mapping[str, Any],
    defaults: Mapping[str, float] | None = None,
) -> list[Any]:
    """The value of each emulator label, from a model's parameters or their defaults.

    A label takes its value from ``values``, else from ``defaults``. An ``a_li`` found in
    neither is derived with `a_li_from_li_fe` from [Fe/H] in ``values`` and [Li/Fe]: the
    model's own ``li_fe`` when ``values`` has it, else the default ``li_fe`` of ``defaults``
    (as a model's `~specutils_cinn.model.EmulatorSpec` may give for a model that does not
    predict it).

    Parameters
    ----------
    label_names : sequence of str
        The emulator's labels, in order (e.g. `EMULATOR_LABELS`).
    values : mapping of str to float, array or `torch.Tensor`
        Values of the model's parameters (e.g. one column per parameter).
    defaults : mapping of str to float, optional
        Values of labels the model does not predict.

    Returns
    -------
    list
        One value per label, in the order of ``label_names``: the objects of ``values`` and
        ``defaults`` themselves, and for a derived ``a_li`` the result of `a_li_from_li_fe`.

    Raises
    ------
    KeyError
        If a label has neither a value nor a default and cannot be derived.
    """
    defaults = {} if defaults is None else defaults
    out = []
    for name in label_names:
        if name in values:
            out.append(values[name])
        elif name in defaults:
            out.append(defaults[name])
        elif name == "a_li" and "fe_h" in values and ("li_fe" in values or "li_fe" in defaults):
            li_fe = values["li_fe"] if "li_fe" in values else defaults["li_fe"]
            out.append(a_li_from_li_fe(li_fe, values["fe_h"]))
        else:
            raise KeyError(f"no value for the emulator label {name!r}")
    return out


def parameter_values(
    values: Any, names: Sequence[str], units: Sequence[u.UnitBase]
) -> np.ndarray:
    """One number per parameter, in the given units, from a table row, mapping or sequence.

    Parameters
    ----------
    values : `~astropy.table.Row`, mapping or array-like
        A row of a results table (posterior medians; the masked values of unconstrained
        parameters are used as they are), a mapping from parameter name to value (a
        `~astropy.units.Quantity`, or a number in the parameter's unit), or one number per
        parameter in the order of ``names``.
    names : sequence of str
        The parameters, in order.
    units : sequence of `~astropy.units.UnitBase`
        The unit of each parameter; quantities are converted to it.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(len(names),)``.

    Raises
    ------
    ValueError
        If a parameter has no value, a sequence has the wrong length, or a value is not
        finite.
    """
    if hasattr(values, "colnames") or isinstance(values, dict) or hasattr(values, "keys"):
        out = []
        for name, unit in zip(names, units, strict=True):
            try:
                v = values[name]
            except KeyError as exc:
                raise ValueError(f"no value for parameter {name!r}") from exc
            v = getattr(v, "unmasked", v)  # unconstrained parameters: the value underneath
            if isinstance(v, u.Quantity):
                v = v.to_value(unit)
            out.append(float(np.asarray(v)))
        arr = np.array(out)
    else:
        arr = np.asarray(values, dtype=float).reshape(-1)
        if arr.size != len(names):
            raise ValueError(
                f"expected {len(names)} parameter values ({list(names)}), got {arr.size}"
            )
    if not np.all(np.isfinite(arr)):
        bad = [n for n, v in zip(names, arr, strict=True) if not np.isfinite(v)]
        raise ValueError(f"parameter values must be finite; not finite: {bad}")
    return arr
