"""Write synthetic 4MOST L1 files (and nightly containers) from the bundled solar example.

Every object is the Sun of ``specutils_cinn/data/sun_4most_hr_example.fits`` (HARPS via
Ganymede, degraded to 4MOST HR, S/N 100 per Angstrom, air wavelengths, rest frame) with its
own flux scale and extra Gaussian noise down to an S/N per Angstrom drawn uniformly from
``--snr``; pixels without data in the example (the HARPS CCD gap) get ``QUAL = 1``. The files
have the layouts of docs/readers.rst (written by ``specutils_cinn.io.lookalike``):

- ``--mode hrs`` (default): three L1 files per object, one per arm,
  ``qmost_<CNAME>_<night>_<OB>_{HB,HG,HR}1.fits`` (about 140/180/220 kB); read them with
  ``specutils-cinn predict --group-arms`` or ``specutils_cinn.io.read_spectra`` to get one
  spectrum per object.
- ``--mode lrs``: one joined file per object, ``..._LJ1.fits`` (370 kB), on the LRS grid
  (3700-9500 A at 0.25 A): the example binned 5:1 where it has data (4MOST HR resolution, not
  LRS; about 29% of the pixels), ``QUAL = 1`` elsewhere.
- ``--container``: also the nightly containers ``<night>_{HB,HG,HR}11_<night+1>.fits``
  (or ``_LJ11_``) holding the first ``--fibers`` objects (default all, at most 812 HRS / 1624
  LRS fibers, as 4MOST), same noise realizations, ``FLUX_IVAR`` instead of errors.

A ``manifest.ecsv`` lists every object with its files, S/N, flux scale and the reference
parameters (Teff 5772 K, log g 4.44, [Fe/H] 0.00). Writing takes about 10-25 ms per file on
one core (10,000 HRS files, 2 GB, in 2-4 minutes).

``--distinct K`` writes only the first K objects; object ``i >= K`` gets hard links (copies
where the file system cannot link) to the files of object ``i % K`` under its own file names,
and the manifest's ``copy_of`` column names that object (-1 for written ones). The headers
inside a linked file are those of its source, so ``read_spectra`` over the whole folder joins
a copy with its source; ``specutils-cinn predict --group-arms`` groups by file name and keeps
them apart. Use it for runs whose memory and bookkeeping,
not their contents, are under test (100,000 files without 20 GB of disk or an hour of writing).

Usage::

    python scripts/make_4most_files.py OUTDIR -n 3334 --mode hrs --container
    python scripts/make_4most_files.py OUTDIR -n 33333 --distinct 3333
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from renamed_options import add_renamed_option  # noqa: E402

from specutils_cinn.io.lookalike import cname, write_fourmost_container, write_phase3_spectrum

HRS_ARMS = {"HB": (3926.0, 4355.0), "HG": (5160.0, 5730.0), "HR": (6100.0, 6790.0)}
HR_STEP, LR_START, LR_STEP, LR_NPIX = 0.05, 3700.0, 0.25, 23201
FIBERS = {"hrs": 812, "lrs": 1624}
CHUNK = 256
#: Flux unit of the containers (erg/s/cm2/A): keeps inverse variances within float32.
CONTAINER_UNIT = 1e-17


def load_example() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wavelength (A), flux (1e-17 erg/s/cm2/A), error and bad-pixel mask of the example."""
    ref = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(ref) as path:
        t = Table.read(path, hdu=1)
    bad = np.asarray(t["mask"], bool) | ~np.isfinite(np.asarray(t["flux"], float))
    flux = np.where(bad, 0.0, np.asarray(t["flux"], float))
    err = np.where(bad, 0.0, np.asarray(t["uncertainty"], float))
    return np.asarray(t["wavelength"], float), flux, err, bad


