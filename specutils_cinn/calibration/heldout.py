"""Fit a model's posterior calibration on held-out Turbospectrum stars (2-fold cross-fitted).

The cINN's own posteriors are too narrow where the emulator it was trained on differs from
Turbospectrum (see docs/validation.rst). `calibrate_posteriors`
(``specutils-cinn calibrate posterior``) measures that and fixes it:

1. The ``holdout`` stars of the synthesis grid (never used to train the emulator or the cINN,
   nor to pick its weights) are degraded to the model's setup with ``instruments.degrade``,
   ``vsini_per_star`` v sin i values each (drawn with ``seed``, not the validation report's
   seed), and get photon noise at each S/N of `SNRS` (``realizations`` draws each). From a
   folder of v2 grid shards, the binned spectra are rotated with ``BinnedRotation`` instead,
   with the training simulator's macroturbulence if it drew one
   (`~specutils_cinn.validation.shard_heldout`).
2. The model's uncalibrated draws (``calibrated=False``) go to
   `~specutils_cinn.calibration.fit_posterior_calibration`, which picks a scale and a floor
   per parameter so that the 50/68/90/95 % central intervals cover their nominal fractions at
   every S/N (the calibration only widens: scales >= 1). Parameters the spectra do not
   constrain (median posterior std at the highest S/N at least `MAX_WIDTH_RATIO` of the
   training labels' std) are left out: their posterior is the prior already.
3. Two-fold cross-fitting by star (`~specutils_cinn.calibration.cross_fit_fold`): the
   calibration fitted on one half is applied to the other, so the coverage reported as
   ``cross_fitted`` is out-of-sample. The fold calibrations are stored in the model's
   ``posterior_calibration.info`` so that the validation pages report cross-fitted coverage
   too.
4. The model saved carries the calibration fitted on all held-out stars.

Bias and scatter are not affected: the calibration keeps every posterior median.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..estimator import CINNParameterEstimator
from ..model import CINNModel
from ..validation.heldout import heldout_from_grid, noisy_spectrum
from ..validation.metrics import posterior_rank_fraction
from ..validation.shard_heldout import grid_source
from .posterior import (
    CROSS_FIT_RULE,
    PosteriorCalibration,
    central_coverage,
    cross_fit_fold,
    fit_posterior_calibration,
)

__all__ = [
    "MAX_WIDTH_RATIO",
    "REPORT_LEVELS",
    "SNRS",
    "apply_calibration",
    "calibrate_posteriors",
    "coverage_by_snr",
]

#: S/N per Angstrom of the noisy realizations.
SNRS = (10.0, 25.0, 50.0, 100.0, 250.0)
#: Central-interval levels whose coverage is reported.
REPORT_LEVELS = (0.68, 0.95)
#: Parameters whose median posterior std at the highest S/N is at least this fraction of the
#: training labels' std are not calibrated.
MAX_WIDTH_RATIO = 0.7


def coverage_by_snr(draws: np.ndarray, truth: np.ndarray, snr: np.ndarray,
                    params: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """Coverage of the central `REPORT_LEVELS` intervals per S/N and parameter.

    Parameters
    ----------
    draws : numpy.ndarray
        ``[N, S, D]`` posterior draws.
    truth : numpy.ndarray
        ``[N, D]`` true labels.
    snr : numpy.ndarray
        ``[N]`` S/N of each spectrum.
    params : sequence of str
        The ``D`` parameter names.

    Returns
    -------
    dict
        ``{f"{snr:g}": {param: [coverage at each level]}}``, rounded to 3 decimals.
    """
    pit = posterior_rank_fraction(truth, draws)  # [N, D]
    out: dict[str, dict[str, list[float]]] = {}
    for s in np.unique(snr):
        cov = central_coverage(pit[snr == s].T, REPORT_LEVELS)  # [D, L]
        out[f"{s:g}"] = {p: [round(float(v), 3) for v in cov[j]] for j, p in enumerate(params)}
    return out


def apply_calibration(cal: PosteriorCalibration, draws: np.ndarray,
                      params: Sequence[str]) -> np.ndarray:
    """Apply a calibration to ``[N, S, D]`` draws held in a numpy array.

    Parameters
    ----------
    cal : `~specutils_cinn.calibration.PosteriorCalibration`
    draws : numpy.ndarray
        ``[N, S, D]`` posterior draws.
    params : sequence of str
        The ``D`` parameter names.

    Returns
    -------
    numpy.ndarray
        The widened draws.
    """
    with torch.no_grad():
        return cal.apply(torch.from_numpy(draws), list(params)).numpy()


def calibrate_posteriors(
    model: str | Path,
    grid: str | Path,
    version: str,
    output: str | Path,
    *,
    vsini_per_star: int = 4,
    realizations: int = 2,
    n_samples: int = 500,
    seed: int = 11,
    min_scale: float = 1.0,
    by_width: bool = False,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Fit a model's posterior calibration on held-out stars and save the model with it.

    Parameters
    ----------
    model : str or pathlib.Path
        Model directory (e.g. the output of ``specutils-cinn calibrate fit-flag``).
    grid : str or pathlib.Path
        Synthesis grid (a file) or v2 grid (a folder of shards) whose ``holdout`` stars are used
        (`~specutils_cinn.validation.heldout.heldout_from_grid`).
    version : str
        Version of the calibrated model.
    output : str or pathlib.Path
        Model directory to write.
    vsini_per_star : int, optional
        Spectra per held-out star (one if the model does not predict v sin i).
    realizations : int, optional
        Noise realizations per spectrum and S/N.
    n_samples : int, optional
        Uncalibrated posterior draws per spectrum.
    seed : int, optional
        Seed of the v sin i draws, the noise and the posterior draws.
    min_scale : float, optional
        Smallest scale of the grid (to 3 in steps of 0.05). The default 1 only widens; below 1
        the calibration may also narrow a posterior whose intervals cover more than their
        level (a model trained with more noise than its held-out stars show).
    by_width : bool, optional
        Fit a scale that depends on the posterior's half width (nodes at each S/N's median
        width, no floor; `~specutils_cinn.calibration.PosteriorCalibration` ``width_scale``)
        instead of one scale and floor per parameter.
    log : callable, optional
        Called with progress messages.

    Returns
    -------
    dict
        The report (JSON-serializable): ``uncalibrated``, ``cross_fitted`` and ``in_sample``
        coverage per S/N (`coverage_by_snr`) and the fitted calibrations.
    """
    if not (math.isfinite(min_scale) and 0.0 < min_scale <= 3.0):
        raise ValueError(f"min_scale must be in (0, 3], got {min_scale!r}")
    scales = np.round(np.arange(min_scale, 3.0001, 0.05), 6)
    t0 = time.perf_counter()
    base = CINNModel.load(model)
    md = base.metadata
    params = md.parameter_names
    est = CINNParameterEstimator(base, device="cpu")
    n_vsini = vsini_per_star if "vsini" in params else 1
    held = heldout_from_grid(est, grid, "holdout", n_vsini, seed)
    n = len(held.truth)
    log(f"{md.full_name}: {n} held-out spectra of {len(np.unique(held.star))} stars")

    draws, truth, snr, star = [], [], [], []
    for s in SNRS:
        for r in range(realizations):
            draw_seed = seed * 10000 + int(s) * 10 + r
            spec = noisy_spectrum(held.flux, md.grid.wavelength, md.grid.pixel_width, s,
                                  draw_seed)
            t = est.sample_posterior(spec, n_samples=n_samples, seed=draw_seed, progress=False,
                                     calibrated=False)
            draws.append(np.stack([np.asarray(t[p].value, dtype=np.float32) for p in params],
                                  axis=-1))
            truth.append(held.truth)
            snr.append(np.full(n, s))
            star.append(held.star)
        log(f"  S/N {s:g}: drawn ({time.perf_counter() - t0:.0f} s)")
    d = np.concatenate(draws)
    y = np.concatenate(truth)
    g = np.concatenate(snr)
    st = np.concatenate(star)
    ok = np.isfinite(d).all(axis=(1, 2))
    if not ok.all():
        log(f"  {np.sum(~ok)} spectra without draws left out")
    d, y, g, st = d[ok], y[ok], g[ok], st[ok]
    a = cross_fit_fold(st)
    # Parameters the spectra do not constrain (posterior about as wide as the training
    # distribution at the highest S/N) are left alone: widening a posterior that is already
    # the prior only spreads it outside the training range (e.g. negative v sin i).
    top = g == max(SNRS)
    ratio = {p: float(np.median(np.std(d[top, :, j], axis=1)) / md.parameters[j].std)
             for j, p in enumerate(params)}
    fitted = [p for p in params if ratio[p] < MAX_WIDTH_RATIO]
    cols = [params.index(p) for p in fitted]
    log(f"  posterior / prior width at S/N {max(SNRS):g}: "
        + ", ".join(f"{p} {ratio[p]:.2f}" for p in params) + f"; calibrating {fitted}")

    common = {
        "method": ((f"a scale per parameter and S/N on a grid (scales {min_scale:g}-3), placed "
                    "at that S/N's median posterior half width and interpolated in log width "
                    "between them (no floor)" if by_width else
                    f"scale and floor per parameter on a grid (scales {min_scale:g}-3, floors 0 "
                    "to the standard deviation of the true values)")
                   + ", minimizing the squared coverage error of the 50/68/90/95 % central "
                   "intervals, each S/N weighted equally"),
        "heldout": held.description,
        "data": f"{grid_source(grid)}: holdout stars, {n_vsini} v sin i per star (seed "
                f"{seed}), photon noise at S/N {list(SNRS)} per A, {realizations} "
                f"realizations, {n_samples} uncalibrated draws each",
        "script": "specutils-cinn calibrate posterior",
        "not_calibrated": {
            "parameters": [p for p in params if p not in fitted],
            "reason": f"median posterior std at S/N {max(SNRS):g} >= {MAX_WIDTH_RATIO} times the "
                      "training label std (not constrained by the spectra)",
        },
        "width_ratio": ratio,
    }
    cals = {}
    for name, rows in (("A", a), ("B", ~a), ("all", np.ones_like(a))):
        cals[name] = fit_posterior_calibration(
            d[rows][:, :, cols], y[rows][:, cols], fitted, g[rows], scales=scales,
            by_width=by_width, info={"stars": int(len(np.unique(st[rows])))})
        log(f"  fit on {name}: " + ", ".join(f"{p} {cals[name].describe(p)}" for p in fitted))

    crossed = d.copy()
    crossed[~a] = apply_calibration(cals["A"], d[~a], params)
    crossed[a] = apply_calibration(cals["B"], d[a], params)
    in_sample = apply_calibration(cals["all"], d, params)
    report: dict[str, Any] = {
        "model": md.full_name, "levels": list(REPORT_LEVELS), "n_spectra": int(len(d)),
        "uncalibrated": coverage_by_snr(d, y, g, params),
        "cross_fitted": coverage_by_snr(crossed, y, g, params),
        "in_sample": coverage_by_snr(in_sample, y, g, params),
        "calibration": {k: c.to_dict() for k, c in cals.items()},
    }
    for key in ("uncalibrated", "cross_fitted"):
        log(key)
        for s, row in report[key].items():
            log(f"  S/N {s:>4}: " + " ".join(f"{p} {v[0]:.2f}/{v[1]:.2f}"
                                             for p, v in row.items()))

    strip = ("levels", "loss_before", "loss_after")
    folds = {k: {"scale": cals[k].scale, "floor": cals[k].floor,
                 "stars": cals[k].info["stars"],
                 **({"width_scale": cals[k].to_dict()["width_scale"]}
                    if cals[k].width_scale else {})} for k in ("A", "B")}
    info = dict(common, **{k: cals["all"].info[k] for k in strip},
                stars=cals["all"].info["stars"],
                cross_validation={"rule": CROSS_FIT_RULE, "folds": folds})
    final_cal = PosteriorCalibration(cals["all"].scale, cals["all"].floor, info,
                                     width_scale=cals["all"].width_scale)
    final = CINNModel(md.replace(version=version, posterior_calibration=final_cal),
                      base.network, emulator=base.emulator)
    final.save(output)
    CINNModel.load(output)  # round trip
    report["seconds"] = time.perf_counter() - t0
    return report
