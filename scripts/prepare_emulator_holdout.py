"""Held-out Turbospectrum spectra on the grids of the emulator-trained cINN models.

Takes the held-out stars of a synthesis grid (``star_id % 10 == 9``: never seen by the emulator
or the cINN), degrades their synthesis-resolution spectra with the instrument model
(`specutils_cinn.instruments.degrade`: rotation with one v sin i per star drawn uniformly in
0-25 km/s, Gaussian LSF, binning) onto the model grid (the emulator grid cropped as in
``configs/4most-{hr,lr}-lte-emu.toml``), and saves them as training sets that
``specutils-cinn train`` evaluates as ``holdout`` and ``scripts/validation_report.py`` reads.

Usage::

    python scripts/prepare_emulator_holdout.py --grid ../shared/data/ts_lte_seed/ts_lte_seed.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from specutils_cinn.emulator import load_emulator
from specutils_cinn.instruments import InstrumentSetup, degrade
from specutils_cinn.models import sha256_file
from specutils_cinn.simulation import DEFAULT_PARAMETERS, _crop_grid
from specutils_cinn.synthesis import read_grid
from specutils_cinn.training import TrainingSet, save_training_set

CROP = {"hr": {"segments": ["HG", "HR"]}, "lr": {"wavelength_range": [4400.0, 9200.0]}}
SEGS = {"hr": ("hr_blue", "hr_green", "hr_red"), "lr": ("lr",)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz")
    ap.add_argument("--emulators", default="work/emulators",
                    help="directory with 4most-{hr,lr}-emulator")
    ap.add_argument("--out-dir", default="work")
    ap.add_argument("--seed", type=int, default=2027)
    args = ap.parse_args()
    g = read_grid(args.grid)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    hold = np.flatnonzero(g.holdout)
    vsini = np.random.default_rng(args.seed).uniform(0.0, 25.0, hold.size)
    for name in ("hr", "lr"):
        emu = load_emulator(Path(args.emulators) / f"4most-{name}-emulator")
        grid, _ = _crop_grid(emu.grid, CROP[name].get("segments"),
                             CROP[name].get("wavelength_range"))
        full = InstrumentSetup.from_dict(emu.metadata["setup"])
        setup = InstrumentSetup(full.name, grid,
                                {s.name: full.resolving_power[s.name] for s in grid.segments})
        names = [s for s in SEGS[name] if s in g.segments] or ["full"]
        wave = np.concatenate([g.segments[s][0] for s in names])
        hi = np.concatenate([g.segments[s][1][hold] for s in names], axis=1)
        flux = degrade(wave, hi, setup, vsini=vsini)
        labels = np.column_stack([vsini if p == "vsini" else g.labels[p][hold]
                                  for p in DEFAULT_PARAMETERS])
        rp = emu.metadata["resolving_power"]
        ts = TrainingSet(flux.astype(np.float32), labels, list(DEFAULT_PARAMETERS), grid,
                         {s.name: rp[s.name] for s in grid.segments}, {
                             "source": f"{args.grid}: held-out stars (star_id % 10 == 9)",
                             "source_sha256": sha256_file(args.grid), "n_stars": int(hold.size),
                             "vsini": "uniform 0-25 km/s, one per star",
                             "instrument": "specutils_cinn.instruments.degrade",
                             "script": "scripts/prepare_emulator_holdout.py"})
        out = Path(args.out_dir) / f"emu_{name}_holdout.npz"
        save_training_set(out, ts)
        print(f"{out}: {flux.shape[0]} spectra x {flux.shape[1]} px")


if __name__ == "__main__":
    main()
