"""The model-mismatch term of a posterior calibration, fitted on observed spectra.

For observed spectra of a star with known labels (the Sun), the calibrated posterior without a
mismatch term gives a median m, a 68 % half width w and the spectrum's ``fit_mismatch`` A
(the residual RMS against the emulated spectrum that noise and emulator error do not explain)
and its ``coverage`` c (the fraction of the model's pixels it covers). For each parameter with
a reference value r, `fit_mismatch_kappa` keeps the smallest kappa that puts r inside the
95 % interval of every spectrum,
``|m - r| <= 1.96 sqrt(w**2 + kappa**2 max(A**2 - A0**2, 0) / c**(2 gamma))``, times a
margin. The coverage power gamma (`fit_mismatch_coverage_power`) is the one, of a grid from 0,
that makes the widened intervals of all the spectra narrowest on average (in log width): with
gamma = 0 a spectrum that lacks an arm (the UVES Sun reaches no HB) and misses by more with
less residual sets kappa for every full spectrum too. The estimator clips each spectrum's
coverage to the range of the spectra the term was fitted on (`fitted_coverage_range`), so the
power is not extrapolated. `with_mismatch` stores the term in a
model's `~specutils_cinn.calibration.PosteriorCalibration` (the weights are not touched) and
`without_mismatch` removes it again.

``scripts/calibrate_mismatch.py`` runs this on the HARPS and UVES Sun and writes the tables of
docs/real_stars.rst.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..model import CINNModel
from .posterior import MISMATCH_MIN_COVERAGE

__all__ = [
    "COVERAGE_POWERS",
    "SUN_REFERENCE",
    "Z95",
    "fit_mismatch_coverage_power",
    "fit_mismatch_kappa",
    "fitted_coverage_range",
    "mismatch_excess",
    "mismatch_tolerance",
    "with_mismatch",
    "without_mismatch",
]

#: Two-sided 95 % quantile of the standard normal distribution.
Z95 = 1.959964
#: Solar reference labels the term is fitted to (vmic and v sin i get no term).
SUN_REFERENCE = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "mg_fe": 0.0, "ca_fe": 0.0,
                 "ti_fe": 0.0, "mn_fe": 0.0, "ni_fe": 0.0, "li_fe": 0.0}
#: The coverage powers gamma `fit_mismatch_coverage_power` chooses from.
COVERAGE_POWERS: tuple[float, ...] = tuple(0.25 * i for i in range(49))


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
        cal, info=info, mismatch={}, mismatch_tolerance=0.0, mismatch_coverage_power={}),
        unconstrained=())
    return CINNModel(base, model.network, emulator=model.emulator)


def with_mismatch(model: CINNModel, kappa: Mapping[str, float], tolerance: float,
                  info: Mapping[str, Any], version: str | None = None,
                  coverage_power: Mapping[str, float] | None = None,
                  coverage_range: tuple[float, float] | None = None) -> CINNModel:
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
    coverage_power : dict of str to float, optional
        The coverage power gamma per parameter (`fit_mismatch_coverage_power`); zeros and
        missing parameters leave the term independent of coverage.
    coverage_range : tuple of float, optional
        The coverage range the power was fitted on (`fitted_coverage_range`); the default
        is `~specutils_cinn.calibration.MISMATCH_MIN_COVERAGE` to 1.

    Returns
    -------
    `~specutils_cinn.model.CINNModel`
    """
    md = model.metadata
    cal = md.posterior_calibration
    power = {p: float(g) for p, g in (coverage_power or {}).items() if g}
    new = dataclasses.replace(cal, info={**cal.info, "mismatch": dict(info)},
                              mismatch=dict(kappa), mismatch_tolerance=tolerance,
                              mismatch_coverage_power=power,
                              mismatch_coverage_range=coverage_range
                              or (MISMATCH_MIN_COVERAGE, 1.0))
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


def mismatch_excess(amplitude: np.ndarray, tolerance: float,
                    coverage: np.ndarray | None = None, power: float = 0.0) -> np.ndarray:
    """The amplitude the term scales: ``sqrt(max(A**2 - A0**2, 0)) / c**gamma``.

    The quantity
    `PosteriorCalibration.mismatch_widening <specutils_cinn.calibration.PosteriorCalibration>`
    scales, with NaN coverage taken as 1 and coverage clipped to
    `~specutils_cinn.calibration.MISMATCH_MIN_COVERAGE` .. 1. The widening clips to the
    calibration's ``mismatch_coverage_range`` instead, the range of the spectra the term was
    fitted on (`fitted_coverage_range`), which changes nothing for those spectra.

    Parameters
    ----------
    amplitude : numpy.ndarray
        ``fit_mismatch`` A of each spectrum.
    tolerance : float
        A0.
    coverage : numpy.ndarray, optional
        Coverage c of each spectrum (1 when not given).
    power : float, optional
        gamma.

    Returns
    -------
    numpy.ndarray
        One value per spectrum, 0 where A <= A0 or A is NaN.
    """
    a = np.nan_to_num(np.asarray(amplitude, dtype=float), nan=0.0)
    excess = np.sqrt(np.clip(a**2 - tolerance**2, 0, None))
    if coverage is None or power == 0:
        return excess
    c = np.clip(np.nan_to_num(np.asarray(coverage, dtype=float), nan=1.0),
                MISMATCH_MIN_COVERAGE, 1.0)
    return excess * c ** (-float(power))


