"""The model-mismatch term of a posterior calibration, fitted on observed spectra.

For observed spectra of a star with known labels (the Sun), the calibrated posterior without a
mismatch term gives a median m, a 68 % half width w and the spectrum's ``fit_mismatch`` A
(the residual RMS against the emulated spectrum that noise and emulator error do not explain).
For each parameter with a reference value r, `fit_mismatch_kappa` keeps the smallest kappa
that puts r inside the 95 % interval of every spectrum,
``|m - r| <= 1.96 sqrt(w**2 + kappa**2 max(A**2 - A0**2, 0))``, times a margin;
`with_mismatch` stores it in a model's `~specutils_cinn.calibration.PosteriorCalibration`
(the weights are not touched) and `without_mismatch` removes it again.

``scripts/calibrate_mismatch.py`` runs this on the HARPS and UVES Sun and writes the tables of
docs/real_stars.rst.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..model import CINNModel

__all__ = [
    "SUN_REFERENCE",
    "Z95",
    "fit_mismatch_kappa",
    "mismatch_tolerance",
    "with_mismatch",
    "without_mismatch",
]

#: Two-sided 95 % quantile of the standard normal distribution.
Z95 = 1.959964
#: Solar reference labels the term is fitted to (vmic and v sin i get no term).
SUN_REFERENCE = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "mg_fe": 0.0, "ca_fe": 0.0,
                 "ti_fe": 0.0, "mn_fe": 0.0, "ni_fe": 0.0, "li_fe": 0.0}


def without_mismatch(model: CINNModel) -> CINNModel:
    """The model without a mismatch term or unconstrained parameters.

    The "before" of every comparison, so that a model that already carries a term gives the
    same numbers as the one it was made from (they share the network).

    Parameters
    ----------
    model : `~specutils_cinn.model.CINNModel`
        A model with a posterior calibration.

    Returns
    -------
    `~specutils_cinn.model.CINNModel`
    """
    md = model.metadata
    cal = md.posterior_calibration
    info = {k: v for k, v in cal.info.items() if k != "mismatch"}
    base = md.replace(posterior_calibration=dataclasses.replace(
        cal, info=info, mismatch={}, mismatch_tolerance=0.0), unconstrained=())
    return CINNModel(base, model.network, emulator=model.emulator)


def with_mismatch(model: CINNModel, kappa: Mapping[str, float], tolerance: float,
                  info: Mapping[str, Any], version: str | None = None) -> CINNModel:
    """A model whose posterior calibration has the mismatch term.

    Parameters the posterior calibration left alone because the spectra do not constrain them
    (``info["not_calibrated"]`` of `~specutils_cinn.calibration.heldout.calibrate_posteriors`)
    are declared ``unconstrained`` (masked by the estimator).

    Parameters
    ----------
    model : `~specutils_cinn.model.CINNModel`
        A model with a posterior calibration.
    kappa : dict of str to float
        The term per parameter (`fit_mismatch_kappa`).
    tolerance : float
        ``fit_mismatch`` below which no spectrum is widened (`mismatch_tolerance`).
    info : dict
        How the term was fitted (stored as ``info["mismatch"]`` of the calibration).
    version : str, optional
        A new version of the model.

    Returns
    -------
    `~specutils_cinn.model.CINNModel`
    """
    md = model.metadata
    cal = md.posterior_calibration
    new = dataclasses.replace(cal, info={**cal.info, "mismatch": dict(info)},
                              mismatch=dict(kappa), mismatch_tolerance=tolerance)
    changes: dict[str, Any] = {"posterior_calibration": new}
    not_cal = cal.info.get("not_calibrated", {}).get("parameters", [])
    changes["unconstrained"] = tuple(p for p in md.parameter_names if p in not_cal)
    if version is not None:
        changes["version"] = version
    return CINNModel(md.replace(**changes), model.network, emulator=model.emulator)


def mismatch_tolerance(amplitudes: np.ndarray, quantile: float = 0.75) -> float:
    """The tolerance A0: a quantile of ``fit_mismatch`` over spectra the physics describes.

    Parameters
    ----------
    amplitudes : numpy.ndarray
        ``fit_mismatch`` of held-out synthetic spectra (NaN ignored).
    quantile : float, optional
        The quantile.

    Returns
    -------
    float
        Rounded to 4 decimals.
    """
    return float(np.round(np.nanquantile(amplitudes, quantile), 4))


def fit_mismatch_kappa(
    quantiles: Mapping[str, np.ndarray],
    amplitude: np.ndarray,
    tolerance: float,
    reference: Mapping[str, float] = SUN_REFERENCE,
    margin: float = 1.25,
) -> dict[str, float]:
    """The smallest kappa per parameter that puts the reference inside every 95 % interval.

    Parameters
    ----------
    quantiles : dict of str to numpy.ndarray
        Per parameter, ``[n, 5]`` posterior quantiles at 2.5, 16, 50, 84 and 97.5 % of each
        spectrum, without a mismatch term.
    amplitude : numpy.ndarray
        ``[n]`` ``fit_mismatch`` of each spectrum.
    tolerance : float
        A0: no widening below it.
    reference : dict of str to float, optional
        Reference value per parameter; parameters without one get no entry.
    margin : float, optional
        Factor applied to the smallest kappa.

    Returns
    -------
    dict of str to float
        Kappa per parameter of ``quantiles`` that has a reference, rounded to 4 decimals.

    Notes
    -----
    The term widens only spectra whose ``fit_mismatch`` exceeds ``tolerance``; a spectrum at
    or below it that misses the reference cannot be reached by any kappa, so it does not
    enter the fit (it stays outside its interval, which the caller's containment check
    shows) instead of driving kappa to an arbitrarily large value.
    """
    a = np.asarray(amplitude, dtype=float)
    excess = np.sqrt(np.clip(a**2 - tolerance**2, 0, None))
    widened = excess > 0
    kappa = {}
    for p, q in quantiles.items():
        if p not in reference:
            continue
        q = np.asarray(q, dtype=float)
        d = np.abs(q[:, 2] - reference[p])
        w = 0.5 * (q[:, 3] - q[:, 1])
        need = np.sqrt(np.clip((d / Z95) ** 2 - w**2, 0, None))[widened] / excess[widened]
        top = np.nanmax(need) if need.size else 0.0
        kappa[p] = float(np.round(margin * (top if np.isfinite(top) else 0.0), 4))
    return kappa
