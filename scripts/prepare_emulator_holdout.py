"""Held-out Turbospectrum spectra on the grids of the emulator-trained cINN models.

Takes the held-out stars of a synthesis grid (``star_id % 10 == 9``: never seen by the emulator
or the cINN), degrades their synthesis-resolution spectra with the instrument model
(`specutils_cinn.instruments.degrade`: rotation with one v sin i per star drawn uniformly in
0-25 km/s, Gaussian LSF, binning) onto the model grid (the emulator grid cropped as in
``configs/4most-{hr,lr}-lte.toml``), and saves them as training sets that
``specutils-cinn train`` evaluates as ``holdout`` and ``scripts/validation_report.py`` reads.

With ``--stars emulator-validation`` it makes the same kind of set from the stars each
emulator was validated on (its early-stopping split: not fitted by the emulator, not held out),
written as ``emu_{hr,lr}_select.npz``: the ``selection`` set of the training configs, which
picks the cINN weights, so that the held-out stars stay untouched for validation.

Usage::

    python scripts/prepare_emulator_holdout.py --grid ../shared/data/ts_lte_seed/ts_lte_seed.npz
    python scripts/prepare_emulator_holdout.py --grid ../shared/data/ts_lte_seed/ts_lte_seed.npz \
        --stars emulator-validation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from specutils_cinn.emulator import load_emulator
from specutils_cinn.grid import crop_grid
from specutils_cinn.instruments import InstrumentSetup, degrade
from specutils_cinn.model import sha256_file
from specutils_cinn.simulation import DEFAULT_PARAMETERS
from specutils_cinn.synthesis import read_grid
from specutils_cinn.training import TrainingSet, save_training_set

CROP = {"hr": {"segments": ["HG", "HR"]}, "lr": {"wavelength_range": [4400.0, 9200.0]}}
SEGS = {"hr": ("hr_blue", "hr_green", "hr_red"), "lr": ("lr",)}


def emulator_validation_rows(g, config: Path) -> np.ndarray:
    """Rows of grid ``g`` in the validation split of the emulator trained from ``config``
    (recomputed as ``scripts/train_emulator.py`` draws it)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_emulator import load_data, read_config, validation_rows

    from specutils_cinn.emulator import EmulatorConfig

    conf = read_config(str(config))
    cfg = EmulatorConfig.from_dict(dict(conf.get("emulator", {})))
    data = load_data(conf["data"])
    stars = np.unique(data["star_id"][validation_rows(data, cfg)])
    out = np.flatnonzero(np.isin(np.asarray(g.star_id), stars) & ~np.asarray(g.holdout))
    if out.size != stars.size:
        raise ValueError(f"{out.size} grid rows for {stars.size} validation stars")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz")
    ap.add_argument("--emulators", default="work/emulators",
                    help="directory with 4most-{hr,lr}-emulator")
    ap.add_argument("--out-dir", default="work")
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--stars", choices=["holdout", "emulator-validation"], default="holdout")
    ap.add_argument("--configs", default="configs",
                    help="directory with emulator-4most-{hr,lr}.toml (--stars emulator-validation)")
    args = ap.parse_args()
    g = read_grid(args.grid)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for name in ("hr", "lr"):
        if args.stars == "holdout":
            hold = np.flatnonzero(g.holdout)
            what, suffix = "held-out stars (star_id % 10 == 9)", "holdout"
        else:
            hold = emulator_validation_rows(g, Path(args.configs) / f"emulator-4most-{name}.toml")
            what, suffix = "stars of the emulator's validation split", "select"
        vsini = np.random.default_rng(args.seed).uniform(0.0, 25.0, hold.size)
        emu = load_emulator(Path(args.emulators) / f"4most-{name}-emulator")
        grid, _ = crop_grid(emu.grid, CROP[name].get("segments"),
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
                             "source": f"{args.grid}: {what}",
                             "source_sha256": sha256_file(args.grid), "n_stars": int(hold.size),
                             "vsini": "uniform 0-25 km/s, one per star",
                             "instrument": "specutils_cinn.instruments.degrade",
                             "script": "scripts/prepare_emulator_holdout.py"})
        out = Path(args.out_dir) / f"emu_{name}_{suffix}.npz"
        save_training_set(out, ts)
        print(f"{out}: {flux.shape[0]} spectra x {flux.shape[1]} px")


if __name__ == "__main__":
    main()
