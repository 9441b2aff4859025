"""``specutils-cinn emulator``: prepare data for, train and measure a spectrum emulator.

The emulator stages of the model release (docs/training.rst): ``prepare`` (a synthesis grid
or v2 shards degraded to a 4MOST grid), ``train`` (from ``configs/emulator-4most-*.toml``),
``error`` (the emulator's error per pixel) and ``holdout`` (held-out Turbospectrum test sets
on the model grids). The library functions are in `specutils_cinn.emulator.pipeline` and
`specutils_cinn.emulator.prepare`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._common import add_parser

__all__ = ["register", "set_threads"]

_CONFIG_HELP = "emulator configuration (TOML; configs/emulator-4most-*.toml in the source)"


def set_threads(threads: int) -> None:
    """Limit torch (and OpenMP, if not set already) to ``threads`` CPU threads.

    Parameters
    ----------
    threads : int
        At least 1.

    Raises
    ------
    ValueError
        If ``threads`` is below 1.
    """
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_prepare(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from ..emulator.prepare import prepare_training_data

    info = prepare_training_data(args.output, args.setup, grid=args.grid, shards=args.shards,
                                 step=args.step, chunk=args.chunk, log=_log)
    segs = ", ".join(f"{s.name} {s.start:g}-{s.stop:g}/{s.step:g} A"
                     for s in info["setup"].grid.segments)
    print(f"{info['path']}: {info['n_stars']} stars ({info['n_holdout']} held out), "
          f"{info['setup'].grid.npix} px [{segs}]")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from ..emulator.pipeline import train_from_config

    overrides = {"threads": args.threads}
    for key in ("steps", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    out, hist, acc = train_from_config(args.config, data=args.data, out=args.output,
                                       overrides=overrides, fraction=args.fraction,
                                       device=args.device, log=_log,
                                       checkpoint=args.checkpoint)
    print(f"{out}: held-out stars ({acc['n_stars']}, {acc['n_outside']} outside the training "
          f"ranges, clamped): |residual| median {acc['all']['median_abs']:.2e}, "
          f"p99 {acc['all']['p99_abs']:.2e}; training {hist['seconds']:.0f} s")
    return 0


def _cmd_error(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    import numpy as np

    from ..emulator.pipeline import measure_pixel_error

    res = measure_pixel_error(args.config, args.output, smooth=args.smooth, floor=args.floor,
                              teff_nodes=args.teff_nodes)
    q = [50, 90, 99]
    sigma, ho = np.atleast_2d(res["sigma"]), np.atleast_2d(res["holdout_sigma"])
    meta = res["metadata"]
    nodes = meta.get("teff_nodes", [None])
    weights = meta.get("stars_per_node", [meta["stars"]])
    print(f"{meta['stars']} validation stars, {res['holdout_stars']} held-out stars (not used)"
          f" -> {args.output}")
    for t, n, s, h in zip(nodes, weights, sigma, ho, strict=True):
        where = "" if t is None else f"Teff {t:.0f} K ({n:.1f} stars' weight): "
        line = (f"  {where}sigma per pixel p50/p90/p99 "
                + " / ".join(f"{v:.4f}" for v in np.percentile(s, q)))
        if np.all(np.isfinite(h)):
            line += ("; held-out " + " / ".join(f"{v:.4f}" for v in np.percentile(h, q))
                     + f"; correlation {np.corrcoef(s, h)[0, 1]:.2f}")
        print(line)
    return 0


def _cmd_holdout(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from ..emulator.prepare import prepare_holdout_sets

    prepare_holdout_sets(args.shards or args.grid, emulators=args.emulators,
                         out_dir=args.out_dir, stars=args.stars, configs=args.configs,
                         seed=args.seed, setups=args.setups, log=print,
                         tag=args.tag or "", vmacro_range=args.vmacro_range)
    return 0


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")


def register(sub) -> None:
    """Add ``emulator`` (``prepare``, ``train``, ``error``, ``holdout``) to the commands.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the top-level parser.
    """
    p = add_parser(sub, "emulator", "prepare data for, train and measure a spectrum emulator",
                   "The spectrum emulator's release stages: prepare its training data from a "
                   "synthesis grid, train it from a configuration, measure its error per pixel, "
                   "and make held-out test sets (see the 'training' page of the docs).")
    esub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    q = add_parser(
        esub, "prepare", "degrade a synthesis grid to a 4MOST grid for training an emulator",
        "Degrade a synthesis grid to a 4MOST grid (Gaussian LSF and binning, no rotation, no "
        "noise, no renormalization) and write the emulator's training data (.npz: labels, "
        "flux, star_id, holdout, setup, provenance). A v2 grid of shards is already at the "
        "native 4MOST sampling and is taken as it is.",
    )
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--grid", default=None,
                     help="synthesis grid at synthesis resolution (.h5, or the seed grid's .npz) "
                     "(default: none; give --grid or --shards)")
    src.add_argument("--shards", default=None,
                     help="folder of v2 grid shards, already at 4MOST sampling "
                     "(default: none; give --grid or --shards)")
    q.add_argument("--setup", choices=("hr", "lr"), required=True, help="the 4MOST setup")
    q.add_argument("--step", type=float, default=None,
                   help="pixel step in Angstrom (default: hr 0.1, lr 0.5 for --grid; the "
                   "native step for --shards, where it must be a whole multiple of it)")
    q.add_argument("-o", "--output", required=True, help="output .npz")
    q.add_argument("--chunk", type=int, default=32, help="stars per degrade call")
    _add_threads(q)
    q.set_defaults(func=_cmd_prepare)

    q = add_parser(
        esub, "train", "train a spectrum emulator from a TOML configuration",
        "Train a spectrum emulator on data made by 'emulator prepare'. Held-out stars are "
        "never trained on nor used for early stopping; the emulator's accuracy on them is "
        "measured after training and stored in its metadata. Options given here override the "
        "configuration.",
    )
    q.add_argument("config", nargs="?", default=None,
                   help=_CONFIG_HELP + " (default: none; then give --data and -o)")
    q.add_argument("--data", default=None,
                   help="emulator data from 'emulator prepare' (default: the configuration's)")
    q.add_argument("-o", "--output", default=None,
                   help="emulator directory to write (default: the configuration's out)")
    q.add_argument("--steps", type=int, default=None,
                   help="maximum optimization steps (default: the configuration's)")
    q.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="training checkpoint (.safetensors), written at every evaluation and "
                   "at the end of each phase; if it exists, training continues from it "
                   "(default: none)")
    q.add_argument("--seed", type=int, default=None,
                   help="seed of the split, weights and batches (default: the configuration's)")
    q.add_argument("--fraction", type=float, default=1.0,
                   help="train on this fraction of the training stars")
    q.add_argument("--device", default="cpu", help="where to train: cpu, cuda or cuda:N")
    _add_threads(q)
    q.set_defaults(func=_cmd_train)

    q = add_parser(
        esub, "error", "write an emulator's error per pixel",
        "Emulate the stars the emulator was validated on but not fitted to (its validation "
        "split, recomputed from the configuration) and write the RMS of emulated minus "
        "synthetic flux per pixel as array 'sigma' of an .npz, which '[simulator] "
        "emulator_error' of a training configuration reads.",
    )
    q.add_argument("config", help=_CONFIG_HELP + " that the emulator was trained from")
    q.add_argument("-o", "--output", required=True, help="output .npz")
    q.add_argument("--smooth", type=int, default=5,
                   help="squared residuals averaged over this many pixels (odd)")
    q.add_argument("--floor", type=float, default=1e-3, help="smallest error per pixel")
    q.add_argument("--teff-nodes", type=float, nargs="+", default=None, metavar="K",
                   help="measure the error at these Teff (K, at least two, increasing), "
                        "interpolated linearly in between: training spectra then get the "
                        "error at their own Teff (default: one error for every Teff)")
    _add_threads(q)
    q.set_defaults(func=_cmd_error)

    q = add_parser(
        esub, "holdout", "held-out synthetic test sets on the model grids",
        "Degrade stars of a synthesis grid to the grids of the emulator-trained models "
        "(rotation with one v sin i per star in 0-25 km/s, LSF, binning) and save them as "
        "training sets: the held-out stars (emu_{hr,lr}_holdout.npz, the 'holdout' of the "
        "training configurations and the stars of the validation pages), or with --stars "
        "emulator-validation the emulator's validation stars (emu_{hr,lr}_select.npz, the "
        "'selection' set that picks the cINN weights).",
    )
    q.add_argument("--grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz",
                   help="synthesis grid (.h5 or the seed grid's .npz)")
    q.add_argument("--emulators", default="work/emulators",
                   help="folder with 4most-{hr,lr}-emulator")
    q.add_argument("--out-dir", default="work", help="folder of the training sets written")
    q.add_argument("--stars", choices=("holdout", "emulator-validation"), default="holdout",
                   help="which stars")
    q.add_argument("--configs", default="configs",
                   help="folder with emulator-4most-{hr,lr}.toml (for --stars "
                   "emulator-validation)")
    q.add_argument("--setups", nargs="+", choices=("hr", "lr"), default=["hr", "lr"],
                   help="the setups to make")
    q.add_argument("--seed", type=int, default=2027, help="seed of the v sin i draws")
    q.add_argument("--shards", default=None,
                   help="a v2 grid (folder of shards) instead of --grid; needs --tag "
                   "(default: none)")
    q.add_argument("--tag", default=None,
                   help="with --shards: version tag of the emulator, config and output names "
                        "(e.g. v2: 4most-hr-emulator-v2, emulator-4most-hr-v2.toml, "
                        "emu_v2_hr_holdout.npz; default: none)")
    q.add_argument("--vmacro-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="with --shards: radial-tangential macroturbulence drawn uniformly "
                        "(km/s), as the v2 training configurations do (default: none)")
    _add_threads(q)
    q.set_defaults(func=_cmd_holdout)
