"""Degrade the Turbospectrum LTE seed grid to 4MOST HR and LR model grids.

Reads ``ts_lte_seed.npz`` (411 stars, 1D LTE, MARCS; see its README), applies rotation
(several random vsini per star), the 4MOST line-spread function and pixel binning with
`specutils_cinn.instruments.degrade`, and writes two training sets for
`specutils_cinn.training` (noise is added during training, fresh every step).

Usage::

    python scripts/prepare_seed_training_sets.py \
        --seed-grid ../shared/data/ts_lte_seed/ts_lte_seed.npz --output-dir work/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from specutils_cinn.inputs import Normalization
from specutils_cinn.instruments import InstrumentSetup, degrade, fourmost_setup
from specutils_cinn.model import sha256_file
from specutils_cinn.training import TrainingSet, save_training_set
from specutils_cinn.wavelength_grid import GridSegment, WavelengthGrid

LABELS = ["teff", "logg", "fe_h", "vmic", "mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe", "li_fe"]

#: Pseudo-continuum normalization applied to the training spectra; the models declare it in their
#: metadata and the estimator applies the same normalizer to every input spectrum.
NORMALIZATION = Normalization("pseudo-continuum", degree=3, n_iter=5)

#: HR model grid: the 4MOST HR arms at 0.1 A, inset by 0.5 A from the seed grid's ends so that
#: the LSF never reaches beyond the synthetic spectra.
HR_STEP, LR_STEP, INSET = 0.1, 0.5, 0.5
#: HR arms the seed model uses. The blue arm (HB, 3926-4355 A) is left out: the seed grid has no
#: lines below 4200 A other than hydrogen and no molecules (the CH G band at 4300 A), so its HB
#: spectra look nothing like real stars (on the Sun the network read the missing blue lines as
#: a hot, metal-rich star).
HR_ARMS = ("HG", "HR")
#: LR wavelength range of the seed model, for the same reason: 4400-9200 A skips the region
#: without metal lines (< 4200 A) and the CH G band, and stays inside the Gaia-ESO line list.
LR_RANGE = (4400.0, 9200.0)


def _inset_grid(setup: InstrumentSetup, step: float, arms: tuple[str, ...] | None = None,
                limits: tuple[float, float] | None = None) -> InstrumentSetup:
    segs = []
    for s in setup.grid.segments:
        if arms is not None and s.name not in arms:
            continue
        lo, hi = limits if limits is not None else (s.start, s.stop)
        start = max(s.start, lo) + INSET
        n = int(np.floor((min(s.stop, hi) - INSET - start) / step + 1e-9))
        segs.append(GridSegment(s.name, start, round(start + n * step, 9), step))
    grid = WavelengthGrid(tuple(segs), setup.grid.medium)
    rp = {s.name: setup.resolving_power[s.name] for s in segs}
    return InstrumentSetup(setup.name, grid, rp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz")
    ap.add_argument("--output-dir", default="work")
    ap.add_argument("--vsini-per-star", type=int, default=4)
    ap.add_argument("--vsini-max", type=float, default=25.0, help="km/s, uniform from 0")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--only", choices=["hr", "lr"], default=None, help="make one set only")
    args = ap.parse_args()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    src = Path(args.seed_grid)
    d = np.load(src, allow_pickle=False)
    n_star = d["label_teff"].size
    labels = np.stack([d[f"label_{p}"] for p in LABELS], axis=1)
    k = args.vsini_per_star
    vsini = rng.uniform(0.0, args.vsini_max, size=(n_star, k))
    star = np.repeat(np.arange(n_star), k)
    provenance = {
        "source": "Turbospectrum v20.1 LTE seed grid (ts_lte_seed.npz): 411 stars, MARCS x3 "
                  "atmospheres interpolated with interpol_modeles, Gaia-ESO v6 atomic lines "
                  "(4200-9200 A) + H lines, no molecules, 1D LTE",
        "source_sha256": sha256_file(src),
        "label_design": "see ts_lte_seed README: Teff 4000-7000 K, log g 1.0-5.0, [Fe/H] -2.5..0.5",
        "vsini": f"{k} draws per star, uniform 0-{args.vsini_max} km/s, Gray rotation profile, "
                 "limb darkening 0.6",
        "instrument": "Gaussian LSF at the 4MOST resolving power, flux-conserving pixel binning",
        "normalization": "noise-free spectra divided by the pseudo-continuum of "
                         f"specutils_cinn.inputs.normalization.normalize_continuum "
                         f"{NORMALIZATION.to_dict()}",
        "script": "scripts/prepare_seed_training_sets.py",
        "seed": args.seed,
        "group": "star",
    }

    if args.only != "lr":
        _make_hr(d, labels, star, vsini, provenance, out)
    if args.only != "hr":
        _make_lr(d, labels, star, vsini, provenance, out)


def _make_hr(d, labels, star, vsini, provenance, out: Path) -> None:
    hr = _inset_grid(fourmost_setup("hr"), HR_STEP, HR_ARMS)
    arms = {"HB": "hr_blue", "HG": "hr_green", "HR": "hr_red"}
    arms = [arms[a] for a in HR_ARMS]
    wave = np.concatenate([np.arange(*(d[f"grid_{a}"] + [0, d[f"grid_{a}"][2] / 2, 0]))
                           for a in arms])
    flux = np.concatenate([d[a].astype(np.float32) for a in arms], axis=1)
    if wave.size != flux.shape[1]:
        raise RuntimeError("seed HR wavelength grid does not match its flux arrays")
    hr_flux = _degrade_chunks(wave, flux, hr, vsini)
    ts = TrainingSet(hr_flux, np.column_stack([labels[star], vsini.ravel()]), LABELS + ["vsini"],
                     hr.grid, {s.name: float(hr.resolving_power[s.name]) for s in hr.grid.segments},
                     dict(provenance, instrument_setup=f"4MOST-HR arms {HR_ARMS} at 0.1 A"),
                     groups=star)
    save_training_set(out / "seed_hr_train.npz", ts)
    print(f"HR: {hr_flux.shape} -> {out / 'seed_hr_train.npz'}")


def _make_lr(d, labels, star, vsini, provenance, out: Path) -> None:
    lr = _inset_grid(fourmost_setup("lr"), LR_STEP, limits=LR_RANGE)
    g = d["grid_lr"]
    wave = np.arange(g[0], g[1] + g[2] / 2, g[2])
    lr_flux = _degrade_chunks(wave, d["lr"].astype(np.float32), lr, vsini)
    ts = TrainingSet(lr_flux, np.column_stack([labels[star], vsini.ravel()]), LABELS + ["vsini"],
                     lr.grid, {"LJ": lr.resolving_power["LJ"].to_dict()},
                     dict(provenance, instrument_setup=f"4MOST-LR {LR_RANGE} A at 0.5 A"),
                     groups=star)
    save_training_set(out / "seed_lr_train.npz", ts)
    print(f"LR: {lr_flux.shape} -> {out / 'seed_lr_train.npz'}")


def _degrade_chunks(wave: np.ndarray, flux: np.ndarray, setup: InstrumentSetup,
                    vsini: np.ndarray, chunk: int = 32) -> np.ndarray:
    n_star, k = vsini.shape
    out = np.empty((n_star * k, setup.grid.npix), dtype=np.float32)
    for j in range(k):
        for i in range(0, n_star, chunk):
            rows = slice(i, min(i + chunk, n_star))
            res = degrade(wave, flux[rows], setup, vsini=vsini[rows, j])
            out[np.arange(rows.start, rows.stop) * k + j] = res
    normalized = np.empty_like(out)
    for i in range(0, out.shape[0], 256):
        f = out[i:i + 256]
        fn, _, ok = NORMALIZATION.apply(f, None, np.ones(f.shape, bool), setup.grid)
        if not ok.all():
            raise RuntimeError("continuum fit failed on a noise-free training spectrum")
        normalized[i:i + 256] = fn
    return normalized


if __name__ == "__main__":
    main()
