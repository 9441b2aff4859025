"""Accuracy and calibration of a trained model on its held-out stars, through the full
estimator path (Spectrum objects in, QTable out).

The held-out stars are the validation groups recorded in the model's metadata (never used to
fit the weights, only to pick the best training step). Their noise-free spectra are taken from
the training set, given photon-like noise at each S/N per Angstrom, wrapped in a 2-D
``Spectrum`` with a StdDev uncertainty and passed to ``CINNParameterEstimator.predict``.

Prints, per S/N and parameter: bias (median of predicted - true), scatter (std), robust
scatter (1.4826 MAD) and the fraction of true values inside the 68 % and 95 % central
posterior intervals.

Usage::

    python scripts/validate_seed_model.py --model 4most-hr --training-set work/seed_hr_train.npz
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from astropy import units as u
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.instruments import add_noise
from specutils_cinn.training import load_training_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--training-set", required=True)
    ap.add_argument("--snr", type=float, nargs="+", default=[25, 50, 100, 250])
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    est = CINNParameterEstimator.from_pretrained(args.model)
    md = est.model.metadata
    ts = load_training_set(args.training_set, md.parameter_names)
    rows = np.flatnonzero(np.isin(ts.groups, md.training["validation_groups"]))
    truth = ts.labels[rows]
    wave = md.grid.wavelength
    print(f"model {md.full_name}: {rows.size} held-out spectra of "
          f"{len(md.training['validation_groups'])} stars")
    print(f"{'S/N':>5} {'param':>6} {'bias':>9} {'scatter':>9} {'robust':>9} {'in68':>6} "
          f"{'in95':>6}")
    for snr in args.snr:
        gen = torch.Generator().manual_seed(args.seed)
        noisy, sigma = add_noise(torch.as_tensor(ts.flux[rows], dtype=torch.float64),
                                 np.full(rows.size, snr), md.grid.pixel_width, gen,
                                 photon_noise=True)
        spec = Spectrum(flux=noisy.numpy() * u.one, spectral_axis=wave,
                        uncertainty=StdDevUncertainty(sigma.numpy()))
        t = est.predict(spec, n_samples=args.n_samples, quantiles=(0.025, 0.16, 0.84, 0.975),
                        seed=args.seed, progress=False)
        for j, p in enumerate(md.parameter_names):
            def val(c: str, t=t) -> np.ndarray:
                return np.asarray(t[c].value)  # dex value for logg, not the physical g

            d = val(p) - truth[:, j]
            mad = 1.4826 * np.median(np.abs(d - np.median(d)))
            in68 = np.mean((truth[:, j] > val(f"{p}_p16")) & (truth[:, j] < val(f"{p}_p84")))
            in95 = np.mean((truth[:, j] > val(f"{p}_p2_5")) & (truth[:, j] < val(f"{p}_p97_5")))
            print(f"{snr:>5.0f} {p:>6} {np.median(d):>9.3f} {np.std(d):>9.3f} {mad:>9.3f} "
                  f"{in68:>6.2f} {in95:>6.2f}")


if __name__ == "__main__":
    main()
