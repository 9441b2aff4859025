"""Synthesis CPU time per star: Turbospectrum as is against our fast settings, and what it costs.

For each test star (a cool metal-rich giant, a metal-poor giant, a hot dwarf and the Sun) the
3690-9510 A range of the grid is synthesised twice with the extended line lists:

- **reference**: Turbospectrum's own hydrogen-line treatment and every line of every list;
- **fast**: hydrogen wings on sparse anchors (:mod:`specutils_cinn.synthesis.hydrogen_patch`,
  ``--hydrogen-wing-fraction``) and per-star line pruning
  (:mod:`specutils_cinn.synthesis.pruning`, ``--min-depth``).

It prints CPU seconds per star (Turbospectrum child processes included; wall time depends on
what else the machine runs) with the ratio, and the largest flux difference between the two,
raw and after the 4MOST HR and LR line-spread functions and pixel grids
(``specutils_cinn.instruments.degrade``). The issue's bound is max |dF| <= 0.002 after the LSF.
Needs a synthesis install (``specutils-cinn synthesis build``).

``--breakdown`` instead splits the cost of one star (Turbospectrum as is): a single weak line
(the transfer at every wavelength point), hydrogen lines alone, hydrogen with the wings on
anchors, the Gaia-ESO list with hydrogen, and the extended lists.

Usage::

    python benchmarks/bench_synthesis.py                      # all stars, JSON lines + table
    python benchmarks/bench_synthesis.py --breakdown --stars sun
    python benchmarks/bench_synthesis.py --stars sun --step 0.03
    python benchmarks/bench_synthesis.py --json work/bench_synthesis.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from specutils_cinn.instruments import fourmost_setup
from specutils_cinn.instruments.degradation import degrade
from specutils_cinn.synthesis.atmospheres import MarcsGrid
from specutils_cinn.synthesis.install import find_synthesis
from specutils_cinn.synthesis.pruning import LinePruning
from specutils_cinn.synthesis.turbospectrum import synthesize

#: The test stars: labels for :func:`~specutils_cinn.synthesis.turbospectrum.synthesize`.
STARS = {
    "cool-metal-rich-giant": {"teff": 4000.0, "logg": 1.5, "fe_h": 0.3, "vmic": 1.5},
    "metal-poor-giant": {"teff": 4500.0, "logg": 1.5, "fe_h": -2.0, "vmic": 1.8},
    "hot-dwarf": {"teff": 6800.0, "logg": 4.2, "fe_h": -0.3, "vmic": 1.8},
    "sun": {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0},
}
RANGE = (3690.0, 9510.0)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _max_diff(wave: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    out = {"raw": float(np.max(np.abs(a - b)))}
    for name in ("hr", "lr"):
        setup = fourmost_setup(name)
        da, db = degrade(wave, a, setup), degrade(wave, b, setup)
        out[name] = float(np.nanmax(np.abs(da - db)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", nargs="+", default=list(STARS), choices=list(STARS))
    ap.add_argument("--step", type=float, default=0.03, help="sampling step (A)")
    ap.add_argument("--hydrogen-wing-fraction", type=float, default=0.02)
    ap.add_argument("--min-depth", type=float, default=1e-4)
    ap.add_argument("--exclude", nargs="*", default=["sih"],
                    help="extended line-list families to leave out")
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--rst", type=Path, help="also write the table as reStructuredText "
                    "(docs/synthesis/bench_synthesis.rst)")
    ap.add_argument("--breakdown", action="store_true",
                    help="split the cost of each star into its parts instead")
    args = ap.parse_args()
    if args.breakdown:
        _breakdown(args)
        return
    inst = find_synthesis()
    grid = MarcsGrid(inst.atmos_dir)
    lists = [inst.ges_linelist, inst.hlinedata] + [
        p for f, p in inst.extended_linelists.items() if f not in args.exclude]
    window = [(RANGE[0], RANGE[1], args.step)]
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"# {hardware}; {inst.version}; patches: {', '.join(inst.patches) or 'none'}")
    rows = []
    for star in args.stars:
        lab = STARS[star]
        c0 = _cpu()
        ref = synthesize(lab, window, install=inst, grid=grid, line_lists=lists)
        c1 = _cpu()
        fast = synthesize(lab, window, install=inst, grid=grid, line_lists=lists,
                          hydrogen_wing_fraction=args.hydrogen_wing_fraction,
                          line_pruning=LinePruning(min_depth=args.min_depth))
        c2 = _cpu()
        diff = _max_diff(ref.wavelength[0], ref.flux[0], fast.flux[0])
        rec = {"star": star, **lab, "step": args.step,
               "reference_cpu_s": round(c1 - c0, 1), "fast_cpu_s": round(c2 - c1, 1),
               "speedup": round((c1 - c0) / (c2 - c1), 2),
               "lines_in": fast.pruning.get("lines_in"),
               "lines_kept": fast.pruning.get("lines_kept"),
               "max_dF_raw": round(diff["raw"], 5), "max_dF_hr": round(diff["hr"], 5),
               "max_dF_lr": round(diff["lr"], 5),
               "hydrogen_wing_fraction": args.hydrogen_wing_fraction,
               "min_depth": args.min_depth, "hardware": hardware}
        print(json.dumps(rec), flush=True)
        rows.append(rec)
    print(f"\n{'star':<22} {'ref CPU s':>9} {'fast CPU s':>10} {'ratio':>6} {'lines kept':>11} "
          f"{'max|dF| HR':>10} {'max|dF| LR':>10}")
    for r in rows:
        print(f"{r['star']:<22} {r['reference_cpu_s']:9.1f} {r['fast_cpu_s']:10.1f} "
              f"{r['speedup']:6.2f} {r['lines_kept']:11d} {r['max_dF_hr']:10.5f} "
              f"{r['max_dF_lr']:10.5f}")
    if len(rows) > 1:
        total_ref = sum(r["reference_cpu_s"] for r in rows)
        total_fast = sum(r["fast_cpu_s"] for r in rows)
        print(f"{'all':<22} {total_ref:9.1f} {total_fast:10.1f} {total_ref / total_fast:6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.rst:
        args.rst.parent.mkdir(parents=True, exist_ok=True)
        args.rst.write_text(_rst(rows, hardware, inst.version))


def _breakdown(args: argparse.Namespace) -> None:
    import tempfile

    inst = find_synthesis()
    grid = MarcsGrid(inst.atmos_dir)
    extended = [p for f, p in inst.extended_linelists.items() if f not in args.exclude]
    window = [(RANGE[0], RANGE[1], args.step)]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{inst.version}; {RANGE[0]:.0f}-{RANGE[1]:.0f} A at {args.step} A; CPU s")
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one_weak_line.list"
        one.write_text("'0108.001016         '    1         1\n'OH one weak line'\n"
                       "  3600.111   0.901  -5.584    0.000    1.0  1.715E+08 'X' 'X'\n")
        cases = [("one weak line", [one], None),
                 ("hydrogen only", [inst.hlinedata], None),
                 ("hydrogen only, wings on anchors", [inst.hlinedata], 0.02),
                 ("Gaia-ESO + hydrogen", [inst.ges_linelist, inst.hlinedata], None),
                 ("extended lists", [inst.ges_linelist, inst.hlinedata, *extended], None)]
        for star in args.stars:
            for name, lists, hwf in cases:
                c0 = _cpu()
                synthesize(STARS[star], window, install=inst, grid=grid, line_lists=lists,
                           hydrogen_wing_fraction=hwf)
                print(json.dumps({"star": star, "case": name, "cpu_s": round(_cpu() - c0, 1)}),
                      flush=True)


def _rst(rows: list[dict], hardware: str, version: str) -> str:
    head = ["star (Teff/logg/[Fe/H]/vmic)", "reference CPU s", "fast CPU s", "ratio",
            "lines kept", "max abs dF HR", "max abs dF LR"]
    body = [[f"{r['star']} ({r['teff']:.0f}/{r['logg']:g}/{r['fe_h']:+.1f}/{r['vmic']:g})",
             f"{r['reference_cpu_s']:.1f}", f"{r['fast_cpu_s']:.1f}", f"{r['speedup']:.2f}",
             f"{r['lines_kept']:,} of {r['lines_in']:,}", f"{r['max_dF_hr']:.5f}",
             f"{r['max_dF_lr']:.5f}"] for r in rows]
    if len(rows) > 1:
        ref = sum(r["reference_cpu_s"] for r in rows)
        fast = sum(r["fast_cpu_s"] for r in rows)
        body.append(["all", f"{ref:.1f}", f"{fast:.1f}", f"{ref / fast:.2f}", "", "", ""])
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    rule = "  ".join("=" * w for w in widths)
    lines = [f".. generated by python benchmarks/bench_synthesis.py --rst ...; {hardware}; "
             f"{version}; step {rows[0]['step']} A, hydrogen_wing_fraction "
             f"{rows[0]['hydrogen_wing_fraction']}, min_depth {rows[0]['min_depth']}", "",
             rule, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines + [rule, ""])


if __name__ == "__main__":
    main()
