"""Synthetic vs observed Sun in the 4MOST HR windows, with and without the extended line lists.

Synthesizes the Sun (Teff 5772 K, log g 4.44, [Fe/H] 0, vmic 1.0 km/s, A(Li) 1.05, solar
[X/Fe]) with Turbospectrum twice: with the Gaia-ESO atomic list and hydrogen only ("GES"), and
with the extended lists added (linemake atoms outside the GES range and molecules, without
SiH as in the grid configuration; "extended").
Both synthetic spectra and the observed spectra (HARPS, R ~ 115,000; UVES, R ~ 65,000-110,000,
where it covers the window) are degraded to the 4MOST HR setup (R = 20,000, 0.05 A pixels) with
the solar v sin i (1.6 km/s) and a radial-tangential macroturbulence of 3.5 km/s, then every
spectrum is divided by the same clipped-polynomial pseudo-continuum the estimator uses, so the
comparison does not depend on how the observed spectra were normalized.

Prints, per window and observed spectrum: residual RMS (observed - synthetic), the mean absolute
residual, the 99th percentile of the absolute residual and the correlation, for GES and extended,
as an RST table (``--output`` also writes it to a file for the docs).

Usage::

    python scripts/solar_residuals.py --output docs/synthesis/solar_residuals.rst
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from astropy.io import fits

from specutils_cinn.inputs.normalization import normalize_continuum
from specutils_cinn.instruments import degrade, fourmost_setup
from specutils_cinn.synthesis import find_synthesis, synthesize

SUN = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0, "mg_fe": 0.0, "ca_fe": 0.0,
       "ti_fe": 0.0, "mn_fe": 0.0, "ni_fe": 0.0, "a_li": 1.05}
WINDOWS = {"HB": (3916.0, 4365.0), "HG": (5150.0, 5740.0), "HR": (6090.0, 6800.0)}


def _harps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with fits.open(path) as hdul:
        h = hdul[0].header
        flux = hdul[0].data.astype(np.float64)
    return h["CRVAL1"] + h["CDELT1"] * (np.arange(flux.size) + 1 - h["CRPIX1"]), flux


def _uves(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        data = np.loadtxt(fh)
    return data[:, 0], data[:, 1]


def _on_setup(wave, flux, setup, r_in, segment):
    """Degrade to one segment of the setup; NaN where the input does not cover it."""
    seg = [s for s in setup.grid.segments if s.name == segment][0]
    out = np.full(seg.npix, np.nan)
    lo, hi = seg.start - 1.0, seg.stop + 1.0
    if wave[0] > lo or wave[-1] < hi:
        return out
    from specutils_cinn.instruments import InstrumentSetup
    from specutils_cinn.wavelength_grid import WavelengthGrid

    one = InstrumentSetup(setup.name, WavelengthGrid((seg,), setup.grid.medium),
                          {segment: setup.resolving_power[segment]})
    keep = (wave > lo - 5) & (wave < hi + 5)
    w, first = np.unique(wave[keep], return_index=True)  # the UVES file repeats a few points
    f = flux[keep][first]
    # Bad input pixels (e.g. the HARPS CCD gap at 5304.7-5337.6 A, stored as zeros) are filled
    # by interpolation for the convolution, and every output pixel they reach is dropped.
    good = np.isfinite(f) & (f > 0)
    f = np.interp(w, w[good], f[good])
    kw = {"vsini": 1.6, "vmacro": 3.5, "input_resolving_power": r_in}
    out = np.asarray(degrade(w, f[None, :], one, **kw))[0]
    ok = np.asarray(degrade(w, good[None, :].astype(float), one, **kw))[0] > 0.999
    return np.where(ok, out, np.nan)


def _normalize(flux: np.ndarray, segment_grid) -> np.ndarray:
    valid = np.isfinite(flux)
    f, _, v = normalize_continuum(flux[None, :], None, valid[None, :], segment_grid)
    return np.where(v[0], f[0], np.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sun-dir", default="../shared/data/sun")
    ap.add_argument("--step", type=float, default=0.02, help="synthesis step in Angstrom")
    ap.add_argument("--prefix", default=None, help="synthesis install prefix")
    ap.add_argument("--output", default=None, help="also write the RST table here")
    ap.add_argument("--cache", default=None,
                    help="directory to keep the two synthetic spectra in (reused if present)")
    ap.add_argument("--exclude", nargs="*", default=["sih"],
                    help="extended line-list families to leave out (as in the grid config)")
    args = ap.parse_args()
    install = find_synthesis(args.prefix)
    if not install.extended_linelists:
        raise SystemExit("the synthesis install has no extended line lists to compare")
    setup = fourmost_setup("hr")
    sun_dir = Path(args.sun_dir)
    observed = {"HARPS": (*_harps(sun_dir / "Sun_HARPS.fits"), 115000.0),
                "UVES": (*_uves(sun_dir / "UVES_Sun-1_cleaned_norm.txt.gz"), 80000.0)}
    windows = [(lo, hi, args.step) for lo, hi in WINDOWS.values()]
    synth = {}
    for label, lists in (("GES", [install.ges_linelist, install.hlinedata]),
                         ("extended", [install.ges_linelist, install.hlinedata] + [
                             p for fam, p in install.extended_linelists.items()
                             if fam not in args.exclude])):
        cached = Path(args.cache) / f"solar_{label}_{args.step}.npz" if args.cache else None
        if cached is not None and cached.exists():
            with np.load(cached) as d:
                synth[label] = SimpleNamespace(
                    wavelength=[d[f"w{i}"] for i in range(len(windows))],
                    flux=[d[f"f{i}"] for i in range(len(windows))])
            continue
        t0 = time.perf_counter()
        res = synthesize(SUN, windows, install=install, line_lists=lists)
        synth[label] = res
        print(f"synthesis with {label} lists: {time.perf_counter() - t0:.1f} s")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, **{f"w{i}": w for i, w in enumerate(res.wavelength)},
                     **{f"f{i}": f for i, f in enumerate(res.flux)})
    from specutils_cinn.wavelength_grid import WavelengthGrid

    rows = []
    for i, seg_name in enumerate(WINDOWS):
        seg = [s for s in setup.grid.segments if s.name == seg_name][0]
        g1 = WavelengthGrid((seg,), setup.grid.medium)
        model = {k: _normalize(_on_setup(r.wavelength[i], r.flux[i], setup, None, seg_name), g1)
                 for k, r in synth.items()}
        for obs_name, (w, f, r_in) in observed.items():
            obs = _normalize(_on_setup(w, f, setup, r_in, seg_name), g1)
            if not np.isfinite(obs).any():
                continue
            row = [seg_name, obs_name]
            for k in ("GES", "extended"):
                ok = np.isfinite(obs) & np.isfinite(model[k])
                d = obs[ok] - model[k][ok]
                row += [float(np.sqrt(np.mean(d**2))), float(np.mean(np.abs(d))),
                        float(np.percentile(np.abs(d), 99)),
                        float(np.corrcoef(obs[ok], model[k][ok])[0, 1])]
            rows.append(row)
    head = ["window", "observed", "RMS GES", "MAD GES", "p99 GES", "corr GES",
            "RMS ext.", "MAD ext.", "p99 ext.", "corr ext."]
    lines = [".. list-table:: Observed minus synthetic Sun, 4MOST HR (R = 20,000)",
             "   :header-rows: 1", ""]
    lines.append("   * - " + "\n     - ".join(head))
    for r in rows:
        lines.append("   * - " + "\n     - ".join(
            [r[0], r[1]] + [f"{x:.4f}" if j % 4 != 3 else f"{x:.3f}"
                            for j, x in enumerate(r[2:])]))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