def fitted_coverage_range(coverage: np.ndarray) -> tuple[float, float]:
    """The coverage range of the spectra a term is fitted on, widened to 0.001 steps.

    Parameters
    ----------
    coverage : numpy.ndarray
        Coverage of each spectrum (NaN ignored).

    Returns
    -------
    tuple of float
        ``(low, high)``, low rounded down and high up to a multiple of 0.001, within
        `~specutils_cinn.calibration.MISMATCH_MIN_COVERAGE` .. 1.

    Raises
    ------
    ValueError
        If no coverage is finite.
    """
    c = np.asarray(coverage, dtype=float)
    if not np.isfinite(c).any():
        raise ValueError("no finite coverage to take a range from")
    lo = max(np.floor(np.nanmin(c) * 1000) / 1000, MISMATCH_MIN_COVERAGE)
    hi = min(np.ceil(np.nanmax(c) * 1000) / 1000, 1.0)
    return float(min(lo, hi)), float(hi)


def _offsets(q: np.ndarray, reference: float) -> tuple[np.ndarray, np.ndarray]:
    """|median - reference| and the 68 % half width of ``[n, 5]`` quantiles."""
    q = np.asarray(q, dtype=float)
    return np.abs(q[:, 2] - reference), 0.5 * (q[:, 3] - q[:, 1])


def _kappa(d: np.ndarray, w: np.ndarray, excess: np.ndarray, margin: float,
           decimals: int | None = 4) -> float:
    """Smallest kappa (times margin) with ``d <= Z95 sqrt(w**2 + (kappa excess)**2)``."""
    widened = excess > 0
    need = np.sqrt(np.clip((d / Z95) ** 2 - w**2, 0, None))[widened] / excess[widened]
    top = margin * (np.nanmax(need) if need.size and np.isfinite(need).any() else 0.0)
    return float(top if decimals is None else np.round(top, decimals))


def fit_mismatch_kappa(
    quantiles: Mapping[str, np.ndarray],
    amplitude: np.ndarray,
    tolerance: float,
    reference: Mapping[str, float] = SUN_REFERENCE,
    margin: float = 1.25,
    coverage: np.ndarray | None = None,
    coverage_power: Mapping[str, float] | None = None,
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
    coverage : numpy.ndarray, optional
        ``[n]`` coverage of each spectrum, used with ``coverage_power``.
    coverage_power : dict of str to float, optional
        gamma per parameter (0 for parameters not in it).

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
    power = dict(coverage_power or {})
    kappa = {}
    for p, q in quantiles.items():
        if p not in reference:
            continue
        d, w = _offsets(q, reference[p])
        excess = mismatch_excess(amplitude, tolerance, coverage, power.get(p, 0.0))
        kappa[p] = _kappa(d, w, excess, margin)
    return kappa


def fit_mismatch_coverage_power(
    quantiles: Mapping[str, np.ndarray],
    amplitude: np.ndarray,
    coverage: np.ndarray,
    tolerance: float,
    reference: Mapping[str, float] = SUN_REFERENCE,
    margin: float = 1.25,
    powers: Sequence[float] = COVERAGE_POWERS,
) -> dict[str, float]:
    """The coverage power per parameter that keeps the widened intervals narrowest.

    For each power gamma of ``powers``, kappa is the smallest that contains the reference in
    every spectrum (`fit_mismatch_kappa`); the power kept is the one whose widened 68 % half
    widths have the smallest mean logarithm over all the spectra (the first of equals, so 0
    when coverage makes no difference).

    Parameters
    ----------
    quantiles, amplitude, tolerance, reference, margin
        As for `fit_mismatch_kappa`.
    coverage : numpy.ndarray
        ``[n]`` coverage of each spectrum (the output column ``coverage``).
    powers : sequence of float, optional
        The powers tried (non-negative).

    Returns
    -------
    dict of str to float
        gamma per parameter of ``quantiles`` that has a reference.

    Raises
    ------
    ValueError
        If ``powers`` is empty or holds a negative or non-finite value, or ``coverage`` does
        not have one value per spectrum.
    """
    grid = np.asarray(powers, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"powers must be non-negative finite numbers, got {powers!r}")
    cov = np.asarray(coverage, dtype=float)
    if cov.shape != np.shape(amplitude):
        raise ValueError(f"coverage must have one value per spectrum ({np.shape(amplitude)}), "
                         f"got shape {cov.shape}")
    out = {}
    for p, q in quantiles.items():
        if p not in reference:
            continue
        d, w = _offsets(q, reference[p])
        w = np.clip(w, np.finfo(float).tiny, None)
        best, best_score = 0.0, np.inf
        for g in grid:
            excess = mismatch_excess(amplitude, tolerance, cov, g)
            k = _kappa(d, w, excess, margin, decimals=None)
            score = np.nanmean(np.log(np.sqrt(w**2 + (k * excess) ** 2)))
            if score < best_score - 1e-9:
                best, best_score = float(g), score
        out[p] = best
    return out
