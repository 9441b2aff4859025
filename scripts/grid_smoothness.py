"""Are the grid's synthetic spectra smooth in a label? A fine sequence around one grid star.

The Gaussian-process emulator's 99th percentile does not fall for the coolest stars as the
grid grows (docs/emulator.rst, ``scripts/emulator_variants.py --scaling``). An emulator can
only interpolate what changes smoothly. This script synthesizes a short sequence of stars with
exactly the grid's physics (`specutils_cinn.synthesis.runner.synthesize_star`): the labels of
one grid star, one label stepped in small equal steps, everything else fixed, each spectrum as
4MOST records it (`specutils_cinn.synthesis.shards.instrument_spectra`). For each interior
point it compares the spectrum with the mean of its two neighbors,

    |F(x) - (F(x - h) + F(x + h)) / 2|,

which is the error of linear interpolation over 2h and, for a smooth spectrum, of order
h^2 F''/2: it falls fourfold when h halves, and is far below the change over the step,
|F(x + h) - F(x - h)| / 2. A spectrum that jumps (a change of atmosphere model, of pruned
lines or of sampling between neighboring stars) shows up as an interpolation error that does
not shrink with h. Numbers are the 99th percentile over the pixels of each setup segment.

Usage::

    python scripts/grid_smoothness.py --star-id 1379 --vary teff --step 10 --points 5 \\
        --processes 2 --cache work/smoothness --output docs/emulator/smoothness_teff.rst
    python scripts/grid_smoothness.py --star-id 1379 --vary fe_h --step 0.05 --points 5 \
        --start -2.6 --processes 2 --output docs/emulator/smoothness_fe_h.rst
    python scripts/grid_smoothness.py --star-id 269 --vary fe_h --step 0.05 --points 5 \
        --start -2.6 --processes 2 --output docs/emulator/smoothness_fe_h_warm.rst
    python scripts/grid_smoothness.py --star-id 332 --vary fe_h --step 0.05 --points 5 \
        --start -2.6 --processes 2 --output docs/emulator/smoothness_fe_h_giant.rst
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.validation.rst import simple_table

SHARDS = "grid/4most-lte-v2"
CONFIG = "configs/grid-4most-lte-v2.toml"


def star_labels(shards: str | Path, star_id: int) -> dict[str, float]:
    """The labels of one star of a shard folder."""
    for path in sorted(Path(shards).glob("shard_*.h5")):
        with h5py.File(path, "r") as h:
            ids = list(h["star_id"][()])
            if star_id in ids:
                i = ids.index(star_id)
                labels = {k: float(h["labels"][k][i]) for k in h["labels"]}
                labels.pop("li_fe", None)          # derived from a_li and [Fe/H]
                return labels
    raise ValueError(f"star {star_id} is in no shard of {shards}")


def sequence(labels: Mapping[str, float], vary: str, step: float, points: int,
             start: float | None = None) -> list[dict[str, float]]:
    """``points`` copies of ``labels``, ``vary`` at ``start + k step`` (k from 0).

    ``start`` defaults to the star's own value of ``vary``.
    """
    if vary not in labels:
        raise ValueError(f"the star has no label {vary!r}; it has {sorted(labels)}")
    if points < 3 or not step > 0:
        raise ValueError("need at least 3 points and a positive step")
    first = labels[vary] if start is None else float(start)
    return [{**labels, vary: first + k * step} for k in range(points)]


def interpolation_error(flux: np.ndarray, segment: np.ndarray, n_segments: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """p99 per segment of the interpolation error and of the half change, per interior point.

    Parameters
    ----------
    flux : numpy.ndarray, shape ``[points, npix]``
        The sequence, in label order.
    segment : numpy.ndarray, shape ``[npix]``
        Segment number of each pixel.
    n_segments : int

    Returns
    -------
    error, change : numpy.ndarray, shape ``[points - 2, n_segments]``
        p99 over each segment's pixels of ``|F_i - (F_{i-1} + F_{i+1}) / 2|`` and of
        ``|F_{i+1} - F_{i-1}| / 2``.
    """
    f = np.asarray(flux, dtype=np.float64)
    err = np.abs(f[1:-1] - 0.5 * (f[:-2] + f[2:]))
    chg = 0.5 * np.abs(f[2:] - f[:-2])
    out_e = np.stack([np.percentile(err[:, segment == s], 99, axis=1)
                      for s in range(n_segments)], axis=1)
    out_c = np.stack([np.percentile(chg[:, segment == s], 99, axis=1)
                      for s in range(n_segments)], axis=1)
    return out_e, out_c


def _one(task: tuple) -> tuple[int, dict, dict]:
    k, labels, cache = task
    from specutils_cinn.synthesis.runner import GridConfig, synthesize_star
    from specutils_cinn.synthesis.shards import instrument_spectra
    path = Path(cache) / ("star_" + "_".join(f"{n}{labels[n]:.6g}" for n in sorted(labels))
                          + ".npz")
    if path.is_file():
        with np.load(path, allow_pickle=False) as d:
            return k, {s: d[s] for s in ("hr", "lr")}, json.loads(str(d["info"]))
    config = GridConfig.from_toml(CONFIG)
    work = Path(cache) / "work"
    work.mkdir(parents=True, exist_ok=True)
    wave, flux, info = synthesize_star(config, labels, work)
    spectra = instrument_spectra(wave, flux, ("hr", "lr"))
    info = json.loads(json.dumps(info, default=str))
    np.savez(path, info=np.array(json.dumps(info)), **spectra)
    return k, spectra, info


def main(argv: Sequence[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--star-id", type=int, required=True, help="grid star whose labels are used")
    ap.add_argument("--vary", default="teff", help="label stepped (default teff)")
    ap.add_argument("--step", type=float, default=10.0)
    ap.add_argument("--points", type=int, default=5)
    ap.add_argument("--start", type=float, default=None,
                    help="first value of the varied label (default: the star's own)")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--cache", default="work/smoothness", help="folder of synthesized stars")
    ap.add_argument("--shards", default=SHARDS)
    ap.add_argument("--output", help="write the table (reStructuredText) here")
    args = ap.parse_args(argv)
    if args.output and not Path(args.output).parent.is_dir():
        ap.error(f"the folder of --output does not exist: {args.output}")
    base = star_labels(args.shards, args.star_id)
    stars = sequence(base, args.vary, args.step, args.points, args.start)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    tasks = [(k, s, args.cache) for k, s in enumerate(stars)]
    if args.processes > 1:
        with ProcessPoolExecutor(args.processes) as pool:
            done = sorted(pool.map(_one, tasks), key=lambda r: r[0])
    else:
        done = [_one(t) for t in tasks]
    rows, names = [], []
    for setup in ("hr", "lr"):
        grid = fourmost_setup(setup).grid        # the shards' native pixels
        seg = grid.segment_index
        flux = np.stack([d[1][setup] for d in done])
        err, chg = interpolation_error(flux, seg, len(grid.segments))
        for i in range(err.shape[0]):
            for s, seg_obj in enumerate(grid.segments):
                rows.append([f"{stars[i + 1][args.vary]:.6g}", seg_obj.name,
                             f"{err[i, s]:.2e}", f"{chg[i, s]:.2e}"])
        names.append(setup)
    atm = "; ".join(f"{s[args.vary]:.6g}: {d[2].get('atmosphere', {}).get('source', '?')}"
                    for s, d in zip(stars, done, strict=True))
    label_text = ", ".join(f"{k} {v:.4g}" for k, v in base.items() if k != args.vary)
    table = simple_table(["Value", "Segment", "Interp. p99", "Change p99"], rows)
    text = (f"Smoothness in {args.vary} around grid star {args.star_id} ({label_text}): "
            f"{args.points} syntheses {args.step:g} apart with the grid's physics; 'Interp.': "
            f"distance of each interior spectrum from the mean of its neighbors, 'Change': half "
            f"the difference of the neighbors (continuum units, 99th percentile over the "
            f"segment's pixels). Atmospheres: {atm}.\n"
            f"Command: ``python scripts/grid_smoothness.py --star-id {args.star_id} --vary "
            f"{args.vary} --step {args.step:g} --points {args.points}"
            + (f" --start {args.start:g}" if args.start is not None else "") + "``\n\n"
            + table + "\n")
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