def lrs_from_example(wave, flux, err, bad):
    """The example binned 5:1 onto the LRS grid; pixels not fully covered are bad."""
    lr = LR_START + LR_STEP * np.arange(LR_NPIX)
    idx = np.rint((wave - LR_START) / LR_STEP).astype(int)
    n = np.bincount(idx, minlength=LR_NPIX)[:LR_NPIX]
    good = np.bincount(idx, weights=~bad, minlength=LR_NPIX)[:LR_NPIX]
    f = np.bincount(idx, weights=flux, minlength=LR_NPIX)[:LR_NPIX]
    v = np.bincount(idx, weights=err**2, minlength=LR_NPIX)[:LR_NPIX]
    ok = (n == 5) & (good == 5)
    lflux = np.where(ok, f / np.maximum(n, 1), 0.0)
    lerr = np.where(ok, np.sqrt(v) / np.maximum(n, 1), 0.0)
    return {"LJ": (lr, lflux, lerr, ~ok)}


def hrs_from_example(wave, flux, err, bad):
    out = {}
    for arm, (lo, hi) in HRS_ARMS.items():
        sel = (wave >= lo - 1e-6) & (wave <= hi + 1e-6)
        out[arm] = (wave[sel], flux[sel], err[sel], bad[sel])
    return out


def noisy(arm_data, snr, scale, rng):
    """Flux and error of a chunk of objects: extra noise down to ``snr`` per Angstrom."""
    wave, flux, err, bad = arm_data
    step = float(np.median(np.diff(wave)))
    level = np.median(flux[~bad])
    target = level / (snr[:, None] * np.sqrt(step))  # per-pixel sigma at the continuum level
    extra = np.sqrt(np.maximum(target**2 - err[None, :] ** 2, 0.0))
    f = flux[None, :] + rng.standard_normal((len(snr), flux.size)) * extra
    e = np.hypot(err[None, :], extra)
    f[:, bad], e[:, bad] = 0.0, 0.0
    return f * scale[:, None], e * scale[:, None]


