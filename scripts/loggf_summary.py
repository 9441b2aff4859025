"""Summarize a solar log gf calibration (ECSV) as RST tables for the docs.

Usage::

    python scripts/loggf_summary.py specutils_cinn/data/linelists/solar_loggf_v1.ecsv \
        --output docs/real_stars/loggf_summary.rst
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from reference_spectra import rst_table  # noqa: E402

from specutils_cinn.synthesis.loggf import LoggfCalibration  # noqa: E402

RANGES = ((3790, 4400), (4400, 5150), (5150, 5740), (5740, 6090), (6090, 6800), (6800, 6900))
SYMBOLS = {6: "C", 8: "O", 11: "Na", 12: "Mg", 13: "Al", 14: "Si", 20: "Ca", 21: "Sc",
           22: "Ti", 23: "V", 24: "Cr", 25: "Mn", 26: "Fe", 27: "Co", 28: "Ni", 39: "Y"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calibration")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    cal = LoggfCalibration.read(args.calibration)
    t, meta = cal.changes, cal.meta
    cap = meta["settings"]["cap"]
    d = np.asarray(t["delta"], float)
    w = np.asarray(t["wavelength"], float)
    hist = meta["history"]
    fit, check = meta["fitted_on"], meta["checked_on"][0]
    rows = [["laboratory log gf" if h["iteration"] == 0 else f"after iteration {h['iteration']}",
             f"{h[f'{fit}_rms']:.4f}", f"{h[f'{fit}_p99']:.3f}", f"{h[f'{check}_rms']:.4f}",
             f"{h[f'{check}_p99']:.3f}"] for h in hist]
    text = rst_table(f"Observed minus synthetic Sun at R = {meta['settings']['resolving_power']:g} "
                 f"({meta['settings']['range'][0]:g}-{meta['settings']['range'][1]:g} A, masks "
                 f"as in the script): fitted on {fit}, checked on {check}",
                 ["line data", f"RMS {fit}", f"99th percentile of abs. residual, {fit}",
                  f"RMS {check}", f"99th percentile of abs. residual, {check}"], rows)
    rows = []
    for lo, hi in RANGES:
        s = (w >= lo) & (w < hi)
        if s.any():
            rows.append([f"{lo}-{hi}", str(int(s.sum())), f"{np.median(d[s]):+.3f}",
                         f"{np.percentile(d[s], 16):+.2f} / {np.percentile(d[s], 84):+.2f}",
                         f"{np.mean(np.abs(d[s]) >= cap - 1e-3):.2f}"])
    text += "\n" + rst_table(
        f"Changes by wavelength ({meta['candidates']} candidate lines, {meta['changed']} "
        f"changed, cap {cap} dex)",
        ["range (A)", "lines changed", "median change", "16th / 84th percentile",
         "fraction at the cap"], rows)
    el, ion = np.asarray(t["element"]), np.asarray(t["ion"])
    keys, counts = np.unique(np.stack([el, ion], 1), axis=0, return_counts=True)
    rows = []
    for (z, i), n in sorted(zip(map(tuple, keys), counts, strict=True), key=lambda x: -x[1])[:12]:
        s = (el == z) & (ion == i)
        rows.append([f"{SYMBOLS.get(int(z), str(z))} {'I' * int(i)}", str(int(n)),
                     f"{np.median(d[s]):+.3f}",
                     f"{np.percentile(d[s], 16):+.2f} / {np.percentile(d[s], 84):+.2f}"])
    text += "\n" + rst_table("Changes by species (the twelve with most changed lines)",
                         ["species", "lines", "median change", "16th / 84th percentile"], rows)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
