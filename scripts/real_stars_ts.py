"""Direct fits of the Sun with Turbospectrum spectra: is the solar [Fe/H] offset physics or network?

Reads the synthetic Suns written by ``scripts/sun_synthesis_scan.py`` ([Fe/H] -0.3..+0.1 at
vmic 1.0 km/s, and vmic 0.7/1.3 at [Fe/H] 0 and -0.2), degrades them and the observed solar
spectra (HARPS, UVES) to the 4MOST HR arms at 0.1 A, and fits [Fe/H] (vmic fixed at 1.0, and
vmic free) by least squares, Teff and log g at the solar values. Varied one at a time against a
reference set-up: the line list (Gaia-ESO only, as the v1 models, or with the extended lists),
the arm, the broadening (solar v sin i 1.6 km/s and radial-tangential macroturbulence 3.5 km/s,
or rotation only as the v1 models assume), the continuum (the estimator's pseudo-continuum on
both, or the synthetic spectrum matched to the observed one by a polynomial), and the
resolving power of the synthetic spectra (20,000 +- 10 %). Writes an RST table.

Usage::

    python scripts/sun_synthesis_scan.py --cache work/sun_scan
    python scripts/real_stars_ts.py --cache work/sun_scan --output docs/real_stars/sun_ts_fits.rst
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from reference_spectra import SUN, SUN_R, read_sun, rst_table, telluric_mask  # noqa: E402
from sun_synthesis_scan import EXTRA, FE_H, scan_path  # noqa: E402

from specutils_cinn.inputs.normalization import normalize_continuum  # noqa: E402
from specutils_cinn.instruments import InstrumentSetup, degrade, degrade_spectrum, fourmost_setup  # noqa: E402
from specutils_cinn.wavelength_grid import WavelengthGrid  # noqa: E402

#: Li lines left out of every fit (as the models' fit check does).
EXCLUDE = ((6102.1, 6105.1), (6706.3, 6709.3))
FE_FINE = np.round(np.arange(-0.45, 0.251, 0.005), 3)
VMIC_FINE = np.round(np.arange(0.5, 1.801, 0.025), 3)


def load_scan(cache: Path, lists: str, step: float = 0.02):
    """{(fe_h, vmic): (list of window wavelengths, list of window fluxes)}."""
    out = {}
    for fe_h, vmic in [(f, 1.0) for f in FE_H] + list(EXTRA):
        p = scan_path(cache, lists, fe_h, vmic, step)
        if not p.exists():
            raise SystemExit(f"missing {p}: run scripts/sun_synthesis_scan.py first")
        with np.load(p) as d:
            n = len(d["names"])
            out[(fe_h, vmic)] = ([d[f"w{i}"] for i in range(n)], [d[f"f{i}"] for i in range(n)])
    return out


def degrade_scan(scan, setup: InstrumentSetup, vsini: float, vmacro: float):
    """Each synthetic spectrum on the setup's grid (segments cut from the matching window)."""
    out = {}
    for key, (waves, fluxes) in scan.items():
        parts = []
        for seg in setup.grid.segments:
            i = next(j for j, w in enumerate(waves) if w[0] < seg.start and w[-1] > seg.stop)
            one = InstrumentSetup(setup.name, WavelengthGrid((seg,), setup.grid.medium),
                                  {seg.name: setup.resolving_power[seg.name]})
            parts.append(np.asarray(degrade(waves[i], fluxes[i].astype(np.float64), one,
                                            vsini=vsini, vmacro=vmacro)))
        out[key] = np.concatenate(parts)
    return out


def model_cube(deg):
    """Model flux on a fine ([Fe/H], vmic) grid: linear in [Fe/H] between the scan nodes,
    quadratic in vmic through 0.7/1.0/1.3 with the vmic curvature interpolated in [Fe/H]."""
    base = np.stack([deg[(f, 1.0)] for f in FE_H])  # (n_fe, npix)
    f_nodes = np.array(FE_H)

    b = np.empty((FE_FINE.size, base.shape[1]))
    for p0 in range(0, base.shape[1], 4096):
        sl = slice(p0, p0 + 4096)
        for j, x in enumerate(FE_FINE):
            k = int(np.clip(np.searchsorted(f_nodes, x) - 1, 0, f_nodes.size - 2))
            t = (x - f_nodes[k]) / (f_nodes[k + 1] - f_nodes[k])
            b[j, sl] = (1 - t) * base[k, sl] + t * base[k + 1, sl]
    # vmic terms from the two [Fe/H] points with vmic variations (linear in [Fe/H] between)
    d1, d2 = {}, {}
    for fe in (0.0, -0.2):
        lo, mid, hi = deg[(fe, 0.7)], deg[(fe, 1.0)], deg[(fe, 1.3)]
        d1[fe] = (hi - lo) / 0.6
        d2[fe] = (hi - 2 * mid + lo) / 0.09
    return b, d1, d2


def best_fit(obs, ok, b, d1, d2, free_vmic: bool):
    """(best [Fe/H], best vmic, chi2 curve min) by brute force on the fine grid."""
    t = np.clip((FE_FINE - (-0.2)) / 0.2, -1.5, 2.5)[:, None]
    best = (np.nan, np.nan, np.inf)
    for v in (VMIC_FINE if free_vmic else np.array([1.0])):
        dv = v - 1.0
        lin = (1 - t) * d1[-0.2][ok] + t * d1[0.0][ok]
        quad = (1 - t) * d2[-0.2][ok] + t * d2[0.0][ok]
        m = b[:, ok] + dv * lin + 0.5 * dv**2 * quad
        chi = np.sum((obs[ok] - m) ** 2, axis=1)
        j = int(np.argmin(chi))
        if chi[j] < best[2]:
            best = (float(FE_FINE[j]), float(v), float(chi[j]))
    return best


