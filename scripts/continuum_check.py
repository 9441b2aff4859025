"""Does the pseudo-continuum hold on a model's training spectra? A check per grid segment.

A model whose ``[model.normalization]`` is ``"pseudo-continuum"`` divides every input, in
training and in inference, by a clipped cubic fitted to each grid segment
(`specutils_cinn.inputs.normalization.fit_continuum`). Where a segment is blanketed by lines
and broad wings reach its end (Ca II H and K at the blue end of 4MOST's HB arm in cool
stars), the cubic can fall to zero and below, and the normalized flux there reaches
thousands: inputs that no observed spectrum of a normal star has, and spikes in the training
loss. The ``floor`` of the normalization (the continuum never below that fraction of the
segment's highest) bounds them.

This script draws ``--spectra`` training spectra from the configuration's simulator (the
emulator, broadening, noise, masks, gaps and continuum errors of training,
`specutils_cinn.training.augment_batch`, with the model's pixel mask) and, per grid segment
and for each ``--floors`` value, reports: the share of spectra whose unfloored continuum
falls to zero or below somewhere, the share of spectra and of pixels the floor lifts, and
the 99th percentile and maximum over spectra of the largest absolute normalized flux.

Usage::

    python scripts/continuum_check.py configs/4most-hr-lte-v2.toml [--spectra 1024]
        [--floors 0 0.1 0.2] [--seed 11] [--rst docs/training/continuum_floor_hr.rst]

The configuration's emulator must exist (docs/training.rst, "The v2 models").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from specutils_cinn.inputs import PixelMask
from specutils_cinn.inputs.normalization import fit_continuum
from specutils_cinn.training import augment_batch
from specutils_cinn.training.config import read_training_file
from specutils_cinn.training.simulation import EmulatorSimulator
from specutils_cinn.validation.rst import simple_table

BATCH = 64


def draw(config: Path, n: int, seed: int):
    """``n`` augmented training spectra of ``config``: (grid, flux, valid, emulator name)."""
    cfg = read_training_file(config)
    sim = EmulatorSimulator.from_config(cfg.simulator or {}, cfg.base)
    grid = sim.grid
    mask_path = cfg.model.get("pixel_mask")
    masked = (None if mask_path is None
              else torch.as_tensor(PixelMask.read(cfg.base / mask_path).on_grid(grid)))
    width = torch.as_tensor(grid.pixel_width, dtype=torch.float32)
    segment = torch.as_tensor(grid.segment_index)
    gen = torch.Generator().manual_seed(seed)
    fluxes, valids = [], []
    for start in range(0, n, BATCH):
        flux, _labels = sim.sample(min(BATCH, n - start), gen)
        f, _s, v = augment_batch(flux.to(torch.float32), width, segment, cfg.training, gen,
                                 masked)
        fluxes.append(f.numpy())
        valids.append(v.numpy())
    name = Path(str(cfg.simulator["emulator"])).name
    gp = getattr(sim.emulator, "gp", None)
    if gp is not None:
        name += f", Gaussian processes on {gp.inputs.shape[0]:,} grid stars"
    return grid, np.concatenate(fluxes), np.concatenate(valids), name


def table(grid, flux, valid, floors) -> list[list[str]]:
    """One row per segment and floor (see the module docstring)."""
    continuum, _fitted = fit_continuum(flux, valid, grid)  # degree 3, 5 iterations, no floor
    rows = []
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        c, f, v = continuum[:, sl], flux[:, sl], valid[:, sl]
        top = np.max(c, axis=1, keepdims=True)
        below_zero = np.any((c <= 0) & v, axis=1).mean()
        for floor in floors:
            lifted = (c < floor * top) & v if floor > 0 else np.zeros_like(v)
            held = np.maximum(c, floor * top)
            ok = v & (held > 0)
            ratio = np.where(ok, np.abs(f) / np.where(held > 0, held, 1.0), 0.0).max(axis=1)
            rows.append([seg.name, f"{floor:g}", f"{100 * below_zero:.1f}",
                         f"{100 * lifted.any(axis=1).mean():.1f}",
                         f"{100 * lifted.sum() / max(v.sum(), 1):.2f}",
                         f"{np.percentile(ratio, 99):.3g}", f"{ratio.max():.3g}"])
    return rows


HEADER = ["segment", "floor", "continuum <= 0 (% spectra)", "lifted (% spectra)",
          "lifted (% pixels)", "p99 of max abs F/C", "max abs F/C"]


def rst(rows: list[list[str]], note: str) -> str:
    return "\n".join([f".. {note}", "", simple_table(HEADER, rows), ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path, help="training configuration ([simulator] kind)")
    ap.add_argument("--spectra", type=int, default=1024)
    ap.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rst", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    if args.spectra < 1 or any(not 0 <= f < 1 for f in args.floors):
        ap.error("need --spectra >= 1 and floors from 0 to below 1")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    grid, flux, valid, name = draw(args.config, args.spectra, args.seed)
    rows = table(grid, flux, valid, args.floors)
    print("  ".join(HEADER))
    for r in rows:
        print("  ".join(r))
    print(f"# {len(flux)} training spectra of {args.config} (emulator {name}), "
          f"{time.perf_counter() - t0:.0f} s")
    if args.rst:
        args.rst.parent.mkdir(parents=True, exist_ok=True)
        note = (f"generated by python scripts/continuum_check.py {args.config} --spectra "
                f"{args.spectra} --floors {' '.join(f'{f:g}' for f in args.floors)} --seed "
                f"{args.seed} --rst {args.rst}; emulator {name}; do not edit.")
        args.rst.write_text(rst(rows, note))
        print(f"wrote {args.rst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
