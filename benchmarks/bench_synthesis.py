"""Synthesis CPU time per star: Turbospectrum as is against the v2 grid's settings.

For each test star (a cool metal-rich giant, a metal-poor giant, a hot dwarf and the Sun) the
3690-9510 A range of the grid is synthesized with the extended line lists (1D LTE lithium in
every run, so that the comparison is Turbospectrum's alone):

- **reference**: Turbospectrum as is: one run at a uniform step of half the star's Doppler
  width at 3690 A (the step its bluest lines need, ``scripts/sampling_check.py``;
  ``--reference-fraction`` for a finer one, then in overlapping runs if it needs more points
  than Turbospectrum takes in one), every line of every list, Turbospectrum's own
  hydrogen-line treatment;
- **grid**: the settings of the grid config (``--config``, default the v2 grid's): pieces whose
  step follows the Doppler width (``sampling_fraction``,
  :func:`specutils_cinn.synthesis.sampling.doppler_windows`), hydrogen wings on sparse anchors
  (:mod:`specutils_cinn.synthesis.hydrogen_patch`) and per-star line pruning
  (:mod:`specutils_cinn.synthesis.pruning`).

It prints CPU seconds per star (Turbospectrum child processes included; wall time depends on
what else the machine runs) with the ratios, and the largest flux difference against the
reference after the 4MOST HR and LR line-spread functions and pixel grids
(:func:`specutils_cinn.synthesis.shards.instrument_spectra`). The issue's bound is
max |dF| <= 0.002 after the LSF. Needs a synthesis install (``specutils-cinn synthesis build``).

``--breakdown`` instead splits the cost of one star (Turbospectrum as is, uniform ``--step``):
a single weak line (the transfer at every wavelength point), hydrogen lines alone, hydrogen
with the wings on anchors, the Gaia-ESO list with hydrogen, and the extended lists.

Usage::

    python benchmarks/bench_synthesis.py --rst docs/synthesis/bench_synthesis.rst
    python benchmarks/bench_synthesis.py --stars sun --reference-cache work/bench_synthesis
    python benchmarks/bench_synthesis.py --stars cool-metal-rich-giant --piece-overlap 0
    python benchmarks/bench_synthesis.py --stars cool-metal-rich-giant --no-pruning
    python benchmarks/bench_synthesis.py --stars cool-metal-rich-giant --reference-fraction 0.25
    python benchmarks/bench_synthesis.py --stars cool-metal-rich-giant --hydrogen-wing-fraction 0
    python benchmarks/bench_synthesis.py --breakdown --stars sun --step 0.03
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from specutils_cinn.synthesis.atmospheres import MarcsGrid
from specutils_cinn.synthesis.install import find_synthesis
from specutils_cinn.synthesis.pruning import LinePruning
from specutils_cinn.synthesis.runner import GridConfig
from specutils_cinn.synthesis.sampling import doppler_windows, join_pieces, padded_pieces
from specutils_cinn.synthesis.shards import instrument_spectra
from specutils_cinn.synthesis.turbospectrum import synthesize
from specutils_cinn.validation.rst import simple_table

#: The test stars: labels for :func:`~specutils_cinn.synthesis.turbospectrum.synthesize`.
STARS = {
    "cool-metal-rich-giant": {"teff": 4000.0, "logg": 1.5, "fe_h": 0.3, "vmic": 1.5},
    "metal-poor-giant": {"teff": 4500.0, "logg": 1.5, "fe_h": -2.0, "vmic": 1.8},
    "hot-dwarf": {"teff": 6800.0, "logg": 4.2, "fe_h": -0.3, "vmic": 1.8},
    "sun": {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0},
}
RANGE = (3690.0, 9510.0)
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "grid-4most-lte-v2.toml"
#: Wavelength points per Turbospectrum run (its lpoint is 1,000,000) and the overlap (A) of
#: the runs of a reference that needs more.
MAX_POINTS = 900_000
REFERENCE_OVERLAP = 20.0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _max_diff(ref: dict[str, np.ndarray], wave: np.ndarray, flux: np.ndarray
              ) -> dict[str, Any]:
    other = instrument_spectra(wave, flux)
    out: dict[str, Any] = {name: float(np.nanmax(np.abs(other[name] - ref[name])))
                           for name in ref}
    out["lr_abs"] = np.abs(other["lr"] - ref["lr"])
    return out


def _near_ends(lr_abs: np.ndarray, pieces: list, within: float = 15.0) -> float:
    """Largest LR difference within ``within`` A of the piece ends (where wings could be cut)."""
    from specutils_cinn.instruments import fourmost_setup

    wave = np.concatenate([s.centers for s in fourmost_setup("lr").grid.segments])
    near = np.zeros(wave.size, dtype=bool)
    for p in pieces[:-1]:
        near |= np.abs(wave - p[1]) < within
    return float(np.nanmax(lr_abs[near])) if near.any() else float("nan")


def _reference(lab: dict, step: float, inst, grid, lists, star: str, cache: Path | None
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """Turbospectrum as is at a uniform step: wavelength, flux and CPU seconds (cached)."""
    path = None
    if cache is not None:
        tag = "_".join(f"{lab[k]:g}" for k in ("teff", "logg", "fe_h", "vmic"))
        path = cache / f"reference_{star}_{tag}_{step:.4f}_{len(lists)}lists.npz"
        if path.exists():
            with np.load(path) as z:
                return z["wavelength"], z["flux"], float(z["cpu_s"])
    # one run, or (beyond Turbospectrum's 1,000,000 points per run) equal runs of the same
    # step that overlap by REFERENCE_OVERLAP A and are trimmed where they meet
    n_runs = int(np.ceil((RANGE[1] - RANGE[0]) / step / MAX_POINTS))
    edges = RANGE[0] + step * np.round(np.linspace(0, (RANGE[1] - RANGE[0]) / step, n_runs + 1))
    pieces = [(float(a) if i == 0 else float(a) + step, float(b), step)
              for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))]
    pieces[-1] = (pieces[-1][0], RANGE[1], step)
    c0 = _cpu()
    ref = synthesize(lab, padded_pieces(pieces, REFERENCE_OVERLAP), install=inst, grid=grid,
                     line_lists=lists)
    cpu = _cpu() - c0
    wave, flux = join_pieces(pieces, ref.wavelength, ref.flux)
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, wavelength=wave, flux=flux, cpu_s=cpu)
    return wave, flux, cpu


def _grid_star(lab: dict, cfg: GridConfig, overlap: float, inst, grid, lists):
    """One star with the grid config's sampling, hydrogen and pruning settings (1D LTE Li)."""
    pieces, padded = [], []
    for w in cfg.windows:
        own = doppler_windows(lab, w.start, w.stop, w.step, cfg.sampling_fraction)
        pieces += own
        padded += padded_pieces(own, overlap, (w.start, w.stop))
    res = synthesize(lab, padded, install=inst, grid=grid, line_lists=lists,
                     hydrogen_wing_fraction=cfg.hydrogen_wing_fraction,
                     line_pruning=(None if cfg.min_depth is None
                                   else LinePruning(min_depth=cfg.min_depth)))
    wave, flux = join_pieces(pieces, res.wavelength, res.flux)
    return wave, flux, (getattr(res, "pruning", None) or {}), pieces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", nargs="+", default=list(STARS), choices=list(STARS))
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                    help="grid config whose sampling, hydrogen and pruning settings are timed")
    ap.add_argument("--piece-overlap", type=float, default=None,
                    help="override the config's piece_overlap (A), e.g. 0 to see what it does")
    ap.add_argument("--reference-fraction", type=float, default=None,
                    help="the reference's uniform step in Doppler widths at 3690 A (default: "
                    "the config's sampling_fraction); smaller for a more exact reference")
    ap.add_argument("--hydrogen-wing-fraction", type=float, default=None,
                    help="override the config's hydrogen_wing_fraction (0: Turbospectrum's own "
                    "hydrogen lines) to see what the anchors do")
    ap.add_argument("--no-pruning", action="store_true",
                    help="synthesize the grid settings without line pruning (to separate its "
                    "share of the difference from the sampling's)")
    ap.add_argument("--step", type=float, default=0.03,
                    help="uniform sampling step (A) of --breakdown")
    ap.add_argument("--exclude", nargs="*", default=["sih"],
                    help="extended line-list families to leave out")
    ap.add_argument("--reference-cache", type=Path, default=None,
                    help="folder keeping the reference spectra and their CPU time between runs")
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--rst", type=Path, help="also write the table as reStructuredText "
                    "(docs/synthesis/bench_synthesis.rst)")
    ap.add_argument("--breakdown", action="store_true",
                    help="split the cost of each star into its parts instead")
    args = ap.parse_args()
    if args.breakdown:
        _breakdown(args)
        return
    cfg = GridConfig.from_toml(args.config)
    if cfg.sampling_fraction is None or len(cfg.windows) != 1:
        raise SystemExit(f"{args.config}: needs one [[window]] and sampling_fraction")
    overlap = cfg.piece_overlap if args.piece_overlap is None else args.piece_overlap
    if args.no_pruning:
        cfg = dataclasses.replace(cfg, min_depth=None)
    if args.hydrogen_wing_fraction is not None:
        cfg = dataclasses.replace(cfg, hydrogen_wing_fraction=args.hydrogen_wing_fraction)
    inst = find_synthesis()
    grid = MarcsGrid(inst.atmos_dir)
    lists = [inst.ges_linelist, inst.hlinedata] + [
        p for f, p in inst.extended_linelists.items() if f not in args.exclude]
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"# {hardware}; {inst.version}; patches: {', '.join(inst.patches) or 'none'}")
    rows = []
    for star in args.stars:
        lab = STARS[star]
        step = doppler_windows(lab, RANGE[0], RANGE[0] + 1.0, 1.0,
                               args.reference_fraction or cfg.sampling_fraction)[0][2]
        ref_wave, ref_flux, ref_cpu = _reference(lab, step, inst, grid, lists, star,
                                                 args.reference_cache)
        c1 = _cpu()
        wave, flux, pruning, pieces = _grid_star(lab, cfg, overlap, inst, grid, lists)
        c2 = _cpu()
        diff = _max_diff(instrument_spectra(ref_wave, ref_flux), wave, flux)
        rec = {"star": star, **lab, "reference_step": step,
               "reference_points": int(ref_wave.size), "reference_cpu_s": round(ref_cpu, 1),
               "grid_points": int(wave.size), "grid_pieces": len(pieces),
               "grid_cpu_s": round(c2 - c1, 1), "speedup": round(ref_cpu / (c2 - c1), 2),
               "max_dF_hr": round(diff["hr"], 5), "max_dF_lr": round(diff["lr"], 5),
               "lines_in": pruning.get("lines_in", 0), "lines_kept": pruning.get("lines_kept", 0),
               "max_dF_lr_piece_ends": round(_near_ends(diff["lr_abs"], pieces), 5),
               "settings": {"sampling_fraction": cfg.sampling_fraction, "piece_overlap": overlap,
                            "hydrogen_wing_fraction": cfg.hydrogen_wing_fraction,
                            "min_depth": cfg.min_depth},
               "hardware": hardware}
        print(json.dumps(rec), flush=True)
        rows.append(rec)
    print(f"\n{'star':<22} {'ref CPU s':>9} {'grid CPU s':>10} {'ratio':>6} {'dF HR':>8} "
          f"{'dF LR':>8}")
    for r in rows:
        print(f"{r['star']:<22} {r['reference_cpu_s']:9.1f} {r['grid_cpu_s']:10.1f} "
              f"{r['speedup']:6.2f} {r['max_dF_hr']:8.5f} {r['max_dF_lr']:8.5f}")
    if len(rows) > 1:
        ref = sum(r["reference_cpu_s"] for r in rows)
        now = sum(r["grid_cpu_s"] for r in rows)
        print(f"{'all':<22} {ref:9.1f} {now:10.1f} {ref / now:6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.rst:
        args.rst.parent.mkdir(parents=True, exist_ok=True)
        args.rst.write_text(_rst(rows, hardware, inst.version, args.config.name))


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


def _rst(rows: list[dict], hardware: str, version: str, config: str) -> str:
    head = ["star (Teff/logg/[Fe/H]/vmic)", "reference step A", "reference CPU s",
            "grid CPU s", "ratio", "max abs dF HR", "max abs dF LR",
            "LR near piece ends", "lines kept"]
    body = [[f"{r['star']} ({r['teff']:.0f}/{r['logg']:g}/{r['fe_h']:+.1f}/{r['vmic']:g})",
             f"{r['reference_step']:.4f}", f"{r['reference_cpu_s']:.1f}",
             f"{r['grid_cpu_s']:.1f}", f"{r['speedup']:.2f}", f"{r['max_dF_hr']:.5f}",
             f"{r['max_dF_lr']:.5f}", f"{r['max_dF_lr_piece_ends']:.5f}",
             f"{r['lines_kept']:,} of {r['lines_in']:,}"]
            for r in rows]
    if len(rows) > 1:
        ref = sum(r["reference_cpu_s"] for r in rows)
        now = sum(r["grid_cpu_s"] for r in rows)
        body.append(["all", "", f"{ref:.1f}", f"{now:.1f}", f"{ref / now:.2f}", "", "", "",
                     ""])
    st = rows[0]["settings"]
    lines = [f".. generated by python benchmarks/bench_synthesis.py --rst ...; do not edit. "
             f"{hardware}; {version}; {config}: " + ", ".join(f"{k} {v}" for k, v in st.items()),
             "", simple_table(head, body, pad_last_column=True), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
