"""Does the spectrum emulator keep each label's imprint on the spectrum? A linear-response check.

Over the emulator's training stars (``holdout`` rows left out), flux is regressed linearly on all
labels at every pixel, once for the Turbospectrum spectra of the emulator's training data and once
for the emulator's spectra at the same labels. For each label it prints, per grid segment, the
number of pixels whose slope is significant (``|t| > --threshold``) in either, the median absolute
slope (flux per label unit) of the two on the Turbospectrum-significant pixels, their correlation,
and the strongest pixels' wavelengths. An emulator that kept a label's lines has the same pixels
and slopes as Turbospectrum; one that lost them has fewer pixels and smaller slopes.

Usage::

    python scripts/label_response.py --data work/emu_hr.npz \
        --emulator work/emulators/4most-hr-emulator
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from specutils_cinn.emulator import load_emulator


def slopes_and_t(labels: np.ndarray, flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slopes [D, P] of flux on labels (with an intercept) and their t values."""
    x = np.column_stack([np.ones(len(labels)), labels])
    beta, *_ = np.linalg.lstsq(x, flux, rcond=None)
    resid = flux - x @ beta
    dof = len(labels) - x.shape[1]
    var = (resid**2).sum(axis=0) / dof
    se = np.sqrt(np.outer(np.diag(np.linalg.inv(x.T @ x)), var))
    se = np.where(se > 0, se, np.inf)
    return beta[1:], beta[1:] / se[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True,
                    help="emulator training data (specutils-cinn emulator prepare)")
    ap.add_argument("--emulator", required=True, help="emulator directory")
    ap.add_argument("--labels", nargs="+", default=["mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe"])
    ap.add_argument("--threshold", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = np.load(args.data, allow_pickle=True)
    names = [str(n) for n in d["label_names"]]
    keep = ~np.asarray(d["holdout"], dtype=bool)
    labels = np.asarray(d["labels"], dtype=np.float64)[keep]
    flux = np.asarray(d["flux"], dtype=np.float64)[keep]
    emu = load_emulator(args.emulator)
    if list(emu.label_names) != names:
        raise SystemExit(f"emulator labels {emu.label_names} are not the data's {names}")
    with torch.no_grad():
        emulated = emu(torch.as_tensor(labels, dtype=torch.float32), clamp=True).numpy()
    wave = emu.grid.wavelength.value
    b_ts, t_ts = slopes_and_t(labels, flux)
    b_em, t_em = slopes_and_t(labels, emulated.astype(np.float64))
    print(f"{args.data}: {keep.sum()} training stars, {flux.shape[1]} pixels; |t| > "
          f"{args.threshold:g}")
    for name in args.labels:
        j = names.index(name)
        print(f"{name}:")
        for seg, sl in zip(emu.grid.segments, emu.grid.segment_slices, strict=True):
            sig_ts = np.abs(t_ts[j, sl]) > args.threshold
            sig_em = np.abs(t_em[j, sl]) > args.threshold
            line = (f"  {seg.name:>4} {seg.start:.0f}-{seg.stop:.0f} A: pixels Turbospectrum "
                    f"{sig_ts.sum():4d}, emulator {sig_em.sum():4d}")
            if sig_ts.any():
                a, e = b_ts[j, sl][sig_ts], b_em[j, sl][sig_ts]
                corr = np.corrcoef(a, e)[0, 1] if a.size > 2 else np.nan
                top = np.argsort(-np.abs(b_ts[j, sl]) * sig_ts)[: min(5, sig_ts.sum())]
                line += (f"; median |slope| {np.median(np.abs(a)):.3f} vs "
                         f"{np.median(np.abs(e)):.3f}, correlation {corr:.2f}; strongest at "
                         + ", ".join(f"{w:.1f}" for w in np.sort(wave[sl][top])))
            print(line)


if __name__ == "__main__":
    main()
