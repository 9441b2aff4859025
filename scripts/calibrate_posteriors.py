"""Fit a model's posterior calibration on held-out Turbospectrum stars (2-fold cross-fitted).

The cINN's own posteriors are too narrow where the emulator it was trained on differs from
Turbospectrum (see docs/validation.rst). This script measures that and fixes it:

1. The ``holdout`` stars of the synthesis grid (never used to train the emulator or the cINN,
   nor to pick its weights) are degraded to the model's setup with ``instruments.degrade``,
   ``--vsini-per-star`` v sin i values each (drawn with ``--seed``, not the validation
   report's seed), and get photon noise at each S/N (``--realisations`` draws each).
2. The model's uncalibrated draws (``calibrated=False``) go to
   `specutils_cinn.calibration.fit_posterior_calibration`, which picks a scale and a floor per
   parameter so that the 50/68/90/95 % central intervals cover their nominal fractions at
   every S/N (the calibration only widens: scales >= 1). Parameters the spectra do not
   constrain (median posterior std at S/N 250 at least `MAX_WIDTH_RATIO` of the training
   labels' std) are left out: their posterior is the prior already.
3. Two-fold cross-fitting by star (`specutils_cinn.calibration.cross_fit_fold`: fold A has
   ``star_id // 10`` even, as in ``calibrate_fit_flag.py``): the calibration fitted on one
   half is applied to the other, so the coverage printed and written to ``--json`` as
   ``cross_fitted`` is out-of-sample. The fold calibrations are stored in the model's
   ``posterior_calibration.info`` so that ``scripts/validation_report.py`` reports
   cross-fitted coverage too.
4. The model saved to ``--out`` (version ``--version``) carries the calibration fitted on
   all held-out stars; bundle it with ``scripts/bundle_model.py``.

Bias and scatter are not affected: the calibration keeps every posterior median.

Usage::

    OMP_NUM_THREADS=1 python scripts/calibrate_posteriors.py work/models/4most-hr-lte-fit \\
        --grid ../shared/data/ts_lte_seed/ts_lte_seed.npz --version 1.0.1 \\
        --out work/models/4most-hr-lte-cal --json work/posterior_cal_hr.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.calibration import (
    CROSS_FIT_RULE,
    PosteriorCalibration,
    central_coverage,
    cross_fit_fold,
    fit_posterior_calibration,
)
from specutils_cinn.model import CINNModel
from specutils_cinn.validation import posterior_rank_fraction

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validation_report as vr  # noqa: E402

SNRS = (10.0, 25.0, 50.0, 100.0, 250.0)
REPORT_LEVELS = (0.68, 0.95)
#: Parameters whose median posterior std at the highest S/N is at least this fraction of the
#: training labels' std are not calibrated.
MAX_WIDTH_RATIO = 0.7


def coverage_of(draws: np.ndarray, truth: np.ndarray, snr: np.ndarray,
                params: list[str]) -> dict[str, dict[str, list[float]]]:
    """{S/N: {param: [coverage at REPORT_LEVELS]}} of draws [N, S, D]."""
    pit = posterior_rank_fraction(truth, draws)  # [N, D]
    out: dict[str, dict[str, list[float]]] = {}
    for s in np.unique(snr):
        cov = central_coverage(pit[snr == s].T, REPORT_LEVELS)  # [D, L]
        out[f"{s:g}"] = {p: [round(float(v), 3) for v in cov[j]] for j, p in enumerate(params)}
    return out


def apply(cal: PosteriorCalibration, draws: np.ndarray, params: list[str]) -> np.ndarray:
    with torch.no_grad():
        return cal.apply(torch.from_numpy(draws), params).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model directory (e.g. the output of calibrate_fit_flag.py)")
    ap.add_argument("--grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz")
    ap.add_argument("--version", required=True, help="version of the calibrated model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--vsini-per-star", type=int, default=4)
    ap.add_argument("--realisations", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    base = CINNModel.load(args.model)
    md = base.metadata
    params = md.parameter_names
    est = CINNParameterEstimator(base, device="cpu")
    n_vsini = args.vsini_per_star if "vsini" in params else 1
    held = vr.heldout_from_grid(est, args.grid, "holdout", n_vsini, args.seed)
    n = len(held.truth)
    print(f"{md.full_name}: {n} held-out spectra of {len(np.unique(held.star))} stars")

    draws, truth, snr, star = [], [], [], []
    for s in SNRS:
        for r in range(args.realisations):
            seed = args.seed * 10000 + int(s) * 10 + r
            spec = vr.noisy_spectrum(held.flux, md.grid.wavelength, md.grid.pixel_width, s, seed)
            t = est.sample_posterior(spec, n_samples=args.n_samples, seed=seed, progress=False,
                                     calibrated=False)
            draws.append(np.stack([np.asarray(t[p].value, dtype=np.float32) for p in params],
                                  axis=-1))
            truth.append(held.truth)
            snr.append(np.full(n, s))
            star.append(held.star)
        print(f"  S/N {s:g}: drawn ({time.perf_counter() - t0:.0f} s)", flush=True)
    d = np.concatenate(draws)
    y = np.concatenate(truth)
    g = np.concatenate(snr)
    st = np.concatenate(star)
    ok = np.isfinite(d).all(axis=(1, 2))
    if not ok.all():
        print(f"  {np.sum(~ok)} spectra without draws left out")
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
    print("  posterior / prior width at S/N " f"{max(SNRS):g}: "
          + ", ".join(f"{p} {ratio[p]:.2f}" for p in params)
          + f"; calibrating {fitted}")

    common = {
        "method": "scale and floor per parameter on a grid (scales 1-3, floors 0 to the "
                  "standard deviation of the true values), minimising the squared coverage "
                  "error of the 50/68/90/95 % central intervals, each S/N weighted equally",
        "data": f"{Path(args.grid).name}: holdout stars, {n_vsini} v sin i per star (seed "
                f"{args.seed}), photon noise at S/N {list(SNRS)} per A, {args.realisations} "
                f"realisations, {args.n_samples} uncalibrated draws each",
        "script": "scripts/calibrate_posteriors.py",
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
            d[rows][:, :, cols], y[rows][:, cols], fitted, g[rows],
            info={"stars": int(len(np.unique(st[rows])))})
        print(f"  fit on {name}: " + ", ".join(
            f"{p} x{cals[name].scale[p]:.2f} (+) {cals[name].floor[p]:.3g}" for p in fitted),
            flush=True)

    crossed = d.copy()
    crossed[~a] = apply(cals["A"], d[~a], params)
    crossed[a] = apply(cals["B"], d[a], params)
    in_sample = apply(cals["all"], d, params)
    report: dict[str, Any] = {
        "model": md.full_name, "levels": list(REPORT_LEVELS), "n_spectra": int(len(d)),
        "uncalibrated": coverage_of(d, y, g, params),
        "cross_fitted": coverage_of(crossed, y, g, params),
        "in_sample": coverage_of(in_sample, y, g, params),
        "calibration": {k: c.to_dict() for k, c in cals.items()},
    }
    for key in ("uncalibrated", "cross_fitted"):
        print(key)
        for s, row in report[key].items():
            print(f"  S/N {s:>4}: " + " ".join(f"{p} {v[0]:.2f}/{v[1]:.2f}"
                                               for p, v in row.items()))

    strip = ("levels", "loss_before", "loss_after")
    folds = {k: {"scale": cals[k].scale, "floor": cals[k].floor,
                 "stars": cals[k].info["stars"]} for k in ("A", "B")}
    info = dict(common, **{k: cals["all"].info[k] for k in strip},
                stars=cals["all"].info["stars"],
                cross_validation={"rule": CROSS_FIT_RULE, "folds": folds})
    final_cal = PosteriorCalibration(cals["all"].scale, cals["all"].floor, info)
    final = CINNModel(md.replace(version=args.version, posterior_calibration=final_cal),
                      base.network, emulator=base.emulator)
    final.save(args.out)
    CINNModel.load(args.out)  # round trip
    report["seconds"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {args.out}; report {args.json}; {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
