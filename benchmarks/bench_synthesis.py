"""Synthesis time per star with `specutils_cinn.synthesis.synthesize` (one process).

Times a dwarf (5772/4.44/0.0) and a giant (4500/2.0/-0.5) for several window setups and line-list
choices, and prints CPU seconds (Turbospectrum child processes included) and wall seconds per
star as JSON lines and a table. CPU seconds are the figure to compare: wall time depends on
what else the machine runs. Needs a synthesis install (``specutils-cinn synthesis build``).

Usage::

    python benchmarks/bench_synthesis.py                    # all cases
    python benchmarks/bench_synthesis.py --cases full-0.03  # the grid's setup only
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from specutils_cinn.synthesis.atmospheres import MarcsGrid
from specutils_cinn.synthesis.install import find_synthesis
from specutils_cinn.synthesis.turbospectrum import synthesize

STARS = {"dwarf": {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0},
         "giant": {"teff": 4500.0, "logg": 2.0, "fe_h": -0.5, "vmic": 1.5}}
HR = [(3926.0, 4355.0), (5160.0, 5730.0), (6100.0, 6790.0)]
CASES = {
    "hr-0.02": [(a, b, 0.02) for a, b in HR],
    "hr-0.03": [(a, b, 0.03) for a, b in HR],
    "lr-0.1": [(3700.0, 9500.0, 0.1)],
    "full-0.03": [(3690.0, 9510.0, 0.03)],
}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--lists", nargs="+", default=["ges", "extended"],
                    choices=["ges", "extended"])
    ap.add_argument("--exclude", nargs="*", default=["sih"],
                    help="extended line-list families to leave out")
    args = ap.parse_args()
    inst = find_synthesis()
    grid = MarcsGrid(inst.atmos_dir)
    lists = {"ges": [inst.ges_linelist, inst.hlinedata]}
    lists["extended"] = lists["ges"] + [p for f, p in inst.extended_linelists.items()
                                        if f not in args.exclude]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{inst.version}")
    rows = []
    for case in args.cases:
        for which in args.lists:
            for star, lab in STARS.items():
                c0 = _cpu()
                res = synthesize(lab, CASES[case], install=inst, grid=grid,
                                 line_lists=lists[which])
                rec = {"case": case, "lists": which, "star": star,
                       "cpu_s": round(_cpu() - c0, 1), "wall_s": round(res.seconds, 1),
                       "npix": int(sum(len(w) for w in res.wavelength))}
                print(json.dumps(rec), flush=True)
                rows.append(rec)
    print(f"\n{'case':<10} {'lists':<9} {'star':<6} {'CPU s':>7} {'wall s':>7} {'pixels':>8}")
    for r in rows:
        print(f"{r['case']:<10} {r['lists']:<9} {r['star']:<6} {r['cpu_s']:7.1f} "
              f"{r['wall_s']:7.1f} {r['npix']:8d}")


if __name__ == "__main__":
    main()
