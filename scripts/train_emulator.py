"""Train a spectrum emulator on data made by ``scripts/prepare_emulator_data.py``.

Held-out stars (``holdout`` in the data file) are never trained on nor used for early stopping;
the emulator's accuracy on them is measured after training and stored in its metadata.

Usage::

    python scripts/train_emulator.py --config configs/emulator-4most-hr.toml --threads 1
    python scripts/train_emulator.py --data work/emu_hr.npz --out work/emulators/4most-hr-emulator \
        --steps 4000 --threads 1

A TOML config has ``data`` and ``out`` (paths relative to the config file), an optional
``name``, and an ``[emulator]`` table of `specutils_cinn.emulator.EmulatorConfig` options;
command-line options override it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np


def load_data(path: str | Path) -> dict[str, Any]:
    """Arrays and decoded JSON fields of an emulator data file."""
    from specutils_cinn.instruments import InstrumentSetup

    d = np.load(path, allow_pickle=False)
    out = {k: d[k] for k in ("labels", "flux", "star_id", "holdout")}
    out["label_names"] = [str(n) for n in d["label_names"]]
    out["setup"] = InstrumentSetup.from_dict(json.loads(str(d["setup"])))
    out["provenance"] = json.loads(str(d["provenance"]))
    return out


def subset_training_stars(star_id: np.ndarray, holdout: np.ndarray, fraction: float,
                          seed: int) -> np.ndarray:
    """Row mask of a random ``fraction`` of the non-held-out stars (held-out rows are False)."""
    stars = np.unique(star_id[~holdout])
    n = max(2, int(round(fraction * stars.size)))
    keep = np.random.default_rng(seed).choice(stars, min(n, stars.size), replace=False)
    return np.isin(star_id, keep) & ~holdout


def validation_rows(data: dict[str, Any], cfg: Any) -> np.ndarray:
    """Rows of ``data`` in the validation split that `train_and_save` (fraction 1) gives the
    emulator: the same whole stars, never held-out ones, for the same config and seed."""
    from specutils_cinn.emulator import validation_split

    rows = np.flatnonzero(subset_training_stars(data["star_id"], data["holdout"], 1.0, cfg.seed))
    return rows[validation_split(data["star_id"][rows], cfg.validation_fraction, cfg.seed)]


def train_and_save(data: dict[str, Any], cfg: Any, out: Path | None, *, fraction: float = 1.0,
                   device: str = "cpu", name: str = "emulator", log: Any = print) -> tuple:
    """Train on (a fraction of) the training stars, evaluate on the held-out stars, save.

    Returns ``(emulator, history, accuracy)``.
    """
    from specutils_cinn.emulator import residual_statistics, save_emulator, train_emulator

    setup = data["setup"]
    use = subset_training_stars(data["star_id"], data["holdout"], fraction, cfg.seed)
    emu, hist = train_emulator(data["labels"][use], data["flux"][use], data["label_names"],
                               setup.grid, cfg, star_id=data["star_id"][use], device=device,
                               log=log)
    ho = data["holdout"]
    acc = residual_statistics(emu, data["labels"][ho], data["flux"][ho])
    acc.pop("residuals")
    acc.pop("per_star_p99")
    if out is not None:
        meta = {
            "name": name,
            "description": f"{setup.name} spectrum emulator (labels -> continuum-normalised flux "
                           "after the instrumental LSF, before rotation and noise)",
            "instrument_setup": setup.name,
            "setup": setup.to_dict(),
            "resolving_power": setup.to_dict()["resolving_power"],
            "normalization": {"kind": "continuum"},
            "training_grid": data["provenance"],
            "training_fraction": fraction,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "history": hist,
            "accuracy_holdout": acc,
        }
        save_emulator(out, emu, meta)
        size = sum(f.stat().st_size for f in Path(out).iterdir())
        log(f"saved {out} ({size / 1e6:.2f} MB)")
    return emu, hist, acc


def read_config(path: str | None) -> dict[str, Any]:
    """The TOML config as a dict (empty without a path); ``data`` and ``out`` are resolved
    relative to the config file's directory."""
    if not path:
        return {}
    with open(path, "rb") as fh:
        conf = tomllib.load(fh)
    for key in ("data", "out"):
        if key in conf:
            conf[key] = str((Path(path).parent / conf[key]).resolve())
    return conf


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="TOML config (configs/emulator-4most-*.toml)")
    ap.add_argument("--data", help="npz from prepare_emulator_data.py")
    ap.add_argument("--out", help="output emulator directory")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="train on this fraction of the training stars")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from specutils_cinn.emulator import EmulatorConfig

    torch.set_num_threads(args.threads)
    conf = read_config(args.config)
    opts = dict(conf.get("emulator", {}))
    for key in ("steps", "seed"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    opts["threads"] = args.threads
    cfg = EmulatorConfig.from_dict(opts)
    data_path = args.data or conf.get("data")
    out = args.out or conf.get("out")
    if not data_path or not out:
        ap.error("give --data and --out (or a --config with data and out)")
    data = load_data(data_path)
    name = conf.get("name", Path(out).name)
    _, hist, acc = train_and_save(data, cfg, Path(out), fraction=args.fraction,
                                  device=args.device, name=name)
    print(f"held-out stars ({acc['n_stars']}, {acc['n_outside']} outside the training ranges, "
          f"clamped): |residual| median {acc['all']['median_abs']:.2e}, "
          f"p99 {acc['all']['p99_abs']:.2e}; training {hist['seconds']:.0f} s")


if __name__ == "__main__":
    main()