def link(source: Path, target: Path) -> None:
    """Hard-link ``target`` to ``source`` (replacing it), or copy where links fail."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("-n", "--objects", type=int, default=10, help="number of objects")
    ap.add_argument("--mode", choices=["hrs", "lrs"], default="hrs")
    ap.add_argument("--snr", type=float, nargs=2, default=(20.0, 100.0),
                    help="range of S/N per Angstrom (uniform)")
    ap.add_argument("--container", action="store_true", help="also write nightly containers")
    add_renamed_option(ap, "--fibers", "--fibres", type=int, default=None,
                       help="objects in the containers (default: all, at most 812 HRS / 1624 LRS)")
    ap.add_argument("--night", default="20260120", help="night of observation, YYYYMMDD")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--distinct", type=int, default=None,
                    help="write only this many objects; link the others' files to them")
    args = ap.parse_args(argv)
    if args.objects < 1 or not 0 < args.snr[0] <= args.snr[1] <= 100:
        ap.error("need --objects >= 1 and 0 < S/N low <= high <= 100 (the example's own S/N)")
    if args.distinct is not None and args.distinct < 1:
        ap.error("--distinct must be >= 1")
    n_written = min(args.objects, args.distinct or args.objects)
    if args.container and n_written < min(args.objects, args.fibers or FIBERS[args.mode]):
        ap.error("--container needs every fiber's object written: raise --distinct")
    t0 = time.perf_counter()
    out = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    example = load_example()
    arms = hrs_from_example(*example) if args.mode == "hrs" else lrs_from_example(*example)
    n = args.objects
    ra = (np.arange(n) + rng.uniform(0.1, 0.9, n)) * (360.0 / n)
    dec = rng.uniform(-80.0, 10.0, n)
    names = [cname(r, d) for r, d in zip(ra, dec, strict=True)]
    snr = rng.uniform(*args.snr, n)
    scale = 10.0 ** rng.uniform(-1.0, 1.0, n) * 1e-17
    obid = 1000 + np.arange(n) // 100
    mjd = 61060.05 + (np.arange(n) % 100) * 1e-3
    n_fib = min(n, args.fibers or FIBERS[args.mode])
    container = {}
    if args.container:
        container = {arm: (np.empty((n_fib, len(d[0])), np.float32),
                           np.empty((n_fib, len(d[0])), np.float32)) for arm, d in arms.items()}
    files = [[] for _ in range(n)]
    rp = 20000.0 if args.mode == "hrs" else 6500.0
    copy_of = np.where(np.arange(n) < n_written, -1, np.arange(n) % n_written)
    snr = np.where(copy_of < 0, snr, snr[np.maximum(copy_of, 0)])
    scale = np.where(copy_of < 0, scale, scale[np.maximum(copy_of, 0)])
    for c0 in range(0, n_written, CHUNK):
        rows = np.arange(c0, min(n_written, c0 + CHUNK))
        for arm, data in arms.items():
            wave, _, _, bad = data
            f, e = noisy(data, snr[rows], scale[rows], rng)
            qual = bad.astype(np.int32)
            for k, i in enumerate(rows):
                keys = {"OBJECT": names[i], "RA": ra[i], "DEC": dec[i], "MJD-OBS": mjd[i],
                        "EXPTIME": 1200.0, "OBID1": int(obid[i]), "PROG_ID": "synthetic",
                        "NCOMBINE": 1, "SPEC_RES": rp, "SNR": round(float(snr[i]), 2),
                        "PROCSOFT": "make_4most_files.py"}  # fmt: skip
                name = f"qmost_{names[i]}_{args.night}_{obid[i]}_{arm}1.fits"
                write_phase3_spectrum(out / name, wave, f[k], e[k], qual, primary=keys,
                                      table={"CNAME": names[i]}, overwrite=True)  # fmt: skip
                files[i].append(name)
            if container:  # in units of 1e-17 erg/s/cm2/A: float32 inverse variances
                sel = rows[rows < n_fib]
                fc, ec = f[: len(sel)] / CONTAINER_UNIT, e[: len(sel)] / CONTAINER_UNIT
                container[arm][0][sel] = fc
                with np.errstate(divide="ignore"):
                    container[arm][1][sel] = np.where(ec > 0, 1.0 / ec**2, 0.0)
    for i in range(n_written, n):
        for arm, source in zip(arms, files[copy_of[i]], strict=True):
            name = f"qmost_{names[i]}_{args.night}_{obid[i]}_{arm}1.fits"
            link(out / source, out / name)
            files[i].append(name)
    next_night = f"{int(args.night) + 1}"
    for arm, (f, ivar) in container.items():
        wave, _, _, bad = arms[arm]
        qual = np.broadcast_to(bad.astype(np.int32), f.shape)
        fibers = {"FIB_ID": np.arange(1, n_fib + 1, dtype=np.int32),
                  "FIB_ST": np.full(n_fib, 2, np.int16), "CNAME": names[:n_fib],
                  "OBJ_NME": names[:n_fib], "RA": ra[:n_fib], "DEC": dec[:n_fib],
                  "MJD-OBS": mjd[:n_fib], "SPEC_RES": np.full(n_fib, rp)}  # fmt: skip
        path = out / f"{args.night}_{arm}11_{next_night}.fits"
        step = HR_STEP if args.mode == "hrs" else LR_STEP
        write_fourmost_container(path, wave[0], step, f, ivar,
                                 qual, fibers, overwrite=True,
                                 flux_unit=f"{CONTAINER_UNIT:g} erg s-1 cm-2 Angstrom-1",
                                 primary={"MJD-OBS": float(mjd[0]), "SPEC_RES": rp})  # fmt: skip
    manifest = Table({"object": names, "files": ["+".join(f) for f in files],
                      "snr": snr, "flux_scale": scale, "in_container": np.arange(n) < n_fib,
                      "copy_of": copy_of,
                      "teff": np.full(n, 5772.0), "logg": np.full(n, 4.44),
                      "fe_h": np.zeros(n)})  # fmt: skip
    manifest.meta["comment"] = ["synthetic 4MOST files from the bundled solar example",
                                f"mode {args.mode}, seed {args.seed}"]  # fmt: skip
    manifest.write(out / "manifest.ecsv", overwrite=True)
    n_files = sum(len(f) for f in files) + len(container)
    linked = f" ({len(arms) * (n - n_written)} linked)" if n_written < n else ""
    print(f"wrote {n_files} files{linked} for {n} objects to {out} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
