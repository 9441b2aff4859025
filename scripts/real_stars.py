"""The Sun through the bundled models: the network against direct emulator fits.

For each model (``--models``), observed solar spectrum (HARPS, UVES) and S/N (50 and 250 per A):
the spectrum is degraded to the model's setup with
`specutils_cinn.instruments.degrade_spectrum`, photon noise is added (``--realizations``
noise draws), and

- the cINN gives posterior medians and 68 %/95 % intervals (calibrated, as `predict` returns);
- a direct chi-square fit with the model's own spectrum emulator (the same continuum-matched
  chi-square as the fit check, `specutils_cinn.fit_check.fit_statistics`) gives [Fe/H] with
  Teff and log g fixed at the solar values (vmic and v sin i free), and a free fit of Teff,
  log g, [Fe/H], vmic and v sin i (other labels solar).
- ``--per-arm``: the fixed-Teff/log g emulator fit on each arm (grid segment) alone, to see
  which arm pulls [Fe/H] where.

If the emulator's best fit sits where the network does, the network reproduces its training
physics and the offset is in the physics; if not, the network is off. Writes RST tables.

Usage::

    python scripts/real_stars.py --output docs/real_stars/sun_models.rst
    python scripts/real_stars.py --models candidates/4most-hr-lte-v2.1.0 --per-arm \
        --output docs/real_stars/sun_models_hr_v2.rst
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty
from scipy.optimize import minimize
from specutils import Spectrum

sys.path.insert(0, str(Path(__file__).parent))
from reference_spectra import SUN, SUN_R, read_sun, rst_table  # noqa: E402
from renamed_options import add_renamed_option  # noqa: E402

from specutils_cinn import CINNParameterEstimator  # noqa: E402
from specutils_cinn.fit_check import fit_statistics  # noqa: E402
from specutils_cinn.inputs import prepare_spectra  # noqa: E402
from specutils_cinn.instruments import degrade_spectrum, snr_per_pixel  # noqa: E402
from specutils_cinn.results import quantile_column_name  # noqa: E402

SHOW = ("teff", "logg", "fe_h", "vmic", "vsini")


def noisy(flux: np.ndarray, grid, snr: float, rng: np.random.Generator) -> Spectrum:
    """Photon noise at ``snr`` per A relative to each segment's continuum (95th percentile)."""
    sigma = np.full_like(flux, np.nan)
    for sl in grid.segment_slices:
        f = flux[sl]
        ok = np.isfinite(f)
        if not ok.any():
            continue
        cont = np.percentile(f[ok], 95)
        sigma[sl] = np.sqrt(cont * np.clip(f, 1e-3 * cont, None)) / snr_per_pixel(
            snr, grid.pixel_width[sl])
    out = flux + np.nan_to_num(sigma) * rng.standard_normal(flux.size)
    return Spectrum(flux=out * u.one, spectral_axis=grid.wavelength,
                    uncertainty=StdDevUncertainty(sigma))


class EmulatorFit:
    """Continuum-matched chi-square of one prepared spectrum against the model's emulator."""

    def __init__(self, est: CINNParameterEstimator, spectrum: Spectrum):
        md = est.model.metadata
        self.est = est
        self.fe = est.model.emulator
        self.names = est.parameters
        # as the network sees it: the model's normalization and its mask of poorly modeled
        # pixels
        self.prep = prepare_spectra(spectrum, md.grid, pixel_mask=md.pixel_mask,
                                    **md.normalization.prepare_arguments(normalize=True))
        self.defaults = {n: 0.0 for n in self.names}
        self.defaults.update({"vmic": 1.0, "vsini": 2.0, "li_fe": 0.0})

    def chi2(self, rows: list[dict[str, float]]) -> np.ndarray:
        vals = np.array([[r.get(n, self.defaults[n]) for n in self.names] for r in rows])
        p = self.prep
        n = len(rows)
        st = fit_statistics(self.fe, self.names, vals, np.repeat(p.flux, n, 0),
                            np.repeat(p.sigma, n, 0), np.repeat(p.valid, n, 0),
                            normalized=np.repeat(p.normalized, n, 0))
        return st.chi2

    def fit(self, free: tuple[str, ...], fixed: dict[str, float]) -> dict[str, float]:
        start = {"teff": SUN["teff"], "logg": SUN["logg"], "fe_h": -0.1, "vmic": 1.0,
                 "vsini": 3.0}
        scale = {"teff": 100.0, "logg": 0.2, "fe_h": 0.1, "vmic": 0.3, "vsini": 2.0}

        def f(x):
            row = {**fixed, **{k: start[k] + v * scale[k] for k, v in zip(free, x, strict=True)}}
            if "vsini" in row and row["vsini"] < 0:
                return 1e9
            c = self.chi2([row])[0]
            return float(c) if np.isfinite(c) else 1e9

        best = None
        for x0 in (np.zeros(len(free)), np.full(len(free), 0.5)):
            r = minimize(f, x0, method="Nelder-Mead",
                         options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 2000})
            if best is None or r.fun < best.fun:
                best = r
        return {**fixed, **{k: start[k] + v * scale[k] for k, v in zip(free, best.x, strict=True)}}


