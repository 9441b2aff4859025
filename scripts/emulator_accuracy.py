"""Accuracy of spectrum emulators on held-out Turbospectrum stars, and its change with grid size.

For each config (``configs/emulator-4most-*.toml``: its ``data`` file from
``specutils-cinn emulator prepare`` and its ``[emulator]`` options, the kind named in the
"Grid" column), trains emulators on
25 %, 50 % and 100 % of the training stars (never the ``holdout`` stars) and measures the median
and 99th percentile of ``|emulated - Turbospectrum|`` (continuum units) over all pixels of all
held-out stars, per grid and per segment. Writes an RST table (stdout and ``--output``), plus
where the residuals are largest (worst stars with their labels, worst wavelengths).

Usage::

    python scripts/emulator_accuracy.py --configs configs/emulator-4most-hr.toml \
        configs/emulator-4most-lr.toml --fractions 0.25 0.5 1.0 --threads 1 \
        --output work/emulator_accuracy.rst

``--use-saved`` evaluates the emulator saved at the config's ``out`` for the 100 % row instead
of training it again. ``--fe-h-bins -4 -2 -1 0 0.6`` adds a second table for the largest
fraction: the same statistics per segment and per [Fe/H] bin (the grid issue asks for both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from specutils_cinn.emulator.pipeline import (
    load_training_data,
    read_emulator_config,
    subset_training_stars,
)
from specutils_cinn.validation.rst import simple_table

TARGET_MEDIAN, TARGET_P99 = 0.002, 0.01


def _table(rows: list[list[str]]) -> str:
    """The first row as the header of a simple table of the others."""
    return simple_table(rows[0], rows[1:])


def _worst(data: dict, res: np.ndarray, ho: np.ndarray, grid, n: int = 5) -> list[str]:
    """Lines describing the worst held-out stars and wavelengths."""
    names = data["label_names"]
    lab = data["labels"][ho]
    p99 = np.percentile(np.abs(res), 99, axis=1)
    lines = []
    for i in np.argsort(p99)[::-1][:n]:
        desc = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, lab[i], strict=True)
                         if k in ("teff", "logg", "fe_h", "a_li"))
        lines.append(f"star {int(data['star_id'][ho][i])} ({desc}): p99 {p99[i]:.3g}, "
                     f"max {np.abs(res[i]).max():.3g}")
    wave = grid.wavelength.value
    mean_abs = np.abs(res).mean(0)
    order = np.argsort(mean_abs)[::-1]
    picked: list[int] = []
    for j in order:
        if all(abs(wave[j] - wave[k]) > 2.0 for k in picked):
            picked.append(j)
        if len(picked) == n:
            break
    lines += [f"{wave[j]:.1f} A: mean |residual| {mean_abs[j]:.3g} over held-out stars"
              for j in picked]
    teff, logg = lab[:, names.index("teff")], lab[:, names.index("logg")]
    groups = {
        "cool dwarfs (Teff < 4500 K, log g > 4)": (teff < 4500) & (logg > 4.0),
        "cool giants (Teff < 4800 K, log g < 3)": (teff < 4800) & (logg < 3.0),
        "metal-poor ([Fe/H] < -1.5)": lab[:, names.index("fe_h")] < -1.5,
        "Teff >= 4500 K": teff >= 4500,
    }
    for label, mask in groups.items():
        if mask.any():
            a = np.abs(res[mask])
            lines.append(f"{label}: {int(mask.sum())} stars, median {np.median(a):.2e}, "
                         f"p99 {np.percentile(a, 99):.2e}")
    return lines


def fe_h_table(tag: str, data: dict, res: np.ndarray, ho: np.ndarray, grid,
               edges: list[float]) -> list[list[str]]:
    """Rows (grid, [Fe/H] bin, stars, segment, median, p99) of held-out residuals per bin."""
    fe_h = data["labels"][ho][:, list(data["label_names"]).index("fe_h")]
    segs = [("all", slice(None))] + [(seg.name, sl) for seg, sl in
                                     zip(grid.segments, grid.segment_slices, strict=True)]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (fe_h >= lo) & (fe_h < hi)
        for name, sl in segs:
            if not sel.any():
                rows.append([tag, f"{lo:+.1f} .. {hi:+.1f}", "0", name, "-", "-"])
                continue
            a = np.abs(res[sel][:, sl])
            rows.append([tag, f"{lo:+.1f} .. {hi:+.1f}", str(int(sel.sum())), name,
                         f"{np.median(a):.2e}", f"{np.percentile(a, 99):.2e}"])
    return rows


def evaluate(cfg, conf: dict, data: dict, args, own_kind: bool, rows: list, bins: list,
             notes: list, results: list) -> None:
    """Train (or load) the emulators of one config and kind; append their rows and notes."""
    from specutils_cinn.emulator import load_emulator, residual_statistics, train_emulator

    setup = data["setup"]
    ho = data["holdout"]
    tag = f"{setup.name} ({cfg.kind})"
    for frac in sorted(args.fractions):
        out = Path(conf["out"]) if conf.get("out") else None
        t0 = time.perf_counter()
        if (frac == 1.0 and args.use_saved and own_kind and out is not None
                and out.is_dir()):
            emu = load_emulator(out)
            n_train = emu.metadata["history"]["n_train"] + emu.metadata["history"][
                "n_validation"]
            secs = emu.metadata["history"]["seconds"]
        else:
            use = subset_training_stars(data["star_id"], ho, frac, cfg.seed)
            emu, _ = train_emulator(data["labels"][use], data["flux"][use],
                                    data["label_names"], setup.grid, cfg,
                                    star_id=data["star_id"][use], device=args.device, log=None)
            n_train, secs = int(use.sum()), time.perf_counter() - t0
        size = sum(t.numel() * t.element_size() for t in emu.state_dict().values()) / 1e6
        st = residual_statistics(emu, data["labels"][ho], data["flux"][ho])
        segs = [("all", st["all"])] + list(st["segments"].items())
        for seg, s in segs:
            rows.append([tag, f"{n_train} ({frac:.0%})", seg, f"{s['median_abs']:.2e}",
                         f"{s['p99_abs']:.2e}", f"{secs:.0f}", f"{size:.1f}"])
        results.append({"grid": tag, "kind": cfg.kind, "config": str(conf.get("path", "")),
                        "fraction": frac, "n_train": n_train, "seconds": secs,
                        "weights_mb": size, "n_holdout": st["n_stars"],
                        "n_outside": st["n_outside"], "all": st["all"],
                        "segments": st["segments"]})
        print(f"{tag} {frac:.0%}: median {st['all']['median_abs']:.2e}, p99 "
              f"{st['all']['p99_abs']:.2e} ({secs:.0f} s)", file=sys.stderr, flush=True)
        if frac == max(args.fractions):
            notes.append(f"{tag} ({st['n_stars']} held-out stars, {st['n_outside']} "
                         "slightly outside the training label ranges, clamped):")
            notes += [f"  - {line}" for line in _worst(data, st["residuals"], ho, setup.grid)]
            if args.fe_h_bins:
                bins += fe_h_table(tag, data, st["residuals"], ho, setup.grid,
                                   sorted(args.fe_h_bins))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", required=True)
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    ap.add_argument("--steps", type=int, help="override the configs' steps")
    ap.add_argument("--kinds", nargs="+", choices=("pca", "direct", "gp"),
                    help="run each config with each of these emulator kinds (default: the "
                         "config's own); the saved emulator is used only for the config's kind")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--use-saved", action="store_true",
                    help="evaluate the saved emulator (config 'out') for fraction 1.0")
    ap.add_argument("--fe-h-bins", nargs="+", type=float,
                    help="edges of [Fe/H] bins for a per-bin table (largest fraction)")
    ap.add_argument("--output", help="also write the RST here")
    ap.add_argument("--json", help="write all numbers as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from specutils_cinn.emulator import EmulatorConfig

    torch.set_num_threads(args.threads)
    rows = [["Grid", "Training stars", "Segment", "Median abs", "99th pct abs", "Train s",
             "File MB"]]
    notes: list[str] = []
    results = []
    bins = [["Grid", "[Fe/H]", "Held-out stars", "Segment", "Median abs", "99th pct abs"]]
    for cpath in args.configs:
        conf = dict(read_emulator_config(cpath), path=cpath)
        data = load_training_data(conf["data"])
        opts = dict(conf.get("emulator", {}), threads=args.threads)
        if args.steps:
            opts["steps"] = args.steps
        own = EmulatorConfig.from_dict(opts).kind
        for kind in args.kinds or [own]:
            evaluate(EmulatorConfig.from_dict(dict(opts, kind=kind)), conf, data, args,
                     kind == own, rows, bins, notes, results)
    text = (
        "Emulator accuracy on held-out Turbospectrum stars (``star_id % 10 == 9``), in units of "
        f"the continuum, over all pixels (targets: median <= {TARGET_MEDIAN}, "
        f"99th percentile <= {TARGET_P99}).\n\n" + _table(rows) + "\n"
    )
    if len(bins) > 1:
        text += ("\nThe same per [Fe/H] bin, for the emulator trained on all training stars:"
                 "\n\n" + _table(bins) + "\n")
    print(text)
    print("Where the residuals are largest:\n\n" + "\n".join(notes))
    if args.output:
        Path(args.output).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
