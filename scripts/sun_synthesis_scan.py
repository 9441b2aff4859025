"""Turbospectrum syntheses of the Sun around its reference parameters (the real-stars diagnosis).

Synthesizes Teff 5772 K, log g 4.44 with [Fe/H] and vmic varied around the Sun, with the
Gaia-ESO list only ("ges", the lists the v1 models were trained on) and with the extended
linemake lists ("extended", without SiH as in the grid configuration), optionally with a
calibrated line list (``--loggf``). Every synthetic spectrum is kept in ``--cache`` as one
``.npz`` per (list, [Fe/H], vmic), so reruns reuse it; ``scripts/real_stars.py`` reads them.

Usage::

    python scripts/sun_synthesis_scan.py --cache work/sun_scan --processes 2
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from specutils_cinn.synthesis import find_synthesis, synthesize
from specutils_cinn.synthesis.loggf import calibrated_line_lists

#: Wavelength windows (air A): the three 4MOST HR arms with margins, and the rest of the range
#: both observed solar spectra cover for the LR setup.
WINDOWS = {"HB": (3916.0, 4365.0), "HG": (5150.0, 5740.0), "HR": (6090.0, 6800.0)}
FE_H = (-0.3, -0.2, -0.1, 0.0, 0.1)
VMIC = (1.0,)
EXTRA = ((0.0, 0.7), (0.0, 1.3), (-0.2, 0.7), (-0.2, 1.3))


def sun_labels(fe_h: float, vmic: float) -> dict[str, float]:
    """The Sun at the IAU nominal Teff/log g, scaled-solar abundances, A(Li) = 1.05."""
    return {"teff": 5772.0, "logg": 4.44, "fe_h": fe_h, "vmic": vmic, "a_li": 1.05}


def scan_path(cache: Path, lists: str, fe_h: float, vmic: float, step: float) -> Path:
    """File holding one synthetic spectrum of the scan."""
    return cache / f"sun_{lists}_feh{fe_h:+.2f}_vmic{vmic:.2f}_step{step:g}.npz"


def line_lists(install, which: str, exclude=("sih",), loggf: str | None = None,
               work: Path | None = None) -> list[Path]:
    """Line lists for ``which`` in {"ges", "extended"}; ``loggf`` (a calibration ECSV) gives
    calibrated copies of the lists it covers (written to ``work``)."""
    if loggf:
        lists = calibrated_line_lists(install, loggf, work, exclude=exclude)
        ges = lists[0]
        extended = lists[2:]
    else:
        ges = install.ges_linelist
        extended = [p for fam, p in install.extended_linelists.items() if fam not in exclude]
    return [ges, install.hlinedata] + (extended if which == "extended" else [])


def _one(task):
    lists, fe_h, vmic, step, out, loggf = task
    if out.exists():
        return out, 0.0
    install = find_synthesis()
    work = out.parent / f"lists_{out.stem}"
    res = synthesize(sun_labels(fe_h, vmic), [(lo, hi, step) for lo, hi in WINDOWS.values()],
                     install=install, line_lists=line_lists(install, lists.split("+")[0],
                                                            loggf=loggf, work=work))
    np.savez(out, names=np.array(list(WINDOWS)),
             **{f"w{i}": w for i, w in enumerate(res.wavelength)},
             **{f"f{i}": f.astype(np.float32) for i, f in enumerate(res.flux)})
    return out, res.seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="work/sun_scan")
    ap.add_argument("--step", type=float, default=0.02)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--lists", nargs="+", default=["ges", "extended"])
    ap.add_argument("--loggf", default=None,
                    help="log gf calibration (ECSV) whose calibrated lists to use")
    ap.add_argument("--tag", default="", help="suffix of the list name in the cache (e.g. cal)")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cache = cache.resolve()
    tasks = []
    for lists in args.lists:
        name = lists + (f"+{args.tag}" if args.tag else "")
        points = [(f, v) for f in FE_H for v in VMIC] + list(EXTRA)
        for fe_h, vmic in points:
            tasks.append((name, fe_h, vmic, args.step,
                          scan_path(cache, name, fe_h, vmic, args.step), args.loggf))
    with ProcessPoolExecutor(args.processes) as pool:
        for out, sec in pool.map(_one, tasks):
            print(f"{out.name}: {sec:.1f} s wall", flush=True)


if __name__ == "__main__":
    main()