def normalize(flux: np.ndarray, grid: WavelengthGrid) -> np.ndarray:
    """The estimator's pseudo-continuum normalization (degree 3 per segment)."""
    f, _, v = normalize_continuum(flux[None], None, np.isfinite(flux)[None], grid)
    return np.where(v[0], f[0], np.nan)


def match(obs: np.ndarray, model: np.ndarray, grid: WavelengthGrid, ok: np.ndarray):
    """Observed divided by a cubic per segment fitted to obs/model: continuum matched to model."""
    from numpy.polynomial import legendre

    out = obs.copy()
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        x = np.linspace(-1, 1, seg.npix)
        use = ok[sl]
        if use.sum() < 50:
            continue
        phi = legendre.legvander(x, 3)
        coef, *_ = np.linalg.lstsq(phi[use] * model[sl][use, None], obs[sl][use], rcond=None)
        out[sl] = obs[sl] / (phi @ coef)
    return out


def run(args) -> list[list[str]]:
    sun = read_sun(args.sun_dir)
    rows = []
    base = {"lists": "ges", "arms": ("HG", "HR"), "broadening": "solar", "continuum": "pipeline",
            "r_model": 20000.0}
    variants = [("reference (v1 models' physics)", {}),
                ("extended line lists", {"lists": "extended"}),
                ("HG arm only", {"arms": ("HG",)}), ("HR arm only", {"arms": ("HR",)}),
                ("HB arm only, extended lists", {"arms": ("HB",), "lists": "extended"}),
                ("rotation only (vsini 4 km/s, no macroturbulence)", {"broadening": "rotation"}),
                ("continuum matched to the model", {"continuum": "match"}),
                ("synthetic R 18,000", {"r_model": 18000.0}),
                ("synthetic R 22,000", {"r_model": 22000.0})]
    names = ["ges", "extended"]
    if args.calibrated:  # the same physics with the solar-calibrated log gf
        variants.insert(2, ("extended lists, solar-calibrated log gf",
                            {"lists": "extended+cal"}))
        variants.append(("HB arm only, extended lists, solar-calibrated log gf",
                         {"arms": ("HB",), "lists": "extended+cal"}))
        names.append("extended+cal")
    scans = {k: load_scan(Path(args.cache), k) for k in names}
    cubes = {}
    for name, change in variants:
        cfg = {**base, **change}
        full = fourmost_setup("hr", step=0.1)
        segs = tuple(s for s in full.grid.segments if s.name in cfg["arms"])
        grid = WavelengthGrid(segs, "air")
        obs_setup = InstrumentSetup("HR", grid, 20000.0)
        mod_setup = InstrumentSetup("HR", grid, cfg["r_model"])
        vs, vm = ((SUN["vsini"], SUN["vmacro"]) if cfg["broadening"] == "solar" else (4.0, 0.0))
        key = (cfg["lists"], cfg["arms"], vs, vm, cfg["r_model"])
        if key not in cubes:
            deg = degrade_scan(scans[cfg["lists"]], mod_setup, vs, vm)
            deg = {k: normalize(v, grid) for k, v in deg.items()}
            cubes[key] = (deg, model_cube(deg))
        deg, (b, d1, d2) = cubes[key]
        wave = grid.wavelength.value
        for obs_name, spec in sun.items():
            try:
                obs = degrade_spectrum(spec, obs_setup, input_resolving_power=SUN_R[obs_name])
            except ValueError:  # the spectrum does not cover these arms (UVES and HB)
                continue
            o = normalize(obs.flux.value, grid)
            ok = np.isfinite(o) & ~telluric_mask(wave)
            for lo, hi in EXCLUDE:
                ok &= ~((wave >= lo) & (wave <= hi))
            if ok.sum() < 500:
                continue
            if cfg["continuum"] == "match":
                o = match(o, deg[(0.0, 1.0)], grid, ok)
            fe1, _, _ = best_fit(o, ok, b, d1, d2, free_vmic=False)
            fe2, v2, _ = best_fit(o, ok, b, d1, d2, free_vmic=True)
            res = o[ok] - deg[(0.0, 1.0)][ok]
            rows.append([name, obs_name, f"{fe1:+.3f}", f"{fe2:+.3f}", f"{v2:.2f}",
                         f"{np.sqrt(np.mean(res**2)):.4f}", str(int(ok.sum()))])
            print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="work/sun_scan")
    ap.add_argument("--sun-dir", default="../shared/data/sun")
    ap.add_argument("--output", default=None)
    ap.add_argument("--calibrated", action="store_true",
                    help="also fit the scan made with --loggf ... --tag cal --lists extended")
    args = ap.parse_args(argv)
    rows = run(args)
    head = ["set-up", "spectrum", "[Fe/H] (vmic 1.0)", "[Fe/H] (vmic free)", "vmic",
            "RMS at [Fe/H] 0", "pixels"]
    text = rst_table("Turbospectrum fits of the Sun at 4MOST HR (Teff 5772 K, log g 4.44)",
                     head, rows)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
