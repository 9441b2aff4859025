"""Does a model read single lines? The posterior's response to one line's change.

For a few reference stars, the model's own emulator (`CINNModel.emulator`, broadened as in its
fit check) gives the spectrum at the star's parameters and at the same parameters with one
abundance raised by ``--delta`` dex. Three inputs are made from them, with the same photon noise
(S/N ``--snr`` per Angstrom, `specutils_cinn.validation.heldout.noisy_spectrum`) and the same
posterior draws:

- the base spectrum;
- the base spectrum with the change inside one line's window only (``line``);
- the changed spectrum everywhere (``all``).

The response is the shift of the posterior median of that abundance per unit change,
``(median(input) - median(base)) / delta``: 1 means the change is read in full. For ``all``
it says whether the model measures the abundance at all. For ``line`` the right value is not
1: an estimator that uses every line moves by the line's share of the information. That share
is the ``expected`` column, the line's part of the Fisher information of the abundance,
``sum over the window of (dF/dx / sigma)^2`` over the same sum over all valid pixels, with the
abundance alone free (a reference, not a bound: with the other labels free the best share
differs) and the photon noise at ``--snr`` alone (the information in an observed spectrum). A
model that resolves single lines has ``line`` near ``expected``; one that smooths over them has
``line`` near 0. Lines outside the model's grid, or whose window the model masks, are skipped;
each row is the median over the stars and the noise seeds (the range in brackets).

A first table gives, per abundance, its Fisher uncertainty from the whole spectrum with all of
the model's parameters free (the inverse of the full Fisher matrix; derivatives by central
differences of the emulator), for the photon noise alone and for the noise the network was
trained with (the photon noise, the training's ``emulator_noise`` and the emulator's per-pixel
error floor, in quadrature). An abundance whose uncertainty is small against its training
range but whose whole-spectrum response is near 0 carries information the network did not
learn to use. Both come from the emulator's derivatives, physical structure or not.

Usage::

    python scripts/line_response.py --model 4most-hr [--snr 250] [--seeds 2]
        [--rst docs/models/line_response_hr.rst]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import torch

from specutils_cinn import CINNParameterEstimator
from specutils_cinn.validation.heldout import noisy_spectrum
from specutils_cinn.validation.rst import simple_table

#: Reference stars: Teff, log g, [Fe/H], vmic, v sin i; abundances [X/Fe] = 0, [Li/Fe] = 1.
STARS = {
    "Sun": (5772.0, 4.44, 0.0, 1.0, 2.0),
    "K dwarf": (5000.0, 4.6, 0.2, 0.8, 2.0),
    "F dwarf": (6300.0, 4.2, -0.5, 1.5, 5.0),
    "metal-poor dwarf": (6000.0, 4.3, -1.8, 1.3, 3.0),
    "K giant": (4700.0, 2.5, -0.3, 1.4, 3.0),
    "metal-poor giant": (4800.0, 1.8, -1.5, 1.8, 3.0),
}

#: (parameter, line, center in air Angstrom, half-width of the window in Angstrom).
LINES = (
    ("mn_fe", "Mn I 4030.8", 4030.76, 0.35),
    ("mn_fe", "Mn I 4033.1", 4033.06, 0.35),
    ("mn_fe", "Mn I 4034.5", 4034.48, 0.35),
    ("mn_fe", "Mn I 4823.5", 4823.52, 0.3),
    ("mn_fe", "Mn I 6013.5", 6013.51, 0.3),
    ("ni_fe", "Ni I 5476.9", 5476.90, 0.3),
    ("ni_fe", "Ni I 6108.1", 6108.11, 0.25),
    ("ni_fe", "Ni I 6643.6", 6643.63, 0.25),
    ("ni_fe", "Ni I 6767.8", 6767.77, 0.25),
    ("ca_fe", "Ca I 6162.2", 6162.17, 0.4),
    ("ca_fe", "Ca I 6439.1", 6439.07, 0.3),
    ("mg_fe", "Mg I 5711.1", 5711.09, 0.3),
    ("ti_fe", "Ti I 5210.4", 5210.38, 0.25),
    ("li_fe", "Li I 6707.8", 6707.80, 0.4),
)


def star_values(est: CINNParameterEstimator, teff: float, logg: float, feh: float,
                vmic: float, vsini: float) -> np.ndarray:
    """One star's parameter vector in the model's order, inside its training ranges."""
    defaults = {"teff": teff, "logg": logg, "fe_h": feh, "vmic": vmic, "vsini": vsini,
                "li_fe": 1.0}
    v = np.array([defaults.get(p, 0.0) for p in est.parameters], dtype=np.float64)
    ranges = np.asarray(est.model.metadata.ranges, dtype=np.float64)
    return np.clip(v, ranges[:, 0], ranges[:, 1])


def model_flux(est: CINNParameterEstimator, values: np.ndarray) -> np.ndarray:
    """Emulated, broadened spectra ``[N, model npix]`` (NaN where the emulator has none)."""
    fe = est.model.emulator
    with torch.no_grad():
        emu = fe.emulate(est.parameters, values, device="cpu").numpy()
    out = np.full((len(values), est.model.metadata.grid.npix), np.nan)
    out[:, fe.model_index] = emu[:, fe.emulator_index]
    return out


def medians(est: CINNParameterEstimator, flux: np.ndarray, name: str, snr: float, seed: int,
            n_samples: int) -> np.ndarray:
    """Posterior medians of ``name`` for rows of ``flux`` with the noise of ``seed``."""
    grid = est.model.metadata.grid
    spec = noisy_spectrum(np.nan_to_num(flux, nan=1.0), grid.wavelength, grid.pixel_width, snr,
                          seed)
    table = est.predict(spec, n_samples=n_samples, seed=1, progress=False, quantiles=(0.5,))
    return np.asarray(u.Quantity(table[name]).value, dtype=np.float64)


#: Central-difference steps of the Fisher matrix, per parameter (default 0.02).
STEPS = {"teff": 20.0, "logg": 0.02, "fe_h": 0.02, "vmic": 0.05, "vsini": 0.5, "li_fe": 0.05}


def pixel_sigma(est: CINNParameterEstimator, snr: float, training: bool) -> np.ndarray:
    """Per-pixel noise at ``snr`` per Angstrom (continuum units): photon noise, and with
    ``training`` the training's emulator noise and the emulator's error floor too."""
    grid = est.model.metadata.grid
    var = 1.0 / (snr**2 * grid.pixel_width)
    if not training:
        return np.sqrt(var)
    var += float(est.model.metadata.training.get("data", {}).get("emulator_noise", 0.0)) ** 2
    fe = est.model.emulator
    floor = np.zeros(grid.npix)
    floor[fe.model_index] = fe.floor
    return np.sqrt(var + floor**2)


def fisher_sigmas(est: CINNParameterEstimator, values: np.ndarray,
                  sigmas: list[np.ndarray], use: np.ndarray) -> list[np.ndarray]:
    """Marginal Fisher uncertainties ``[N, n_params]``, one array per pixel-noise model."""
    names = est.parameters
    ranges = np.asarray(est.model.metadata.ranges, dtype=np.float64)
    cols = []
    for j, p in enumerate(names):
        h = STEPS.get(p, 0.02)
        up, down = values.copy(), values.copy()
        up[:, j] = np.minimum(values[:, j] + h, ranges[j, 1])
        down[:, j] = np.maximum(values[:, j] - h, ranges[j, 0])
        d = (model_flux(est, up) - model_flux(est, down)) / (up[:, j] - down[:, j])[:, None]
        cols.append(np.nan_to_num(d) * use)
    jac = np.stack(cols, axis=2)                      # [N, npix, n_params]
    out = []
    for sigma in sigmas:
        scaled = jac / sigma[None, :, None]
        fisher = np.einsum("npi,npj->nij", scaled, scaled)
        out.append(np.sqrt(np.diagonal(np.linalg.pinv(fisher), axis1=1, axis2=2)))
    return out


def line_responses(est: CINNParameterEstimator, *, delta: float, snr: float, seeds: int,
                   n_samples: int) -> tuple[list[dict], list[dict]]:
    """Rows per abundance and per line the model's grid covers (see the module docstring)."""
    grid = est.model.metadata.grid
    wave = grid.wavelength.to_value(u.AA)
    mp = est.model.metadata.masked_pixels
    masked = np.zeros(wave.size, bool) if mp is None else np.asarray(mp, bool)
    base_values = np.array([star_values(est, *s) for s in STARS.values()])
    base = model_flux(est, base_values)
    sigma = pixel_sigma(est, snr, training=False)
    use = ~masked & np.isfinite(base).all(0)
    photon, trained = fisher_sigmas(est, base_values,
                                    [sigma, pixel_sigma(est, snr, training=True)], use)
    rows, cache = [], {}
    for name, line, center, half in LINES:
        if name not in est.parameters:
            continue
        window = np.abs(wave - center) <= half
        if not window.any() or masked[window].all():
            continue
        j = est.parameters.index(name)
        if name not in cache:
            up = base_values.copy()
            up[:, j] += delta
            changed = model_flux(est, up)
            real = (up[:, j] - base_values[:, j])  # 0 where the range clipped the change
            full = np.stack([medians(est, changed, name, snr, s, n_samples)
                             for s in range(seeds)])
            ref = np.stack([medians(est, base, name, snr, s, n_samples) for s in range(seeds)])
            cache[name] = (changed, real, ref, (full - ref) / delta)
        changed, real, ref, full_resp = cache[name]
        line_flux = np.where(window, changed, base)
        got = np.stack([medians(est, line_flux, name, snr, s, n_samples)
                        for s in range(seeds)])
        resp = (got - ref) / delta
        g2 = np.nan_to_num(((changed - base) / delta / sigma) ** 2) * use
        total = np.maximum(g2.sum(1), 1e-30)
        expected = g2[:, window].sum(1) / total
        ok = real > 0
        rows.append({
            "parameter": name, "line": line, "window": (center - half, center + half),
            "expected": expected[ok], "line_response": resp[:, ok].ravel(),
        })
    per_parameter = []
    for name, (_, real, _, full_resp) in cache.items():
        j, ok = est.parameters.index(name), real > 0
        per_parameter.append({"parameter": name, "photon": photon[ok, j],
                              "training": trained[ok, j],
                              "all_response": full_resp[:, ok].ravel()})
    return per_parameter, rows


