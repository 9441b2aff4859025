"""Degrade a Turbospectrum synthesis grid to a 4MOST grid for training a spectrum emulator.

Reads a synthesis grid (HDF5 written by ``specutils-cinn grid``, read with
`specutils_cinn.synthesis.grid_file.read_grid`, or the seed grid ``ts_lte_seed.npz``), convolves
every star with the 4MOST line-spread function and bins it onto the instrument's pixels with
`specutils_cinn.instruments.degrade` (no rotation, no macroturbulence, no noise, no
renormalisation: the emulator learns the continuum-normalised flux after the LSF), and writes a
compact npz: ``labels`` (float64, [n_star, n_label]), ``label_names``, ``flux`` (float32,
[n_star, npix]), ``star_id``, ``holdout`` (bool; held-out stars are never trained on), and
JSON strings ``setup`` (`~specutils_cinn.instruments.InstrumentSetup.to_dict`) and
``provenance``.

Each 4MOST segment is cut to what the synthesis covers, inset by five LSF sigmas plus a pixel so
that the LSF never reaches beyond the synthetic spectrum; pixel centres stay on the 4MOST
grid's phase.

A v2 grid (committed shards, `specutils_cinn.synthesis.shards`) is already at every 4MOST
setup's native sampling after the LSF: ``--shards grid/4most-lte-v2`` takes its spectra as they
are (no second convolution); the default step is then the native one (HR 0.05 A, LR 0.25 A),
and a coarser ``--step`` averages whole native pixels.

Usage::

    python scripts/prepare_emulator_data.py --grid work/seed_grid.h5 --setup hr \
        --out work/emu_hr.npz
    python scripts/prepare_emulator_data.py --shards grid/4most-lte-v2 --setup hr \
        --out work/emu_hr_v2.npz
    python scripts/prepare_emulator_data.py --grid ../shared/data/ts_lte_seed/ts_lte_seed.npz \
        --setup lr --out work/emu_lr.npz
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from specutils_cinn.grid import GridSegment, WavelengthGrid
from specutils_cinn.instruments import InstrumentSetup, degrade, fourmost_setup
from specutils_cinn.model import sha256_file
from specutils_cinn.parameters import EMULATOR_LABELS

#: Emulator input labels, in order (A(Li) absolute; li_fe = a_li - SOLAR_A_LI - fe_h is derived).
LABELS = EMULATOR_LABELS
#: Synthesis segments feeding each setup and the default pixel step of the emulator grid; a grid
#: with none of them but a ``full`` segment (configs/grid-4most-lte-v1.toml) uses that one.
SYNTH_SEGMENTS = {"hr": ("hr_blue", "hr_green", "hr_red"), "lr": ("lr",)}
DEFAULT_STEP = {"hr": 0.1, "lr": 0.5}
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def load_synthesis(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray,
                                        dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Labels, star_id, holdout, segments ``{name: (wave, flux [N, P])}`` and provenance."""
    if path.suffix == ".npz":
        d = np.load(path, allow_pickle=False)
        labels = {k[6:]: d[k].astype(np.float64) for k in d.files if k.startswith("label_")}
        star_id = d["star_id"].astype(np.int64)
        segs = {}
        for name in ("hr_blue", "hr_green", "hr_red", "lr"):
            start, stop, step = d[f"grid_{name}"]
            wave = start + step * np.arange(int(round((stop - start) / step)) + 1)
            segs[name] = (wave, d[name])
        meta = {"source": "seed grid npz (see its README)"}
        return labels, star_id, star_id % 10 == 9, segs, meta
    from specutils_cinn.synthesis.grid_file import read_grid

    g = read_grid(path)
    return ({k: np.asarray(v, np.float64) for k, v in g.labels.items()},
            np.asarray(g.star_id, np.int64), np.asarray(g.holdout, bool), dict(g.segments),
            dict(g.meta))


