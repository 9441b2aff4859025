"""Write small files in the 4MOST / ESO / IRAF layouts for the reader tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from specutils_cinn.io.lookalike import cname, write_fourmost_container, write_phase3_spectrum

HRS_ARMS = {"HB": (3926.0, 4355.0), "HG": (5160.0, 5730.0), "HR": (6100.0, 6790.0)}


def example_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wavelength (A, air), flux, error and bad-pixel mask of the bundled solar example."""
    ref = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    with resources.as_file(ref) as path:
        t = Table.read(path, hdu=1)
    return (np.asarray(t["wavelength"], float), np.asarray(t["flux"], float),
            np.asarray(t["uncertainty"], float), np.asarray(t["mask"], bool))  # fmt: skip


def l1_keys(obj: str = "J120000.00-300000.0", mjd: float = 61041.1, obid: int = 42) -> dict:
    """Primary keywords of a 4MOST L1 file (after the checked QL1 v0.9 header)."""
    return {"OBJECT": obj, "RA": 180.0, "DEC": -30.0, "MJD-OBS": mjd, "EXPTIME": 1200.0,
            "OBID1": obid, "PROG_ID": "1", "NCOMBINE": 1, "SPEC_RES": 20000.0,
            "PROCSOFT": "qmost-l1 0.9"}  # fmt: skip


def write_lj(path: Path, *, snr: float = 50.0, seed: int = 0, bad: slice = slice(100, 110),
             wave_ucd: str | None = "em.wl;obs.atmos") -> dict:  # fmt: skip
    """An LRS joined (LJ) L1 file: 3700-9500 A at 0.25 A, a smooth continuum plus noise."""
    rng = np.random.default_rng(seed)
    wave = np.arange(3700.0, 9500.0 + 0.125, 0.25)
    cont = 1e-16 * (1.0 + 0.2 * np.sin(wave / 900.0))
    err = cont / snr
    flux = cont + rng.normal(size=wave.size) * err
    qual = np.zeros(wave.size, dtype=np.int32)
    qual[bad] = 1
    flux[bad.start] = np.nan  # a NaN under a bad QUAL, as pipelines write them
    keys = l1_keys()
    keys["SPEC_RES"] = 6500.0
    write_phase3_spectrum(path, wave, flux, err, qual, primary=keys, wave_ucd=wave_ucd,
                          table={"CNAME": keys["OBJECT"], "RESOL": 1.2})  # fmt: skip
    return {"wave": wave, "flux": flux, "err": err, "qual": qual}


def write_hrs_arms(folder: Path, obj: str | None = None, *, ob: int = 42, seed: int = 0,
                   arms=("HB", "HG", "HR"), extra_noise: float = 0.0) -> list[Path]:  # fmt: skip
    """One object's HRS arm files ``qmost_<CNAME>_<date>_<OB>_<arm>1.fits`` from the example."""
    wave, flux, err, bad = example_arrays()
    rng = np.random.default_rng(seed)
    obj = obj or cname(180.0 + seed, -30.0)
    paths = []
    for arm in arms:
        lo, hi = HRS_ARMS[arm]
        sel = (wave >= lo - 1e-6) & (wave <= hi + 1e-6)
        f, e = flux[sel].copy(), err[sel].copy()
        if extra_noise:
            f += rng.normal(size=f.size) * extra_noise * np.nanmedian(f)
            e = np.hypot(e, extra_noise * np.nanmedian(f))
        q = bad[sel].astype(np.int32)
        f[q != 0], e[q != 0] = 0.0, 0.0
        keys = l1_keys(obj, obid=ob)
        p = folder / f"qmost_{obj}_20260101_{ob}_{arm}1.fits"
        write_phase3_spectrum(p, wave[sel], f * 1e-17, e * 1e-17, q, primary=keys,
                              table={"CNAME": obj})  # fmt: skip
        paths.append(p)
    return paths


def write_container(folder: Path, arm: str = "LJ", n_fibers: int = 6, *, sky: int = 2,
                    seed: int = 0, flux_unit: str | None = "erg s-1 cm-2 Angstrom-1",
                    ivar_name: str = "FLUX_IVAR", wave_unit: str = "Angstrom") -> Path:  # fmt: skip
    """A nightly container ``20260120_<arm>11_20260121.fits``: ``n_fibers`` object fibers
    (``FIB_ST = 2``) and ``sky`` sky fibers (``FIB_ST = 1``) interleaved at the end."""
    rng = np.random.default_rng(seed)
    if arm == "LJ":
        start, step, npix = 3700.0, 0.25, 23201
    else:
        lo, hi = HRS_ARMS[arm]
        start, step, npix = lo, 0.05, int(round((hi - lo) / 0.05)) + 1
    n = n_fibers + sky
    flux = 1.0 + 0.01 * rng.normal(size=(n, npix))
    ivar = np.full((n, npix), 1e4)
    qual = np.zeros((n, npix), dtype=np.int32)
    qual[:, 10:13] = 4
    ivar[:, 20] = 0.0
    st = np.full(n, 2, dtype=np.int16)
    st[n_fibers:] = 1
    fibers = {
        "FIB_ID": np.arange(1, n + 1, dtype=np.int32),
        "FIB_ST": st,
        "OBJ_NME": [f"obj{i:03d}" if i < n_fibers else "sky" for i in range(n)],
        "CNAME": [cname(10.0 + i, -5.0) if i < n_fibers else "" for i in range(n)],
        "MAG_G": np.linspace(14.0, 16.0, n),
    }
    if ivar_name == "ERR_FLUX":  # older files: the error instead
        with np.errstate(divide="ignore"):
            ivar = 1.0 / np.sqrt(ivar)
    s0, s1 = start, step
    if wave_unit == "nm":
        s0, s1 = start / 10.0, step / 10.0
    path = folder / f"20260120_{arm}11_20260121.fits"
    write_fourmost_container(path, s0, s1, flux, ivar, qual, fibers, flux_unit=flux_unit,
                             wave_unit=wave_unit, ivar_name=ivar_name,
                             primary={"MJD-OBS": 61060.0, "SPEC_RES": 6500.0})  # fmt: skip
    return path


def write_iraf_1d(path: Path, bunit: str | None = "Relative Flux", n: int = 2000) -> None:
    """A HARPS-like IRAF 1-D image spectrum: linear CRVAL1/CDELT1, CTYPE1='ANGSTROM'."""
    hdu = fits.PrimaryHDU(np.linspace(0.5, 1.5, n).astype(np.float32))
    h = hdu.header
    h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = 1.0, 5000.0, 0.01
    h["CTYPE1"] = "ANGSTROM"
    if bunit is not None:
        h["BUNIT"] = bunit
    h["WCSDIM"], h["CD1_1"] = 1, 0.01
    h["WAT0_001"], h["WAT1_001"] = "system=equispec", "wtype=linear label=angstrom"
    h["INSTRUME"], h["OBJECT"] = "HARPS", "Ganymede"
    hdu.writeto(path)