def _fmt(x: np.ndarray, f: str = "+.2f") -> str:
    return f"{np.median(x):{f}} [{np.min(x):{f}}, {np.max(x):{f}}]"


def report(per_parameter: list[dict], per_line: list[dict], header: str) -> str:
    """Both tables with the header."""
    t1 = simple_table(
        ["parameter", "Fisher sigma, photon noise (dex)", "Fisher sigma, training noise (dex)",
         "response to the whole spectrum"],
        [[r["parameter"], _fmt(r["photon"], ".3f"), _fmt(r["training"], ".3f"),
          _fmt(r["all_response"])] for r in per_parameter], pad_last_column=True)
    t2 = simple_table(
        ["parameter", "line", "expected (Fisher share)", "response to the line only"],
        [[r["parameter"], r["line"], _fmt(r["expected"]), _fmt(r["line_response"])]
         for r in per_line], pad_last_column=True)
    return "\n".join([header, "", t1, "", t2, ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="4most-hr", help="registered name or model folder")
    ap.add_argument("--delta", type=float, default=0.1, help="abundance change in dex")
    ap.add_argument("--snr", type=float, default=250.0, help="S/N per Angstrom")
    ap.add_argument("--seeds", type=int, default=2, help="noise realizations per star")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--rst", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.delta <= 0 or args.snr <= 0 or args.seeds < 1:
        ap.error("--delta, --snr and --seeds must be positive")
    if args.rst is not None and not args.rst.parent.is_dir():
        ap.error(f"--rst: folder {args.rst.parent} does not exist")
    torch.set_num_threads(1)
    est = CINNParameterEstimator.from_pretrained(args.model, device="cpu")
    if est.model.emulator is None:
        print(f"{est.model.metadata.full_name} has no emulator", file=sys.stderr)
        return 2
    per_parameter, per_line = line_responses(est, delta=args.delta, snr=args.snr,
                                             seeds=args.seeds, n_samples=args.n_samples)
    cmd = "python scripts/line_response.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f".. generated by {cmd}; do not edit.\n\n"
              f"{est.model.metadata.full_name}: response of the posterior median to "
              f"+{args.delta} dex, S/N {args.snr:g} per Angstrom, {len(STARS)} stars x "
              f"{args.seeds} noise seeds, {args.n_samples} draws; median [min, max].")
    text = report(per_parameter, per_line, header)
    print(text)
    if args.rst is not None:
        args.rst.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
