"""Accuracy and speed of the emulator simulator (`specutils_cinn.training.simulation`).

1. Rotation accuracy: Turbospectrum seed-grid spectra degraded to an emulator grid without
   rotation, rotated with `BinnedRotation`, against the same spectra degraded *with* rotation by
   `specutils_cinn.instruments.degrade` (the exact order: rotation, LSF, pixel binning); the
   scipy-spline path of `specutils_cinn.emulator.emulate_spectra` for comparison. Pixels within
   ``lambda vsini / c + 1 A`` of a segment end are left out (both methods extend the spectrum by
   its end value there).
2. Throughput: `EmulatorSimulator.sample` (prior, emulator, rotation, residual RV) on 1 thread.
3. With ``--macroturbulence`` (instead of 1 and 2): macroturbulence accuracy, the same seed-grid
   spectra broadened by `BinnedRotation` with ``vmacro`` (and ``vsini``) against
   ``degrade(vsini=..., vmacro=...)`` (radial-tangential); pixels within
   ``lambda (vsini + 4 vmacro) / c + 1 A`` of a segment end are left out. For scale, the
   difference between the radial-tangential and the Gaussian profile of the same zeta is shown.

The pixel grids and resolving powers are the emulators' (``--emulators``); without the emulator
folders, those of the emulators recorded in the released models' metadata (the same grids).
``--upsample 0.02`` first interpolates the seed spectra linearly onto a 0.02 A grid (the
piecewise-linear spectrum that `degrade` integrates anyway). This matters for LR, whose seed
spectra are sampled at 0.1 A: with a wavelength-dependent resolving power `degrade` applies the
velocity kernels in a separate pass and interpolates that result linearly back onto the input
wavelengths, which smooths lines sampled at 0.1 A noticeably (p99 5e-3 of the continuum for
vsini = 1 km/s, where the true change is nil); the upsampled reference does not.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_simulation.py \
        --seed-grid ../shared/data/ts_lte_seed/ts_lte_seed.npz --emulators work/emulators
    OMP_NUM_THREADS=1 python benchmarks/bench_simulation.py --macroturbulence \
        --seed-grid ../shared/data/ts_lte_seed/ts_lte_seed.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import specutils_cinn
from specutils_cinn.constants import C_KMS
from specutils_cinn.emulator import load_emulator
from specutils_cinn.emulator.spectra import _rotate_binned
from specutils_cinn.instruments import InstrumentSetup, degrade
from specutils_cinn.instruments.rotation import BinnedRotation
from specutils_cinn.parameters import a_li_from_li_fe
from specutils_cinn.training import EmulatorSimulator

SEGMENTS = {"hr": ("hr_blue", "hr_green", "hr_red"), "lr": ("lr",)}


def _keep(grid, vsini: float) -> np.ndarray:
    keep = np.zeros(grid.npix, bool)
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        c = seg.centers
        margin = c[-1] * vsini / C_KMS + 1.0
        keep[sl] = (c > c[0] + margin) & (c < c[-1] - margin)
    return keep


def _released_setup(setup_name: str) -> InstrumentSetup:
    """Pixel grid and resolving power of the emulator of the newest released model."""
    models = Path(specutils_cinn.__file__).parent / "data" / "models"
    path = sorted(models.glob(f"4most-{setup_name}-lte-v*"))[-1] / "metadata.json"
    meta = json.loads(path.read_text())
    return InstrumentSetup.from_dict({"name": f"4MOST-{setup_name.upper()}",
                                      "grid": meta["emulator"]["architecture"]["grid"],
                                      "resolving_power": meta["resolving_power"]})


def _seed_spectra(setup_name: str, seed_grid: Path, n_star: int, upsample: float | None = None):
    d = np.load(seed_grid, allow_pickle=False)
    stars = np.random.default_rng(0).choice(d["label_teff"].size, n_star, replace=False)
    waves, fluxes = [], []
    for s in SEGMENTS[setup_name]:
        a, b, st = d[f"grid_{s}"]
        waves.append(a + st * np.arange(int(round((b - a) / st)) + 1))
        fluxes.append(d[s][stars].astype(np.float64))
    wave, flux = np.concatenate(waves), np.concatenate(fluxes, axis=1)
    if upsample:
        fine = [np.arange(w[0], w[-1] + 1e-6, upsample) for w in waves]
        flux = np.concatenate([np.stack([np.interp(x, w, f) for f in flux[:, sl]])
                               for x, w, sl in zip(fine, waves, _slices(waves), strict=True)], 1)
        wave = np.concatenate(fine)
    return wave, flux


def _slices(waves) -> list[slice]:
    ends = np.cumsum([0] + [w.size for w in waves])
    return [slice(a, b) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def accuracy(setup_name: str, emu, seed_grid: Path, n_star: int, vsinis,
             upsample: float | None = None) -> None:
    wave, flux = _seed_spectra(setup_name, seed_grid, n_star, upsample)
    setup = InstrumentSetup.from_dict(emu.metadata["setup"])
    grid = emu.grid
    if setup.grid != grid:
        raise RuntimeError("emulator setup grid differs from the emulator grid")
    base = degrade(wave, flux, setup).astype(np.float32)
    rot = BinnedRotation(grid, max_vsini=max(vsinis))
    how = f", upsampled to {upsample} A" if upsample else ""
    print(f"{setup_name.upper()} rotation accuracy, {n_star} seed-grid stars{how}, |difference| "
          "against degrade(vsini=...):")
    for v in vsinis:
        ref = degrade(wave, flux, setup, vsini=float(v))
        vs = torch.full((n_star,), float(v))
        ours = rot(torch.from_numpy(base), vs).numpy()
        spline = np.concatenate([
            _rotate_binned(seg.centers, base[:, sl], np.full(n_star, float(v)), seg.step, 0.6, 8.0)
            for seg, sl in zip(grid.segments, grid.segment_slices, strict=True)], axis=1)
        k = _keep(grid, v)
        a, b = np.abs(ours - ref)[:, k], np.abs(spline - ref)[:, k]
        print(f"  vsini {v:5.1f} km/s: torch p99 {np.percentile(a, 99):.1e} max {a.max():.1e}"
              f" | emulate_spectra (scipy spline x8) p99 {np.percentile(b, 99):.1e}"
              f" max {b.max():.1e}")
    same = rot(torch.from_numpy(base), torch.zeros(n_star)).numpy()
    print(f"  vsini 0: identical to the input: {np.array_equal(same, base)}")


def macroturbulence_accuracy(setup_name: str, setup: InstrumentSetup, seed_grid: Path,
                             n_star: int, vsinis, vmacros, upsample: float | None = None) -> None:
    wave, flux = _seed_spectra(setup_name, seed_grid, n_star, upsample)
    grid = setup.grid
    base = degrade(wave, flux, setup).astype(np.float32)
    rot = BinnedRotation(grid, max_vsini=max(max(vsinis), 1.0), max_vmacro=max(vmacros))
    arms = ", ".join(s.name for s in grid.segments)
    how = f", upsampled to {upsample} A" if upsample else ""
    print(f"{setup_name.upper()} macroturbulence accuracy ({arms}), {n_star} seed-grid stars{how}, "
          "|difference| against degrade(vsini=..., vmacro=...):")
    for v in vsinis:
        for z in vmacros:
            ref = degrade(wave, flux, setup, vsini=float(v), vmacro=float(z))
            ours = rot(torch.from_numpy(base), torch.full((n_star,), float(v)),
                       vmacro=torch.full((n_star,), float(z))).numpy()
            k = _keep(grid, v + 4.0 * z)
            a = np.abs(ours - ref)[:, k]
            line = (f"  vsini {v:4.1f} vmacro {z:3.1f} km/s: torch p99 {np.percentile(a, 99):.1e}"
                    f" max {a.max():.1e}")
            if v == vsinis[0]:
                gauss = degrade(wave, flux, setup, vsini=float(v), vmacro=float(z),
                                macroturbulence="gaussian")
                b = np.abs(gauss - ref)[:, k]
                line += f" | Gaussian vs radial-tangential profile p99 {np.percentile(b, 99):.1e}"
            print(line, flush=True)
    batch = torch.from_numpy(np.resize(base, (64, grid.npix)))
    vs, vm = torch.full((64,), 10.0), torch.full((64,), 4.0)
    for label, kw in (("rotation alone", {}), ("rotation + macroturbulence", {"vmacro": vm})):
        rot(batch, vs, **kw)  # warm up
        t0 = time.perf_counter()
        for _ in range(5):
            rot(batch, vs, **kw)
        dt = (time.perf_counter() - t0) / 5 / 64
        print(f"  {label}: {dt * 1e3:.2f} ms/spectrum, {torch.get_num_threads()} thread(s)")


def throughput(name: str, emu, batch: int, repeats: int) -> None:
    sim = EmulatorSimulator(emu)
    gen = torch.Generator().manual_seed(0)
    sim.sample(batch, gen)  # warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        sim.sample(batch, gen)
    dt = (time.perf_counter() - t0) / repeats
    t1 = time.perf_counter()
    for _ in range(repeats):
        lab = sim.prior.sample(batch, gen)
        lab["a_li"] = a_li_from_li_fe(lab["li_fe"], lab["fe_h"])
        with torch.no_grad():
            emu(torch.stack([lab[n] for n in emu.label_names], 1), clamp=True)
    de = (time.perf_counter() - t1) / repeats
    print(f"{name}: {sim.grid.npix} px, batch {batch}: {dt / batch * 1e3:.2f} ms/spectrum "
          f"({batch / dt:.0f} spectra/s; prior + emulator alone {de / batch * 1e3:.2f} ms), "
          f"{torch.get_num_threads()} thread(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-grid", type=Path,
                    default=Path("../shared/data/ts_lte_seed/ts_lte_seed.npz"))
    ap.add_argument("--emulators", type=Path, default=Path("work/emulators"))
    ap.add_argument("--stars", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--upsample", type=float, default=None,
                    help="interpolate the seed spectra onto this step (A) first, e.g. 0.02")
    ap.add_argument("--macroturbulence", action="store_true",
                    help="measure the macroturbulence accuracy only (no emulator needed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.macroturbulence:
        for name in ("hr", "lr"):
            folder = args.emulators / f"4most-{name}-emulator"
            setup = (InstrumentSetup.from_dict(load_emulator(folder).metadata["setup"])
                     if folder.is_dir() else _released_setup(name))
            macroturbulence_accuracy(name, setup, args.seed_grid, args.stars, (0.0, 10.0),
                                     (2.0, 4.0, 6.0, 8.0), args.upsample)
        return
    for name in ("hr", "lr"):
        emu = load_emulator(args.emulators / f"4most-{name}-emulator")
        throughput(name.upper(), emu, args.batch, args.repeats)
        if args.seed_grid.is_file():
            accuracy(name, emu, args.seed_grid, args.stars, (1.0, 5.0, 10.0, 25.0, 50.0),
                     args.upsample)


if __name__ == "__main__":
    main()