def restrict_setup(setup: InstrumentSetup, coverage: list[tuple[float, float]],
                   n_sigma: float = 5.0) -> InstrumentSetup:
    """Cut each segment of ``setup`` to the synthesis coverage, inset by the LSF reach.

    Parameters
    ----------
    setup : InstrumentSetup
        The full instrument setup.
    coverage : list of (float, float)
        Wavelength ranges (Angstrom) covered by the synthesis.
    n_sigma : float
        Inset in LSF sigmas (plus one pixel) from each end of the covered range.

    Returns
    -------
    InstrumentSetup
        Same name and resolving powers; segments not covered at all are dropped.
    """
    segs, rp = [], {}
    for s in setup.grid.segments:
        r = setup.resolving_power[s.name]
        for lo, hi in coverage:
            if hi <= s.start or lo >= s.stop:
                continue

            def reach(w: float, r=r, step=s.step) -> float:
                rv = float(r(np.array([w]))[0]) if callable(r) else float(r)
                return n_sigma * w / rv / _FWHM_PER_SIGMA + step

            first = max(s.start, lo + reach(lo))
            last = min(s.stop, hi - reach(hi))
            k0 = math.ceil((first - s.start) / s.step - 1e-9)
            k1 = math.floor((last - s.start) / s.step + 1e-9)
            if k1 <= k0:
                continue
            segs.append(GridSegment(s.name, round(s.start + k0 * s.step, 9),
                                    round(s.start + k1 * s.step, 9), s.step))
            rp[s.name] = r
            break
    if not segs:
        raise ValueError(f"the synthesis covers no segment of {setup.name}")
    return InstrumentSetup(setup.name, WavelengthGrid(tuple(segs), setup.grid.medium), rp)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src_arg = ap.add_mutually_exclusive_group(required=True)
    src_arg.add_argument("--grid", help="synthesis grid (.h5 or seed .npz)")
    src_arg.add_argument("--shards", help="folder of v2 grid shards (already at 4MOST sampling)")
    ap.add_argument("--setup", choices=("hr", "lr"), required=True)
    ap.add_argument("--step", type=float, default=None, help="pixel step in A (default hr 0.1, "
                    "lr 0.5)")
    ap.add_argument("--out", required=True, help="output npz")
    ap.add_argument("--chunk", type=int, default=32, help="stars per degrade call")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    if args.shards:
        _from_shards(args, t0)
        return
    src = Path(args.grid)
    labels, star_id, holdout, segs, meta = load_synthesis(src)
    missing = [k for k in LABELS if k not in labels]
    if missing:
        raise SystemExit(f"{src}: missing labels {missing}")
    names = [n for n in SYNTH_SEGMENTS[args.setup] if n in segs]
    if not names and "full" in segs:  # one window over the whole LR range (grid v1 layout)
        names = ["full"]
    if not names:
        raise SystemExit(f"{src}: no synthesis segment among {SYNTH_SEGMENTS[args.setup]}")
    full = fourmost_setup(args.setup, step=args.step or DEFAULT_STEP[args.setup])
    setup = restrict_setup(full, [(float(segs[n][0][0]), float(segs[n][0][-1])) for n in names])
    wave = np.concatenate([segs[n][0] for n in names])
    order = np.argsort(wave, kind="stable")
    if np.any(np.diff(wave[order]) <= 0):
        raise SystemExit("synthesis segments overlap; cannot concatenate them")
    n_star = star_id.size
    flux = np.empty((n_star, setup.grid.npix), np.float32)
    for i in range(0, n_star, args.chunk):
        rows = slice(i, min(i + args.chunk, n_star))
        hi_res = np.concatenate([np.asarray(segs[n][1][rows], np.float32) for n in names], 1)
        flux[rows] = degrade(wave[order], hi_res[:, order], setup)
        print(f"  {rows.stop}/{n_star} stars", flush=True)
    if not np.all(np.isfinite(flux)):
        raise SystemExit("non-finite flux after degradation")
    provenance = {
        "grid_path": str(src.resolve()),
        "grid_sha256": sha256_file(src),
        "grid_meta": meta,
        "synthesis_segments": names,
        "instrument": "Gaussian LSF at the 4MOST resolving power + flux-conserving binning "
                      "(specutils_cinn.instruments.degrade), no rotation, no renormalisation",
        "script": "scripts/prepare_emulator_data.py",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    out = _write(args.out, labels, flux, star_id, holdout, setup, provenance)
    segtxt = ", ".join(f"{s.name} {s.start:g}-{s.stop:g}/{s.step:g} A" for s in setup.grid.segments)
    print(f"{out}: {n_star} stars ({holdout.sum()} held out), {setup.grid.npix} px [{segtxt}], "
          f"{time.perf_counter() - t0:.0f} s")


def _write(path: str, labels: dict, flux: np.ndarray, star_id: np.ndarray,
           holdout: np.ndarray, setup: InstrumentSetup, provenance: dict) -> Path:
    """Write the emulator data npz (the layout in the module docstring)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, labels=np.column_stack([labels[k] for k in LABELS]),
             label_names=np.array(LABELS), flux=flux, star_id=star_id, holdout=holdout,
             setup=np.array(json.dumps(setup.to_dict())),
             provenance=np.array(json.dumps(provenance, default=str)))
    return out


def _from_shards(args: argparse.Namespace, t0: float) -> None:
    """The --shards path: spectra already on the native 4MOST grid after the LSF."""
    from specutils_cinn.synthesis.shards import read_shards

    g = read_shards(args.shards, args.setup)
    missing = [k for k in LABELS if k not in g.labels]
    if missing:
        raise SystemExit(f"{args.shards}: missing labels {missing}")
    native = fourmost_setup(args.setup)
    factor = 1
    if args.step is not None:
        factor = int(round(args.step / native.grid.segments[0].step))
        if factor < 1 or abs(factor * native.grid.segments[0].step - args.step) > 1e-9:
            raise SystemExit(f"--step must be a whole multiple of the native "
                             f"{native.grid.segments[0].step} A for shards")
    segs, fluxes = [], []
    for s in native.grid.segments:
        wave, flux = g.segments[s.name]
        n = (wave.size // factor) * factor
        wave = wave[:n].reshape(-1, factor).mean(1)
        flux = flux[:, :n].reshape(len(g), -1, factor).mean(2)
        step = s.step * factor
        segs.append(GridSegment(s.name, round(float(wave[0]), 9), round(float(wave[-1]), 9),
                                step))
        fluxes.append(flux.astype(np.float32))
    setup = InstrumentSetup(native.name, WavelengthGrid(tuple(segs), native.grid.medium),
                            dict(native.resolving_power))
    flux = np.concatenate(fluxes, axis=1)
    if flux.shape[1] != setup.grid.npix or not np.all(np.isfinite(flux)):
        raise SystemExit("shard spectra do not match the setup or are not finite")
    provenance = {"shards": str(Path(args.shards).resolve()), "grid_meta": g.meta,
                  "instrument": "as stored in the shards (LSF + binning at the native "
                                f"sampling), averaged over {factor} native pixel(s)",
                  "script": "scripts/prepare_emulator_data.py --shards",
                  "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    out = _write(args.out, g.labels, flux, g.star_id, g.holdout, setup, provenance)
    print(f"{out}: {len(g)} stars ({int(g.holdout.sum())} held out), {setup.grid.npix} px, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
