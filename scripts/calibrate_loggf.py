"""Calibrate log gf of the lines in the 4MOST windows against an observed solar spectrum.

Astrophysical oscillator strengths (the real-stars issue): the Gaia-ESO list and the linemake
atoms outside its range keep their laboratory log gf except for lines whose change makes the
1D LTE Turbospectrum Sun (Teff 5772 K, log g 4.44, [Fe/H] 0, vmic 1.0 km/s, v sin i 1.6 km/s,
radial-tangential macroturbulence 3.5 km/s, Grevesse et al. 2007 abundances) match the observed
one. Fitted on one spectrum (``--fit``, default HARPS), the residuals are reported on the other
(UVES) as the check.

Method (each step's numbers go into the ECSV header):

1. Candidates: atomic lines in ``--range`` whose line-strength index
   (`specutils_cinn.synthesis.line_strength`) puts their equivalent width between
   ``--min-ew`` and ``--max-ew`` mA in the Sun (scaled from Fe I 6151.6 A, 50 mA). Very strong
   lines (damping wings), Li and molecules are not calibrated.
2. Candidates are split into sets at least ``2 * --half-width`` A apart
   (`separated_sets`); one Turbospectrum run per set, with every line of the set raised by
   ``--delta`` dex, gives each line's response within ``--half-width`` A of its center.
3. Both spectra are degraded to R = ``--resolving-power``; the observed one is divided by a
   smooth continuum correction (median of observed/synthetic near the synthetic continuum, in
   5 A bins) so that normalizations agree. Telluric bands, the Balmer and Ca II H&K cores, the
   Li lines and missing data are masked.
4. `fit_loggf_changes`: bounded (``--cap``) least squares with a Gaussian prior of width
   ``--prior-sigma`` dex, two passes with pixels off by more than 3 robust sigma down-weighted
   (lines missing from the list must not drag their neighbors). Repeated ``--iterations``
   times from the updated list (the responses are not linear for saturated lines).

Writes the record of every change (``--output``, ECSV, with the source lists' SHA-256) that
`specutils_cinn.synthesis.loggf.LoggfCalibration.apply` turns into a calibrated list.
Resumable: every synthesis is cached in ``--work``.

Usage::

    python scripts/calibrate_loggf.py --processes 2 \
        --output specutils_cinn/data/linelists/solar_loggf_v1.ecsv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from reference_spectra import SUN, SUN_R, read_sun, telluric_mask  # noqa: E402

from specutils_cinn.instruments import InstrumentSetup, degrade, degrade_spectrum  # noqa: E402
from specutils_cinn.synthesis import find_synthesis, synthesize  # noqa: E402
from specutils_cinn.synthesis.line_strength import IrwinAtoms, line_strength_index  # noqa: E402
from specutils_cinn.synthesis.linelists import (  # noqa: E402
    read_turbospectrum_linelist,
    write_turbospectrum_linelist,
)
from specutils_cinn.synthesis.loggf import LoggfCalibration, fit_loggf_changes, separated_sets  # noqa: E402
from specutils_cinn.synthesis.turbospectrum import solar_scale  # noqa: E402
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid  # noqa: E402

#: Masked in the fit (air A): Ca II H and K, Balmer line cores, the Li lines.
MASKED = ((3928.0, 3940.0), (3962.0, 3975.0), (4097.0, 4107.0), (4336.0, 4345.0),
          (4857.0, 4866.0), (6558.0, 6568.0), (6101.0, 6106.0), (6705.5, 6709.5))
#: Reference line for the equivalent-width scale: Fe I 6151.62 A (about 50 mA in the Sun).
REF_LINE = (26, 1, 6151.618)
REF_EW = 50.0


def sun_labels() -> dict[str, float]:
    return {"teff": SUN["teff"], "logg": SUN["logg"], "fe_h": 0.0, "vmic": SUN["vmic"],
            "a_li": 1.05}


def _synth(task):
    """One Turbospectrum run with the given log gf of the calibrated lists (cached)."""
    out, lists, loggf, window, background = task
    if Path(out).exists():
        return out
    work = Path(out).with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in lists.items():
        a = arr.copy()
        a["loggf"] = loggf[name]
        p = work / f"{name}.ts"
        write_turbospectrum_linelist(a, p, comment="calibration")
        paths.append(p)
    res = synthesize(sun_labels(), [window], line_lists=paths + list(background))
    np.savez(out, w=res.wavelength[0], f=res.flux[0].astype(np.float32))
    for p in paths:
        p.unlink()
    work.rmdir()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sun-dir", default="../shared/data/sun")
    ap.add_argument("--fit", default="HARPS", choices=["HARPS", "UVES"])
    ap.add_argument("--range", nargs=2, type=float, default=[3790.0, 6900.0])
    ap.add_argument("--step", type=float, default=0.02)
    ap.add_argument("--resolving-power", type=float, default=50000.0)
    ap.add_argument("--min-ew", type=float, default=2.0, help="mA")
    ap.add_argument("--max-ew", type=float, default=3000.0, help="mA, weak-line estimate")
    ap.add_argument("--half-width", type=float, default=0.3)
    ap.add_argument("--delta", type=float, default=0.2)
    ap.add_argument("--cap", type=float, default=0.5)
    ap.add_argument("--prior-sigma", type=float, default=0.3)
    ap.add_argument("--pixel-sigma", type=float, default=0.01)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--start", default=None,
                    help="a previous calibration (ECSV) to continue from")
    ap.add_argument("--work", default="work/loggf")
    ap.add_argument("--output", default="specutils_cinn/data/linelists/solar_loggf_v1.ecsv")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    install = find_synthesis()
    sources = {"ges": Path(install.ges_linelist),
               "atoms_outside_ges": Path(install.extended_linelists["atoms_outside_ges"])}
    background = [install.hlinedata] + [
        p for fam, p in install.extended_linelists.items()
        if fam not in ("atoms_outside_ges", "sih")]
    lo, hi = args.range
    full = {k: read_turbospectrum_linelist(p) for k, p in sources.items()}
    keep = {k: np.flatnonzero((a["wavelength"] > lo - 3) & (a["wavelength"] < hi + 3))
            for k, a in full.items()}
    lists = {k: full[k][keep[k]] for k in full}
    # 1. candidates from the line-strength index
    atoms = IrwinAtoms(Path(install.data_dir) / "IRWIN_atoms_v07.3.dat")
    solar = solar_scale(install)
    strength = {k: line_strength_index(a, teff=SUN["teff"], logg=SUN["logg"], m_h=0.0,
                                       abundances=solar, atoms=atoms) for k, a in lists.items()}
    g = lists["ges"]
    ref = np.flatnonzero((g["element"] == REF_LINE[0]) & (g["ion"] == REF_LINE[1])
                         & (np.abs(g["wavelength"] - REF_LINE[2]) < 0.01))[0]
    s_ref = strength["ges"][ref]
    s_min, s_max = s_ref + np.log10(args.min_ew / REF_EW), s_ref + np.log10(args.max_ew / REF_EW)
    cand = []  # (list name, index into lists[name])
    for k, a in lists.items():
        s = strength[k]
        sel = (np.isfinite(s) & (s >= s_min) & (s <= s_max) & (a["element"] != 3)
               & (a["wavelength"] > lo) & (a["wavelength"] < hi))
        cand += [(k, int(i)) for i in np.flatnonzero(sel)]
    cw = np.array([lists[k]["wavelength"][i] for k, i in cand])
    sets = separated_sets(cw, 2 * args.half_width)
    print(f"{len(cand)} candidate lines in {len(sets)} sets "
          f"(index {s_min:.2f}..{s_max:.2f}; Fe I 6151.6: {s_ref:.2f})", flush=True)
    # the observed spectra on the fit grid
    seg = GridSegment("sun", lo + 5.0, hi - 5.0, args.step)
    grid = WavelengthGrid((seg,), "air")
    setup = InstrumentSetup("sun", grid, args.resolving_power)
    wave = grid.wavelength.value
    sun = read_sun(args.sun_dir)
    observed = {name: degrade_spectrum(s, setup, input_resolving_power=SUN_R[name]).flux.value
                for name, s in sun.items()}
    base_mask = ~telluric_mask(wave)
    for a, b in MASKED:
        base_mask &= ~((wave >= a) & (wave <= b))

    def on_grid(path):
        with np.load(path) as d:
            return np.asarray(degrade(d["w"], d["f"].astype(np.float64), setup,
                                      vsini=SUN["vsini"], vmacro=SUN["vmacro"]))

    def matched(obs, model):
        """Observed divided by a smooth correction so its continuum agrees with the model's."""
        ok = np.isfinite(obs) & base_mask & (model > 0.97)
        edges = np.arange(wave[0], wave[-1] + 5.0, 5.0)
        center, ratio = [], []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            s = ok & (wave >= a) & (wave < b)
            if s.sum() >= 10:
                center.append(0.5 * (a + b))
                ratio.append(np.median(obs[s] / model[s]))
        return obs / np.interp(wave, center, ratio)

    def stats(model, name):
        o = matched(observed[name], model)
        ok = np.isfinite(o) & base_mask
        r = o[ok] - model[ok]
        return {"rms": float(np.sqrt(np.mean(r**2))), "p99": float(np.percentile(np.abs(r), 99)),
                "pixels": int(ok.sum())}

    delta = {k: np.zeros(len(a)) for k, a in lists.items()}
    if args.start:  # continue from an earlier calibration of the same source lists
        prev = LoggfCalibration.read(args.start)
        for row in prev.changes:
            k = str(row["list"])
            pos = np.searchsorted(keep[k], int(row["record"]))
            if pos < keep[k].size and keep[k][pos] == int(row["record"]):
                delta[k][pos] = float(row["delta"])
    cand_list = np.array([k for k, _ in cand])
    cand_idx = np.array([i for _, i in cand])
    history = []
    window = (lo, hi, args.step)
    for it in range(args.iterations + 1):
        loggf = {k: lists[k]["loggf"] + delta[k] for k in lists}
        tasks = [(str(work / f"it{it}_base.npz"), lists, loggf, window, background)]
        if it < args.iterations:
            for j, members in enumerate(sets):
                lg = {k: v.copy() for k, v in loggf.items()}
                for m in members:
                    lg[cand_list[m]][cand_idx[m]] += args.delta
                tasks.append((str(work / f"it{it}_set{j:02d}.npz"), lists, lg, window,
                              background))
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.processes) as pool:
            paths = list(pool.map(_synth, tasks))
        print(f"iteration {it}: {len(tasks)} syntheses in {time.perf_counter() - t0:.0f} s",
              flush=True)
        base = on_grid(paths[0])
        rec = {"iteration": it, **{f"{n}_{k}": v for n in observed
                                   for k, v in stats(base, n).items()}}
        history.append(rec)
        print(json.dumps(rec), flush=True)
        if it == args.iterations:
            break
        rows, cols, vals = [], [], []
        for j, members in enumerate(sets):
            d = (on_grid(paths[1 + j]) - base) / args.delta
            for m in members:
                w0 = lists[cand_list[m]]["wavelength"][cand_idx[m]]
                a = np.searchsorted(wave, w0 - args.half_width)
                b = np.searchsorted(wave, w0 + args.half_width)
                rows.append(np.arange(a, b))
                cols.append(np.full(b - a, m))
                vals.append(d[a:b])
        r = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(wave.size, len(cand)))
        obs = matched(observed[args.fit], base)
        ok = np.isfinite(obs) & base_mask
        y = np.where(ok, obs - base, 0.0)
        total = np.array([delta[k][i] for k, i in cand])
        lower, upper = -args.cap - total, args.cap - total
        wts = ok.astype(float)
        for _ in range(2):
            step = fit_loggf_changes(y, r, pixel_sigma=args.pixel_sigma,
                                     prior_sigma=args.prior_sigma, lower=lower, upper=upper,
                                     weights=wts)
            res = y - r @ step
            sig = 1.4826 * np.median(np.abs(res[ok]))
            wts = np.where(ok, np.minimum(1.0, (3 * sig / np.maximum(np.abs(res), 1e-12)) ** 2),
                           0.0)
        for m, (k, i) in enumerate(cand):
            delta[k][i] += step[m]
        at_cap = int(np.sum(np.abs(total + step) > args.cap - 1e-3))
        print(f"iteration {it}: |step| median {np.median(np.abs(step)):.3f}, "
              f"max {np.max(np.abs(step)):.3f}, at cap {at_cap}", flush=True)
    # the record
    from astropy.table import Table

    rows_out = []
    for k, i in cand:
        dl = float(np.round(delta[k][i], 3))
        if dl == 0.0:
            continue
        a = lists[k][i]
        rows_out.append((k, int(keep[k][i]), int(a["element"]), int(a["ion"]),
                         float(a["wavelength"]), float(a["chi"]), float(a["loggf"]), dl,
                         float(strength[k][i] - s_ref + np.log10(REF_EW))))
    t = Table(rows=rows_out, names=("list", "record", "element", "ion", "wavelength", "chi",
                                    "loggf_lab", "delta", "log_ew_estimate"))
    t["wavelength"].unit = "Angstrom"
    t["chi"].unit = "eV"
    t["wavelength"].info.format = ".3f"
    t["loggf_lab"].info.format = ".3f"
    t["delta"].info.format = ".3f"
    t["log_ew_estimate"].info.format = ".2f"
    meta = {
        "description": "solar log gf calibration of the Gaia-ESO and linemake atomic lines in "
                       "the 4MOST windows (scripts/calibrate_loggf.py)",
        "fitted_on": args.fit, "checked_on": [n for n in observed if n != args.fit],
        "sun": {k: SUN[k] for k in ("teff", "logg", "fe_h", "vmic", "vsini", "vmacro")},
        "physics": "Turbospectrum v20.1, 1D LTE, MARCS, Grevesse et al. 2007 solar abundances",
        "settings": {k: getattr(args, k) for k in (
            "range", "step", "resolving_power", "min_ew", "max_ew", "half_width", "delta", "cap",
            "prior_sigma", "pixel_sigma", "iterations")},
        "candidates": len(cand), "sets": len(sets), "changed": len(t),
        "history": history,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    cal = LoggfCalibration.from_changes(t, sources, meta)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    cal.write(args.output)
    print(f"wrote {args.output}: {len(t)} lines changed; history {json.dumps(history)}")


if __name__ == "__main__":
    main()
