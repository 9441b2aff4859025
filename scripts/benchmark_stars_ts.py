"""Direct Turbospectrum fits of [Fe/H] and vmic for the 13 NARVAL Gaia FGK benchmark stars.

The check that a physics fix generalizes beyond the Sun (the real-stars issue): Teff and
log g are fixed at the reference values, [Fe/H] and vmic are fitted by least squares over the
two NARVAL windows (5645-5875 A and 6480-6740 A, inside the 4MOST HG and HR arms) after both
the observed and the synthetic spectra are degraded to the 4MOST HR resolving power (20,000,
0.1 A pixels, the estimator's pseudo-continuum on both), with the line broadening (v sin i)
fitted too. Syntheses: [Fe/H] at the reference value + (-0.45, -0.3, -0.15, 0, +0.15) with
vmic from a simple Teff/log g relation (below), and vmic +-0.4 km/s at reference - 0.15;
[alpha/Fe] (O, Mg, Si, Ca, Ti) +0.4 at [Fe/H] <= -1, falling linearly to 0 at [Fe/H] 0.
``--loggf`` (a calibration ECSV) uses the calibrated line data instead of the laboratory
values. Syntheses are cached in ``--cache``.

Usage::

    python scripts/benchmark_stars_ts.py --tag lab --output docs/real_stars/benchmarks_lab.rst
    python scripts/benchmark_stars_ts.py --tag solar-loggf \
        --loggf specutils_cinn/data/linelists/solar_loggf_v1.ecsv
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from reference_spectra import BENCHMARKS, NARVAL_R, read_narval, rst_table, telluric_mask  # noqa: E402
from renamed_options import add_renamed_option  # noqa: E402

from specutils_cinn.inputs.normalization import normalize_continuum  # noqa: E402
from specutils_cinn.instruments import InstrumentSetup, degrade, degrade_spectrum  # noqa: E402
from specutils_cinn.synthesis import find_synthesis, synthesize  # noqa: E402
from specutils_cinn.synthesis.loggf import calibrated_line_lists  # noqa: E402
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid  # noqa: E402

WINDOWS = ((5640.0, 5880.0), (6475.0, 6745.0))
FIT_SEGMENTS = (("G", 5650.0, 5870.0), ("R", 6485.0, 6735.0))
FE_OFFSETS = (-0.45, -0.3, -0.15, 0.0, 0.15)
VMIC_STEP = 0.4
VSINI = (1.0, 3.0, 5.0, 7.0, 10.0, 14.0)
EXCLUDE = ((6705.5, 6709.5),)


def vmic_relation(teff: float, logg: float) -> float:
    """Starting microturbulence (km/s): 1.0 at 5500 K / 4.4, rising with Teff and to giants."""
    return float(np.clip(1.0 + 4.0e-4 * (teff - 5500.0) - 0.25 * (logg - 4.4), 0.6, 2.2))


def alpha_fe(fe_h: float) -> float:
    """[alpha/Fe] of the syntheses: +0.4 at [Fe/H] <= -1, 0 at [Fe/H] >= 0."""
    return float(np.clip(-0.4 * fe_h, 0.0, 0.4))


def labels(star: str, fe_h: float, vmic: float) -> dict[str, float]:
    teff, logg, _ = BENCHMARKS[star]
    a = alpha_fe(fe_h)
    return {"teff": float(teff), "logg": float(logg), "fe_h": fe_h, "vmic": vmic,
            "o_fe": a, "mg_fe": a, "si_fe": a, "ca_fe": a, "ti_fe": a, "a_li": 1.0}


def nodes(star: str) -> list[tuple[float, float]]:
    teff, logg, fe = BENCHMARKS[star]
    v0 = vmic_relation(teff, logg)
    pts = [(round(fe + d, 3), v0) for d in FE_OFFSETS]
    pts += [(round(fe - 0.15, 3), round(v0 - VMIC_STEP, 3)),
            (round(fe - 0.15, 3), round(v0 + VMIC_STEP, 3))]
    return pts


def _one(task):
    star, fe_h, vmic, out, lists = task
    if Path(out).exists():
        return out
    res = synthesize(labels(star, fe_h, vmic), [(lo, hi, 0.02) for lo, hi in WINDOWS],
                     line_lists=lists)
    np.savez(out, **{f"w{i}": w for i, w in enumerate(res.wavelength)},
             **{f"f{i}": f.astype(np.float32) for i, f in enumerate(res.flux)})
    return out


def fit_star(star: str, cache: Path, tag: str) -> dict[str, float]:
    teff, logg, fe_ref = BENCHMARKS[star]
    segs = tuple(GridSegment(n, a, b, 0.1) for n, a, b in FIT_SEGMENTS)
    grid = WavelengthGrid(segs, "air")
    setup = InstrumentSetup("HR", grid, 20000.0)
    wave = grid.wavelength.value

    def norm(f):
        fn, _, v = normalize_continuum(f[None], None, np.isfinite(f)[None], grid)
        return np.where(v[0], fn[0], np.nan)

    obs = norm(degrade_spectrum(read_narval(args_bench_dir, star), setup,
                                input_resolving_power=NARVAL_R).flux.value)
    ok = np.isfinite(obs) & ~telluric_mask(wave)
    for a, b in EXCLUDE:
        ok &= ~((wave >= a) & (wave <= b))
    pts = nodes(star)
    best = (np.inf, None)
    for vs in VSINI:
        deg = {}
        for fe, v in pts:
            with np.load(cache / f"{star}_{tag}_feh{fe:+.3f}_vmic{v:.3f}.npz") as d:
                parts = []
                for seg in segs:
                    i = next(j for j in range(2) if d[f"w{j}"][0] < seg.start < d[f"w{j}"][-1])
                    one = InstrumentSetup("HR", WavelengthGrid((seg,), "air"), 20000.0)
                    parts.append(np.asarray(degrade(d[f"w{i}"], d[f"f{i}"].astype(float), one,
                                                    vsini=vs)))
                deg[(fe, v)] = norm(np.concatenate(parts))
        fe_nodes = np.array([p[0] for p in pts[:5]])
        v0 = pts[0][1]
        mid = (pts[5][0], v0)
        dv1 = (deg[pts[6]] - deg[pts[5]]) / (2 * VMIC_STEP)
        dv2 = (deg[pts[6]] - 2 * deg[mid] + deg[pts[5]]) / VMIC_STEP**2
        base = np.stack([deg[p] for p in pts[:5]])
        for fe in np.arange(fe_nodes[0], fe_nodes[-1] + 1e-9, 0.005):
            k = int(np.clip(np.searchsorted(fe_nodes, fe) - 1, 0, 3))
            t = (fe - fe_nodes[k]) / (fe_nodes[k + 1] - fe_nodes[k])
            m0 = (1 - t) * base[k] + t * base[k + 1]
            for dv in np.arange(-VMIC_STEP, VMIC_STEP + 1e-9, 0.025):
                m = m0 + dv * dv1 + 0.5 * dv**2 * dv2
                use = ok & np.isfinite(m)
                c = float(np.mean((obs[use] - m[use]) ** 2))
                if c < best[0]:
                    best = (c, {"fe_h": float(fe), "vmic": float(v0 + dv), "vsini": vs,
                                "rms": float(np.sqrt(c))})
    out = best[1]
    out["d_fe_h"] = out["fe_h"] - fe_ref
    out["at_edge"] = bool(abs(out["fe_h"] - fe_nodes[0]) < 1e-6
                          or abs(out["fe_h"] - fe_nodes[-1]) < 1e-6)
    return out


def main(argv=None) -> None:
    global args_bench_dir
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench-dir", default="../shared/data/benchmarks_narval")
    ap.add_argument("--cache", default="work/benchmarks")
    ap.add_argument("--tag", default="lab")
    ap.add_argument("--loggf", default=None)
    ap.add_argument("--stars", nargs="*", default=list(BENCHMARKS))
    ap.add_argument("--processes", type=int, default=2)
    add_renamed_option(ap, "--synthesize-only", "--synthesise-only", action="store_true",
                       help="only run (and cache) the syntheses, no fits")
    ap.add_argument("--output", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args_bench_dir = args.bench_dir
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    install = find_synthesis()
    if args.loggf:
        lists = calibrated_line_lists(install, args.loggf, cache / f"lists_{args.tag}")
    else:
        lists = [p for p in install.default_line_lists
                 if Path(p) != Path(install.extended_linelists.get("sih", ""))]
    tasks = [(s, fe, v, str(cache / f"{s}_{args.tag}_feh{fe:+.3f}_vmic{v:.3f}.npz"), lists)
             for s in args.stars for fe, v in nodes(s)]
    with ProcessPoolExecutor(args.processes) as pool:
        for i, out in enumerate(pool.map(_one, tasks)):
            print(f"{i + 1}/{len(tasks)} {Path(out).name}", flush=True)
    if args.synthesize_only:
        return
    results = {s: fit_star(s, cache, args.tag) for s in args.stars}
    d = np.array([r["d_fe_h"] for r in results.values()])
    summary = {"median_d_fe_h": float(np.median(d)), "median_abs_d_fe_h": float(np.median(
        np.abs(d))), "rms_d_fe_h": float(np.sqrt(np.mean(d**2)))}
    rows = []
    for s, r in results.items():
        teff, logg, fe = BENCHMARKS[s]
        rows.append([s, f"{teff} / {logg:.2f}", f"{fe:+.2f}", f"{r['fe_h']:+.3f}"
                     + (" (edge)" if r["at_edge"] else ""), f"{r['d_fe_h']:+.3f}",
                     f"{r['vmic']:.2f}", f"{r['vsini']:g}", f"{r['rms']:.4f}"])
    head = ["star", "Teff / log g", "[Fe/H] ref.", "[Fe/H] fit", "difference", "vmic",
            "v sin i", "RMS"]
    text = rst_table(f"NARVAL benchmarks, Turbospectrum fit ({args.tag}): median difference "
                     f"{summary['median_d_fe_h']:+.3f}, median absolute difference "
                     f"{summary['median_abs_d_fe_h']:.3f} dex", head, rows)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "stars": results}, indent=1))


if __name__ == "__main__":
    main()
