"""Fit the model-mismatch term of a model's posterior calibration on observed solar spectra.

For each observed solar spectrum (HARPS, UVES) degraded to the model's setup at several S/N
(``--snr``, ``--realizations`` noise draws each), the calibrated posterior (without a mismatch
term) gives a median m, a 68 % half width w and the spectrum's ``fit_mismatch`` A (the
residual RMS against the emulated spectrum that noise and emulator error do not explain).
For each parameter with a solar reference value r (Teff 5772 K, log g 4.44, [Fe/H] 0 and every
[X/Fe] 0), the smallest kappa that puts r inside the 95 % interval of every solar spectrum,
``|m - r| <= 1.96 sqrt(w**2 + kappa**2 (A**2 - A0**2) / c**(2 gamma))``, is kept (times
``--margin``; `specutils_cinn.calibration.mismatch.fit_mismatch_kappa`), where c is the
spectrum's coverage and gamma the coverage power: by default the one that keeps the widened
intervals narrowest on average (`fit_mismatch_coverage_power`; the UVES Sun lacks the HB arm),
or the number given with ``--coverage-power`` (0: the term does not depend on coverage).
Other parameters (vmic, v sin i) get none, and the docs say so.

Checks, printed as RST tables:

- the Sun: 95 % containment before and after (by construction after, on these spectra), and
  the median 68 % half width per spectrograph;
- held-out synthetic stars of the seed grid (``--grid``, star_id % 10 == 9) at S/N 50 and 250:
  68 %/95 % coverage with and without the term, which should barely move (A ~ 0 there);
- the 13 NARVAL benchmarks (two windows, about a quarter of the HR model's pixels) at S/N 250:
  95 % containment of their reference Teff, log g and [Fe/H] with and without the term.

The tolerance A0 below which no spectrum is widened is the ``--tolerance-quantile`` of
``fit_mismatch`` over the held-out synthetic spectra. ``--write DIR`` saves the model with the
fitted term in its metadata (the weights are not touched) as version ``--version``, with the
parameters its posterior calibration found unconstrained declared ``unconstrained``.

Usage::

    python scripts/calibrate_mismatch.py --model 4most-hr --output docs/real_stars/mismatch_hr.rst
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from real_stars import noisy  # noqa: E402
from reference_spectra import BENCHMARKS, NARVAL_R, SUN_R, read_narval, read_sun, rst_table  # noqa: E402
from renamed_options import add_renamed_option  # noqa: E402

from specutils_cinn import CINNParameterEstimator  # noqa: E402
from specutils_cinn.calibration.mismatch import (  # noqa: E402
    COVERAGE_POWERS,
    SUN_REFERENCE,
    fit_mismatch_coverage_power,
    fit_mismatch_kappa,
    fitted_coverage_range,
    mismatch_tolerance,
    with_mismatch,
    without_mismatch,
)
from specutils_cinn.instruments import degrade, degrade_spectrum  # noqa: E402
from specutils_cinn.model import CINNModel  # noqa: E402
from specutils_cinn.results import quantile_column_name  # noqa: E402

Q = (0.025, 0.16, 0.5, 0.84, 0.975)


def summaries(est, spectra, seed, calibrated=True):
    t = est.predict(spectra, n_samples=1000, seed=seed, quantiles=Q, calibrated=calibrated)
    out = {p: np.stack([np.asarray(t[quantile_column_name(p, q)].value) for q in Q], axis=1)
           for p in est.parameters}
    return out, np.asarray(t["fit_mismatch"]), np.asarray(t["coverage"])


def contained(q, ref):
    return (q[:, 0] <= ref) & (ref <= q[:, 4])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="4most-hr")
    ap.add_argument("--sun-dir", default="../shared/data/sun")
    ap.add_argument("--bench-dir", default="../shared/data/benchmarks_narval")
    ap.add_argument("--grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz")
    ap.add_argument("--snr", nargs="+", type=float, default=[50.0, 100.0, 250.0])
    add_renamed_option(ap, "--realizations", "--realisations", type=int, default=4,
                       help="noise draws per solar spectrum and S/N")
    ap.add_argument("--margin", type=float, default=1.25)
    ap.add_argument("--tolerance-quantile", type=float, default=0.75)
    ap.add_argument("--coverage-power", default="fit",
                    help="the term's coverage power gamma: 'fit' (default) or a number >= 0")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--output", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--write", default=None, help="save the model with the term here")
    ap.add_argument("--version", default=None, help="version of the saved model")
    args = ap.parse_args(argv)
    if args.coverage_power != "fit":
        try:
            fixed_power = float(args.coverage_power)
        except ValueError:
            fixed_power = -1.0
        if not (np.isfinite(fixed_power) and fixed_power >= 0):
            ap.error(f"--coverage-power must be 'fit' or a number >= 0, got {args.coverage_power}")
    est = CINNParameterEstimator(
        without_mismatch(CINNParameterEstimator.from_pretrained(args.model).model))
    md = est.model.metadata
    params = [p for p in est.parameters if p in SUN_REFERENCE]
    rng = np.random.default_rng(args.seed)
    # --- held-out synthetic stars: a grid file (the seed grid) or a folder of v2 grid shards
    setup = est.instrument_setup
    if Path(args.grid).is_dir():
        from specutils_cinn.validation.heldout import heldout_from_grid

        held = heldout_from_grid(est, args.grid, "holdout", 1, args.seed)
        flux, stars = held.flux, held.star
        truth = {p: held.truth[:, j] for j, p in enumerate(est.parameters)}
        grid_what = f"the v2 grid shards {Path(args.grid).name}"
    else:
        from specutils_cinn.synthesis.grid_file import read_grid

        grid = read_grid(args.grid)
        stars = np.flatnonzero(grid.holdout)
        vs_lo, vs_hi = (md.ranges[est.parameters.index("vsini")] if "vsini" in est.parameters
                        else (0, 0))
        vsini = rng.uniform(vs_lo, vs_hi, stars.size)
        flux = np.empty((stars.size, md.grid.npix))
        for seg, sl in zip(md.grid.segments, md.grid.segment_slices, strict=True):
            w, f = next((w, f) for w, f in grid.segments.values()
                        if w[0] <= seg.start - 5 and w[-1] >= seg.stop + 5)
            from specutils_cinn.instruments import InstrumentSetup
            from specutils_cinn.wavelength_grid import WavelengthGrid

            one = InstrumentSetup("x", WavelengthGrid((seg,), md.grid.medium),
                                  {seg.name: setup.resolving_power[seg.name]})
            flux[:, sl] = degrade(np.asarray(w, float), np.asarray(f[stars], float), one,
                                  vsini=vsini)
        truth = {p: (vsini if p == "vsini" else np.asarray(grid.labels[p])[stars])
                 for p in est.parameters}
        grid_what = "seed grid"
    syn_specs, syn_base = {}, {}
    for snr in (50.0, 250.0):
        syn_specs[snr] = [noisy(flux[i], md.grid, snr, rng) for i in range(stars.size)]
        syn_base[snr] = summaries(est, syn_specs[snr], args.seed)
    amp_all = np.concatenate([syn_base[s][1] for s in syn_base])
    tolerance = mismatch_tolerance(amp_all, args.tolerance_quantile)
    # --- the Sun
    sun_specs, sun_names = [], []
    for name, spec in read_sun(args.sun_dir).items():
        deg = degrade_spectrum(spec, est.instrument_setup,
                               input_resolving_power=SUN_R[name]).flux.value
        for snr in args.snr:
            for _ in range(args.realizations):
                sun_specs.append(noisy(deg, md.grid, snr, rng))
                sun_names.append(f"{name} S/N {snr:g}")
    q, a, cov = summaries(est, sun_specs, args.seed)
    qp = {p: q[p] for p in params}
    if args.coverage_power == "fit":
        power = fit_mismatch_coverage_power(qp, a, cov, tolerance, SUN_REFERENCE, args.margin)
        power_rule = (f"per parameter, the power of {COVERAGE_POWERS[0]:g}, "
                      f"{COVERAGE_POWERS[1]:g}, ..., {COVERAGE_POWERS[-1]:g} whose widened 68 % "
                      "half widths of the solar spectra have the smallest mean logarithm")
    else:
        power = dict.fromkeys(params, fixed_power)
        power_rule = f"fixed at {fixed_power:g} (--coverage-power)"
    kappa = fit_mismatch_kappa(qp, a, tolerance, SUN_REFERENCE, args.margin, cov, power)
    # the widening clips each spectrum's coverage to the range of these solar spectra
    cov_range = fitted_coverage_range(cov)
    info = {"script": "scripts/calibrate_mismatch.py", "fitted_on": sorted(set(sun_names)),
            "realizations": args.realizations, "margin": args.margin,
            "rule": "smallest kappa putting the solar value inside every 95 % interval",
            "coverage_power_rule": power_rule,
            "tolerance_rule": f"quantile {args.tolerance_quantile} of fit_mismatch of the "
                              + ("held-out seed-grid stars" if grid_what == "seed grid" else
                                 f"held-out stars of {grid_what}") + " at S/N 50 and 250"}
    est_mm = CINNParameterEstimator(with_mismatch(est.model, kappa, tolerance, info,
                                                  coverage_power=power,
                                                  coverage_range=cov_range))
    q2, _, _ = summaries(est_mm, sun_specs, args.seed)
    rows_sun = []
    for p in params:
        rows_sun.append([p, f"{kappa[p]:.4g}", f"{power[p]:g}",
                         f"{np.mean(contained(q[p], SUN_REFERENCE[p])):.2f}",
                         f"{np.mean(contained(q2[p], SUN_REFERENCE[p])):.2f}",
                         f"{np.median(q[p][:, 2] - SUN_REFERENCE[p]):+.3f}",
                         f"{np.median(0.5 * (q[p][:, 3] - q[p][:, 1])):.3f}",
                         f"{np.median(0.5 * (q2[p][:, 3] - q2[p][:, 1])):.3f}"])
    # per spectrograph: the coverage, and the widths before and after
    spectrograph = np.array([n.split()[0] for n in sun_names])
    rows_spec = []
    for name in sorted(set(spectrograph)):
        sel = spectrograph == name
        for p in params:
            if kappa[p] == 0:
                continue
            w0 = np.median(0.5 * (q[p][sel, 3] - q[p][sel, 1]))
            w1 = np.median(0.5 * (q2[p][sel, 3] - q2[p][sel, 1]))
            rows_spec.append([name, f"{np.median(cov[sel]):.3f}",
                              f"{np.median(a[sel]):.4f}", p,
                              f"{np.median(q[p][sel, 2] - SUN_REFERENCE[p]):+.3f}",
                              f"{w0:.3f}", f"{w1:.3f}",
                              f"{np.mean(contained(q2[p][sel], SUN_REFERENCE[p])):.2f}"])
    rows_syn = []
    for snr in (50.0, 250.0):
        qa, amp, _ = syn_base[snr]
        qb, _, _ = summaries(est_mm, syn_specs[snr], args.seed)
        for p in params:
            t = truth[p]

            def cov(qq, t=t, p=p):
                in68 = np.mean((qq[p][:, 1] <= t) & (t <= qq[p][:, 3]))
                return in68, np.mean(contained(qq[p], t))

            c0, c1 = cov(qa), cov(qb)
            rows_syn.append([f"{snr:g}", p, f"{c0[0]:.2f} / {c0[1]:.2f}",
                             f"{c1[0]:.2f} / {c1[1]:.2f}", f"{np.nanmedian(amp):.4f}"])
    # --- NARVAL benchmarks
    rows_b = []
    if "teff" in est.parameters and Path(args.bench_dir).is_dir():
        specs = []
        for s in BENCHMARKS:
            try:
                deg = degrade_spectrum(read_narval(args.bench_dir, s), setup,
                                       input_resolving_power=NARVAL_R).flux.value
            except ValueError:
                deg = None
            specs.append(None if deg is None else noisy(deg, md.grid, 250.0, rng))
        names = [s for s, sp in zip(BENCHMARKS, specs, strict=True) if sp is not None]
        specs = [sp for sp in specs if sp is not None]
        if specs:
            qa, amp, _ = summaries(est, specs, args.seed)
            qb, _, _ = summaries(est_mm, specs, args.seed)
            for j, p in enumerate(("teff", "logg", "fe_h")):
                ref = np.array([BENCHMARKS[s][j] for s in names], float)
                rows_b.append([p, f"{np.mean(contained(qa[p], ref)):.2f}",
                               f"{np.mean(contained(qb[p], ref)):.2f}",
                               f"{np.median(np.abs(qa[p][:, 2] - ref)):.3g}", str(len(names))])
    text = rst_table(f"{md.full_name}: model-mismatch term fitted on the Sun ({len(sun_specs)} "
                 "spectra: HARPS and UVES, S/N " + ", ".join(f"{s:g}" for s in args.snr)
                 + f"), tolerance A0 = {tolerance:.4f}, coverage clipped to "
                 f"{cov_range[0]:.3f}-{cov_range[1]:.3f}",
                 ["parameter", "kappa", "coverage power", "Sun in 95 % before", "after",
                  "median offset", "median 68 % half width before", "after"], rows_sun)
    if rows_spec:
        text += "\n" + rst_table("The Sun per spectrograph (parameters with a term): median "
                                 "coverage, fit_mismatch, offset and 68 % half width",
                                 ["spectrograph", "coverage", "fit_mismatch", "parameter",
                                  "offset", "half width before", "after", "Sun in 95 % after"],
                                 rows_spec)
    text += "\n" + rst_table(f"Held-out synthetic stars ({grid_what}): 68 % / 95 % coverage",
                         ["S/N", "parameter", "without the term", "with the term",
                          "median fit_mismatch"], rows_syn)
    if rows_b:
        text += "\n" + rst_table("NARVAL benchmarks at S/N 250: reference inside the 95 % interval",
                             ["parameter", "without the term", "with the term",
                              "median abs. offset", "stars"], rows_b)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": md.full_name, "mismatch": kappa,
                                               "coverage_power": power,
                                               "coverage_range": cov_range,
                                               "tolerance": tolerance}, indent=1))
    if args.write:
        with_mismatch(est.model, kappa, tolerance, info, args.version,
                      coverage_power=power, coverage_range=cov_range).save(args.write)
        CINNModel.load(args.write)  # round trip
        print(f"saved {args.write}")


if __name__ == "__main__":
    main()
