"""Summarize a synthesis grid: size, failures, label coverage and synthesis time per star.

Reads the consolidated HDF5 file (run ``specutils-cinn grid CONFIG --consolidate-only`` first to
include the stars finished since the last consolidation) and the failure records in its
``.parts`` directory. CPU seconds are those of the Turbospectrum programs (babsma, bsyn,
interpol_modeles) of each star; wall seconds depend on what else ran on the machine.

A folder of v2 shards (``grid/4most-lte-v2``) is read with
`specutils_cinn.synthesis.shards.read_shards` (its LR spectra; the labels and per-star records
are the same for both setups), with the failed stars the shards record.

Usage::

    python scripts/grid_summary.py work/grid-4most-lte-v1.h5
    python scripts/grid_summary.py grid/4most-lte-v2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from specutils_cinn.synthesis import read_grid


def _stats(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    if not x.size:
        return "n/a"
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return f"median {p50:6.1f} s  (10-90 %: {p10:.1f}-{p90:.1f} s, n={x.size})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    args = ap.parse_args()
    path = Path(args.grid)
    if path.is_dir():
        from specutils_cinn.synthesis.shards import read_shards, shard_star_ids

        g = read_shards(path, "lr")
        files = sorted(path.glob("shard_*.h5"))
        failed_ids = sorted(shard_star_ids(path)[1])
        failed = []
        size = sum(f.stat().st_size for f in files)
        prov = g.meta
        print(f"{path}: {len(g)} stars ({int(g.holdout.sum())} held out), {len(failed_ids)} "
              f"failed {failed_ids[:10]}; {len(files)} shards, {size / 1e6:.1f} MB "
              f"({size / 1e3 / max(len(g), 1):.0f} kB per star)")
    else:
        g = read_grid(path)
        parts = path.with_name(path.name + ".parts")
        failed = sorted(parts.glob("star_*.failed.json")) if parts.is_dir() else []
        prov = g.meta.get("provenance", {})
        print(f"{path}: {len(g)} stars ({int(g.holdout.sum())} held out), {len(failed)} "
              f"failed; file {os.path.getsize(path) / 1e6:.0f} MB")
    print(f"code: {prov.get('code')}; machine: {platform.machine()}, {os.cpu_count()} cores")
    for name, (wave, flux) in g.segments.items():
        step = float(np.median(np.diff(wave)))
        print(f"segment {name}: {wave[0]:.2f}-{wave[-1]:.2f} A, step {step:.3f} A, "
              f"{wave.size} px; flux range {np.nanmin(flux):.3f}..{np.nanmax(flux):.3f}")
    for name in ("teff", "logg", "fe_h", "vmic", "mg_fe", "ca_fe", "ti_fe", "mn_fe", "ni_fe",
                 "a_li"):
        if name in g.labels:
            v = g.labels[name]
            print(f"  {name:6s} {v.min():9.2f} .. {v.max():9.2f}")
    for key in ("source", "interpolated", "li_physics"):
        if key in g.atmosphere:
            src, n = np.unique(g.atmosphere[key], return_counts=True)
            print(f"{key}: " + ", ".join(f"{s} {c}" for s, c in zip(src, n, strict=True)))
    fe_h = g.labels["fe_h"]
    edges = [-4.0, -3.0, -2.0, -1.0, 0.0, 0.5]
    bins = list(zip(edges[:-1], edges[1:], strict=True))
    counts = [int(((fe_h >= a) & (fe_h < b)).sum()) for a, b in bins]
    print("[Fe/H] bins: " + ", ".join(f"{a:+.0f}..{b:+.1f}: {c}"
                                      for (a, b), c in zip(bins, counts, strict=True)))
    giant = g.labels["logg"] < 3.5
    for label, sel in (("all", np.ones(len(g), bool)), ("dwarfs (log g >= 3.5)", ~giant),
                       ("giants (log g < 3.5)", giant)):
        print(f"{label}:")
        if g.cpu_seconds is not None:
            print(f"  CPU per star:  {_stats(g.cpu_seconds[sel])}")
        if g.seconds is not None:
            print(f"  wall per star: {_stats(g.seconds[sel])}")
    for f in failed[:10]:
        rec = json.loads(f.read_text())
        print(f"failed star {rec['star_id']}: {rec['error']}")


if __name__ == "__main__":
    main()
