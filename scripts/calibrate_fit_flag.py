"""Attach a spectrum emulator to a model, measure its error floor and calibrate ``POOR_FIT``.

1. The emulator is trimmed to the model's pixels (`specutils_cinn.fit_check.trim_emulator`).
2. Held-out Turbospectrum stars of the synthesis grid (``holdout``: never used to train the
   emulator or the cINN) are degraded to the model's setup with ``instruments.degrade`` (with
   v sin i drawn in the model's range if it predicts v sin i). The error floor per pixel is the
   RMS over these stars of (synthetic - emulated at the true labels, rotated as the estimator
   does, labels the model does not predict at their defaults), the squares averaged over 5
   pixels, at least 0.001.
3. The same stars with photon noise at each S/N go through the estimator. ``fit_chi2`` is
   computed two-fold cross-validated (floor from the other half of the stars) and in-sample;
   the threshold is the smallest candidate for which the cross-validated flagged fraction is
   below ``--max-fraction`` at every S/N.
4. Out-of-domain inputs: pure noise, the held-out stars at a lower resolving power, the Sun.

The model with the emulator (version ``--version``) is saved to ``--out``; bundle it with
``scripts/bundle_model.py``. Numbers go to ``--json``.

Usage::

    OMP_NUM_THREADS=1 python scripts/calibrate_fit_flag.py \\
        specutils_cinn/data/models/4most-hr-lte-seed-v0.1.0 work/emulators/4most-hr-emulator \\
        --version 0.1.1 --out work/models/4most-hr-lte-seed-fit --json work/fit_flag_hr.json
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
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.calibration import cross_fit_fold
from specutils_cinn.emulator import load_emulator, pixel_error
from specutils_cinn.fit_check import trim_emulator
from specutils_cinn.flags import QualityFlag
from specutils_cinn.instruments import snr_per_pixel
from specutils_cinn.model import CINNModel
from specutils_cinn.simulation import BinnedRotation

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validation_report as vr  # noqa: E402

SNRS = (10.0, 20.0, 50.0, 100.0, 250.0)
CANDIDATES = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)
#: Label defaults for emulator labels the seed models do not predict.
DEFAULTS = {"ti_fe": 0.0, "mn_fe": 0.0, "ni_fe": 0.0, "li_fe": 0.0}
#: Li I lines (air, Angstrom) left out of the chi-square: A(Li) is not predicted.
LI_LINES = (6103.6, 6707.8, 8126.3)
FLOOR_MIN = 1e-3
FLOOR_SMOOTH = 5


def smooth_floor(resid: np.ndarray, emu_grid: Any) -> np.ndarray:
    """RMS over rows, squares averaged over `FLOOR_SMOOTH` pixels per segment, >= FLOOR_MIN."""
    return pixel_error(resid, emu_grid, smooth=FLOOR_SMOOTH, floor=FLOOR_MIN)


def fractions(chi2: np.ndarray, thresholds: tuple[float, ...]) -> dict[str, float]:
    ok = np.isfinite(chi2)
    return {f"{t:g}": float(np.mean(chi2[ok] > t)) if ok.any() else float("nan")
            for t in thresholds}


def describe(chi2: np.ndarray) -> dict[str, float]:
    c = chi2[np.isfinite(chi2)]
    if c.size == 0:
        return {"n": 0}
    q = np.percentile(c, [0, 50, 98, 100])
    return {"n": int(c.size), "min": float(q[0]), "median": float(q[1]), "p98": float(q[2]),
            "max": float(q[3])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("emulator")
    ap.add_argument("--grid", default="work/seed_grid.h5")
    ap.add_argument("--version", required=True, help="version of the model with the emulator")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--vsini-per-star", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=256)
    ap.add_argument("--max-fraction", type=float, default=0.02)
    ap.add_argument("--ood-r", type=float, default=None,
                    help="resolving power of the wrong-resolution test (default 7000 / 2000)")
    ap.add_argument("--example", default="specutils_cinn/data/sun_4most_hr_example.fits")
    ap.add_argument("--sun-harps", default="../shared/data/sun/Sun_HARPS.fits")
    ap.add_argument("--sun-uves", default="../shared/data/sun/UVES_Sun-1_cleaned_norm.txt.gz")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    base = CINNModel.load(args.model)
    md = base.metadata
    est0 = CINNParameterEstimator(base, device="cpu")
    step = md.grid.segments[0].step
    half = 1.5 if step < 0.2 else 3.0
    exclude = [(w - half, w + half) for w in LI_LINES
               if any(s.start - half <= w <= s.stop + half for s in md.grid.segments)]
    emu = trim_emulator(load_emulator(args.emulator), md.grid)

    held = vr.heldout_from_grid(est0, args.grid, "holdout", args.vsini_per_star
                                if "vsini" in md.parameter_names else 1, args.seed)
    n = len(held.truth)
    print(f"{n} held-out spectra ({len(np.unique(held.star))} stars), "
          f"{time.perf_counter() - t0:.0f} s")

    # ---------------------------------------------------------------- error floor
    probe = base.attach_emulator(emu, 0.0, chi2_threshold=1.0, label_defaults=DEFAULTS,
                                 exclude=exclude, trim=False).emulator
    labels, vsini = probe.labels(md.parameter_names, held.truth)
    with torch.no_grad():
        f_emu = emu(torch.as_tensor(labels), clamp=True)
        f_emu = BinnedRotation(emu.grid)(f_emu, torch.as_tensor(vsini)).numpy()
    synth = np.full((n, emu.grid.npix), np.nan)
    synth[:, probe.emulator_index] = held.flux[:, probe.model_index]
    resid = synth - f_emu
    fold_a = cross_fit_fold(held.star)
    floors = {"all": smooth_floor(resid, emu.grid),
              "A": smooth_floor(resid[fold_a], emu.grid),
              "B": smooth_floor(resid[~fold_a], emu.grid)}
    floor_info = {
        "rms_all_pixels": float(np.sqrt(np.mean(resid**2))),
        "floor_median": float(np.median(floors["all"])),
        "floor_p90": float(np.percentile(floors["all"], 90)),
        "floor_max": float(floors["all"].max()),
    }
    print("floor", floor_info)
    models = {k: base.attach_emulator(emu, f, chi2_threshold=1.0, label_defaults=DEFAULTS,
                                      exclude=exclude, trim=False)
              for k, f in floors.items()}
    ests = {k: CINNParameterEstimator(m, device="cpu") for k, m in models.items()}

    def chi2_of(spec: Any, which: str = "all") -> tuple[np.ndarray, np.ndarray, Any]:
        t = ests["all"].predict(spec, n_samples=args.n_samples, seed=args.seed, progress=False)
        median = np.column_stack([np.asarray(t[p].value, dtype=float)
                                  for p in md.parameter_names])
        if which == "cv":
            cv = np.full(len(t), np.nan)
            for k, rows in (("A", ~fold_a), ("B", fold_a)):  # floor from the other half
                prepared, _ = ests[k]._prepare(spec, 2, 0, None, "air", None, "auto")
                c = ests[k]._fit_statistics(prepared, median, torch.device("cpu")).chi2
                cv[rows] = c[rows]
            return np.asarray(t["fit_chi2"]), cv, t
        return np.asarray(t["fit_chi2"]), np.asarray(t["fit_chi2"]), t

    wave = md.grid.wavelength
    width = md.grid.pixel_width
    report: dict[str, Any] = {"model": md.full_name, "emulator": str(args.emulator),
                              "n_heldout": n, "exclude": exclude, "defaults": DEFAULTS,
                              "floor": floor_info, "in_domain": {}, "ood": {}}
    t_inf = time.perf_counter()
    for snr in SNRS:
        spec = vr.noisy_spectrum(held.flux, wave, width, snr, args.seed * 100 + int(snr))
        ins, cv, t = chi2_of(spec, "cv")
        report["in_domain"][f"{snr:g}"] = {
            "cv": describe(cv), "in_sample": describe(ins),
            "flagged_cv": fractions(cv, CANDIDATES),
            "flagged_in_sample": fractions(ins, CANDIDATES),
            "edge_or_lowsnr": float(np.mean(np.asarray(t["flags"]) & 48 > 0)),
        }
        prepared, _ = ests["all"]._prepare(spec, 2, 0, None, "air", None, "auto")
        truth = ests["all"]._fit_statistics(prepared, held.truth, torch.device("cpu")).chi2
        report["in_domain"][f"{snr:g}"]["at_true_labels_in_sample"] = describe(truth)
        print(f"S/N {snr:g}: cv {describe(cv)}  in-sample median {np.nanmedian(ins):.2f}, "
              f"at true labels {describe(truth)}")
    report["seconds_in_domain"] = time.perf_counter() - t_inf
    worst = {f"{c:g}": max(report["in_domain"][f"{s:g}"]["flagged_cv"][f"{c:g}"] for s in SNRS)
             for c in CANDIDATES}
    threshold = next((c for c in CANDIDATES if worst[f"{c:g}"] < args.max_fraction),
                     CANDIDATES[-1])
    report["worst_flagged_fraction_cv"] = worst
    report["threshold"] = threshold
    print(f"threshold {threshold} (worst cross-validated flagged fraction {worst})")

    info = {
        "error_floor": (
            "per pixel: RMS over held-out Turbospectrum stars of (synthetic - emulated at the "
            "true labels, unpredicted labels at their defaults, rotated as in the estimator), "
            f"squares averaged over {FLOOR_SMOOTH} pixels, at least {FLOOR_MIN}"
        ),
        "floor_stars": int(len(np.unique(held.star))),
        "floor_source": str(Path(args.grid).name),
        "floor_summary": floor_info,
        "threshold": (
            f"smallest of {list(CANDIDATES)} flagging < {args.max_fraction:.0%} of held-out "
            f"spectra (2-fold cross-validated floor) at S/N {list(SNRS)}"
        ),
        "worst_flagged_fraction": worst[f"{threshold:g}"],
        "emulator_source": dict(emu.metadata.get("training_grid", {}), name=emu.metadata.get(
            "name"), weights_sha256=emu.metadata.get("weights_sha256")),
        "script": "scripts/calibrate_fit_flag.py",
    }
    final = base.attach_emulator(emu, floors["all"], chi2_threshold=threshold,
                                 label_defaults=DEFAULTS, exclude=exclude, info=info, trim=False)
    final = CINNModel(final.metadata.replace(version=args.version), final.network,
                      emulator=final.emulator)
    final.save(args.out)
    est = CINNParameterEstimator(CINNModel.load(args.out), device="cpu")
    ests["all"] = est

    # ---------------------------------------------------------------- out of domain
    def ood(name: str, spec: Any) -> None:
        ins, _, t = chi2_of(spec)
        flags = np.asarray(t["flags"])
        poor = (flags & int(QualityFlag.POOR_FIT)) > 0
        other = (flags & 0b111111) > 0
        report["ood"][name] = {"chi2": describe(ins), "poor_fit": float(np.mean(poor)),
                               "any_other_flag": float(np.mean(other)),
                               "poor_fit_or_other": float(np.mean(poor | other))}
        print(f"{name}: POOR_FIT {np.mean(poor):.2f}, chi2 {describe(ins)}")

    rng = np.random.default_rng(args.seed + 11)
    for snr in (10.0, 50.0, 250.0):
        sig = 1.0 / snr_per_pixel(snr, width)
        flux = 1.0 + sig * rng.standard_normal((50, md.grid.npix))
        ood(f"flat continuum + noise, S/N {snr:g}",
            Spectrum(flux=flux * u.one, spectral_axis=wave,
                     uncertainty=StdDevUncertainty(np.broadcast_to(sig, flux.shape).copy())))
    sig0 = np.full((50, md.grid.npix), 0.02)
    ood("zero-mean noise, sigma 0.02 (empty fibre)",
        Spectrum(flux=sig0 * rng.standard_normal(sig0.shape) * u.one, spectral_axis=wave,
                 uncertainty=StdDevUncertainty(sig0)))
    r_ood = args.ood_r or (7000.0 if step < 0.2 else 2000.0)
    low = held.rerender(np.arange(n), r_ood)
    for snr in (10.0, 50.0, 250.0):
        ood(f"held-out at R = {r_ood:g}, S/N {snr:g}",
            vr.noisy_spectrum(low, wave, width, snr, args.seed * 1000 + int(snr)))
    if Path(args.example).is_file() and step < 0.2:
        ood("Sun, bundled example (HARPS, S/N 100)", Spectrum.read(args.example))
    for name, flux, _cov in vr.sun_spectra(est, args.sun_harps, args.sun_uves):
        for snr in (50.0, 250.0):
            ood(f"Sun, {name}, S/N {snr:g}", vr.sun_noisy(est, flux, snr, args.seed + int(snr)))
    report["seconds_total"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {args.out} (threshold {threshold}); report {args.json}; "
          f"{report['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