def per_arm_fits(ef: EmulatorFit, grid) -> list[tuple[str, int, dict[str, float], float]]:
    """[Fe/H], vmic and v sin i fitted with Teff and log g solar on each grid segment alone.

    Returns (segment, pixels used, best fit, chi2) per segment with at least 100 valid pixels.
    """
    valid = ef.prep.valid.copy()
    out = []
    try:
        for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
            only = np.zeros_like(valid)
            only[..., sl] = valid[..., sl]
            if only.sum() < 100:
                continue
            ef.prep.valid[...] = only
            best = ef.fit(("fe_h", "vmic", "vsini"), {"teff": SUN["teff"], "logg": SUN["logg"]})
            out.append((seg.name, int(only.sum()), best, float(ef.chi2([best])[0])))
    finally:
        ef.prep.valid[...] = valid
    return out


def run(args) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    sun = read_sun(args.sun_dir)
    cinn_rows, fit_rows, arm_rows = [], [], []
    for model in args.models:
        est = CINNParameterEstimator.from_pretrained(model)
        setup = est.instrument_setup
        grid = est.model.metadata.grid
        for name, spec in sun.items():
            deg = degrade_spectrum(spec, setup, input_resolving_power=SUN_R[name]).flux.value
            cov = float(np.mean(np.isfinite(deg)))
            for snr in args.snr:
                rng = np.random.default_rng(args.seed)
                specs = [noisy(deg, grid, snr, rng) for _ in range(args.realizations)]
                t = est.predict(specs, n_samples=args.draws, seed=args.seed,
                                quantiles=(0.025, 0.16, 0.5, 0.84, 0.975))
                row = [model, name, f"{snr:g}", f"{cov:.2f}"]
                for p in SHOW:
                    q = np.array([np.asarray(t[quantile_column_name(p, k)].value)
                                  for k in (0.025, 0.16, 0.5, 0.84, 0.975)])
                    q = np.nanmedian(q, axis=1)  # median over noise realizations
                    ref = SUN.get(p)
                    inside = "" if p == "vmic" or ref is None or p == "vsini" else (
                        " *" if not (q[0] <= ref <= q[4]) else "")
                    row.append(f"{q[2]:.{0 if p == 'teff' else 2}f} "
                               f"[{q[1]:.{0 if p == 'teff' else 2}f}, "
                               f"{q[3]:.{0 if p == 'teff' else 2}f}]{inside}")
                row.append(str(int(np.median(np.asarray(t["flags"])))))
                cinn_rows.append(row)
                print(" | ".join(row), flush=True)
                # direct emulator fits on the first noise realization
                ef = EmulatorFit(est, specs[0])
                fixed = ef.fit(("fe_h", "vmic", "vsini"), {"teff": SUN["teff"],
                                                           "logg": SUN["logg"]})
                free = ef.fit(("teff", "logg", "fe_h", "vmic", "vsini"), {})
                med = {p: float(np.nanmedian(np.asarray(t[p].value))) for p in SHOW}
                fit_rows.append([model, name, f"{snr:g}", f"{med['fe_h']:+.2f}",
                                 f"{fixed['fe_h']:+.2f}", f"{fixed['vmic']:.2f}",
                                 f"{fixed['vsini']:.1f}",
                                 f"{med['teff']:.0f} / {med['logg']:.2f} / {med['fe_h']:+.2f}",
                                 f"{free['teff']:.0f} / {free['logg']:.2f} / "
                                 f"{free['fe_h']:+.2f}"])
                print(" | ".join(fit_rows[-1]), flush=True)
                if args.per_arm:
                    for seg, npx, best, chi2 in per_arm_fits(ef, grid):
                        arm_rows.append([model, name, f"{snr:g}", seg, str(npx),
                                         f"{best['fe_h']:+.2f}", f"{best['vmic']:.2f}",
                                         f"{best['vsini']:.1f}", f"{chi2:.2f}"])
                        print(" | ".join(arm_rows[-1]), flush=True)
    return cinn_rows, fit_rows, arm_rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["4most-hr", "4most-lr"])
    ap.add_argument("--sun-dir", default="../shared/data/sun")
    ap.add_argument("--snr", nargs="+", type=float, default=[50.0, 250.0])
    add_renamed_option(ap, "--realizations", "--realisations", type=int, default=5,
                       help="noise draws per spectrum and S/N")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-arm", action="store_true",
                    help="also fit [Fe/H] with the emulator on each arm alone (Teff, log g solar)")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    cinn_rows, fit_rows, arm_rows = run(args)
    text = rst_table("The Sun through the models: posterior median [16 %, 84 %] (median over "
                 f"{args.realizations} noise draws); * = 95 % interval misses the reference",
                 ["model", "spectrum", "S/N", "coverage"] + list(SHOW) + ["flags"], cinn_rows)
    text += "\n" + rst_table(
        "Network against direct fits with the model's emulator (first noise draw)",
        ["model", "spectrum", "S/N", "cINN [Fe/H]", "emulator [Fe/H] (Teff, log g solar)",
         "vmic", "v sin i", "cINN Teff / log g / [Fe/H]", "emulator free fit"], fit_rows)
    if args.per_arm:
        text += "\n" + rst_table(
            "Emulator fits on each arm alone (first noise draw; Teff and log g solar, [Fe/H], "
            "vmic and v sin i free; the model's pixel mask applied)",
            ["model", "spectrum", "S/N", "arm", "pixels", "[Fe/H]", "vmic", "v sin i",
             "chi2"], arm_rows)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
