"""An emulator's error per pixel, from the stars it was validated on but not fitted to.

Recomputes the validation split that ``scripts/train_emulator.py`` used (same config, same
seed: whole stars, never the ``holdout`` stars), emulates those stars at their labels and
writes the RMS of emulated minus Turbospectrum flux per pixel, averaged over 5 neighbouring
pixels and at least 0.001 (`specutils_cinn.emulator.pixel_error`), as array ``sigma`` of an
``.npz`` file. ``[simulator] emulator_error`` of a training configuration reads it: the
training spectra then get noise of that size per pixel, so the cINN learns not to trust what
the emulator gets wrong. The held-out stars are left for validating the cINN; their per-pixel
RMS is printed for comparison only.

Usage::

    python scripts/emulator_error.py --config configs/emulator-4most-lr.toml \\
        --out work/emu_lr_error.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_emulator import load_data, read_config, validation_rows  # noqa: E402

SMOOTH = 5
FLOOR = 1e-3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="emulator config (configs/emulator-*.toml)")
    ap.add_argument("--out", required=True, help="output .npz")
    args = ap.parse_args()

    from specutils_cinn.emulator import (
        EmulatorConfig,
        load_emulator,
        pixel_error,
        residual_statistics,
    )

    conf = read_config(args.config)
    cfg = EmulatorConfig.from_dict(dict(conf.get("emulator", {})))
    data = load_data(conf["data"])
    emu = load_emulator(conf["out"])
    val = validation_rows(data, cfg)
    res = residual_statistics(emu, data["labels"][val], data["flux"][val])["residuals"]
    sigma = pixel_error(res, emu.grid, smooth=SMOOTH, floor=FLOOR)
    ho = data["holdout"]
    ho_res = residual_statistics(emu, data["labels"][ho], data["flux"][ho])["residuals"]
    ho_sigma = pixel_error(ho_res, emu.grid, smooth=SMOOTH, floor=FLOOR)
    meta = {"emulator": str(conf["out"]),
            "emulator_weights_sha256": emu.metadata.get("weights_sha256"),
            "stars": int(np.unique(data["star_id"][val]).size),
            "smooth_pixels": SMOOTH, "floor": FLOOR,
            "source": "validation stars of the emulator (not fitted, not held out)"}
    np.savez(args.out, sigma=sigma, metadata=json.dumps(meta))
    q = [50, 90, 99]
    print(f"{meta['stars']} validation stars: sigma per pixel p50/p90/p99 "
          + " / ".join(f"{v:.4f}" for v in np.percentile(sigma, q))
          + f"; held-out stars ({int(np.unique(data['star_id'][ho]).size)}, not used): "
          + " / ".join(f"{v:.4f}" for v in np.percentile(ho_sigma, q))
          + f"; correlation {np.corrcoef(sigma, ho_sigma)[0, 1]:.2f} -> {args.out}")


if __name__ == "__main__":
    main()
