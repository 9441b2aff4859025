"""Observed reference spectra used by the real-stars scripts: the Sun and the NARVAL benchmarks.

Readers for the files in ``../shared/data/sun`` and ``../shared/data/benchmarks_narval`` (see
their READMEs), returning `~specutils.Spectrum` objects in the stellar rest frame with air
wavelengths, plus the reference parameters. Imported by ``scripts/real_stars.py`` and
``scripts/calibrate_loggf.py``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from specutils import Spectrum

#: IAU 2015 nominal solar values, the solar v sin i and a radial-tangential macroturbulence.
SUN = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0, "vsini": 1.6, "vmacro": 3.5}

#: Resolving power of each observed solar spectrum (HARPS; UVES is quoted as 65-110k).
SUN_R = {"HARPS": 115000.0, "UVES": 80000.0}
NARVAL_R = 80000.0

#: Gaia FGK benchmark stars in ../shared/data/benchmarks_narval: Teff, log g, [Fe/H].
BENCHMARKS = {
    "18Sco": (5824, 4.42, 0.03), "61CygA": (4398, 4.63, -0.13),
    "Gmb1830": (5235, 4.72, -1.33), "HD107328": (4496, 2.09, -0.33),
    "HD220009": (4227, 1.66, -0.66), "HD84937": (6356, 4.06, -2.03),
    "betVir": (6093, 4.08, 0.13), "delEri": (5026, 3.83, 0.09),
    "epsVir": (4950, 2.72, 0.06), "etaBoo": (6161, 3.82, 0.25),
    "muCas": (5358, 4.49, -0.83), "muLeo": (4519, 2.43, 0.27),
    "tauCet": (5463, 4.52, -0.51),
}

#: Telluric bands in the solar windows (air A): O2 gamma/B and the strongest H2O near 6500 A.
TELLURIC = ((6274.0, 6330.0), (6860.0, 6960.0), (6465.0, 6475.0), (6543.0, 6546.0))


def read_harps(path: str | Path) -> Spectrum:
    """The HARPS (Ganymede) Sun; the CCD gap stored as zeros is masked."""
    with fits.open(path) as hdul:
        h = hdul[0].header
        flux = hdul[0].data.astype(np.float64)
    wave = h["CRVAL1"] + h["CDELT1"] * (np.arange(flux.size) + 1 - h["CRPIX1"])
    mask = ~np.isfinite(flux) | (flux <= 0.02 * np.nanpercentile(flux, 95))
    return Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA, mask=mask)


def read_uves(path: str | Path) -> Spectrum:
    """The UVES Sun (normalized, cleaned); repeated wavelengths are dropped."""
    with gzip.open(path, "rt") as fh:
        d = np.loadtxt(fh)
    w, idx = np.unique(d[:, 0], return_index=True)
    return Spectrum(flux=d[idx, 1] * u.one, spectral_axis=w * u.AA)


def read_sun(sun_dir: str | Path) -> dict[str, Spectrum]:
    """``{"HARPS": ..., "UVES": ...}`` from the folder of the solar files."""
    d = Path(sun_dir)
    return {"HARPS": read_harps(d / "Sun_HARPS.fits"),
            "UVES": read_uves(d / "UVES_Sun-1_cleaned_norm.txt.gz")}


def read_narval(bench_dir: str | Path, star: str) -> Spectrum:
    """Both NARVAL windows of one benchmark star as one spectrum (a gap in between)."""
    parts = []
    for arm in ("green", "red"):
        with gzip.open(Path(bench_dir) / f"{star}_narval_{arm}.txt.gz", "rt") as fh:
            parts.append(np.loadtxt(fh, usecols=(0, 1)))
    d = np.concatenate(parts)
    w, idx = np.unique(d[:, 0], return_index=True)
    return Spectrum(flux=d[idx, 1] * u.one, spectral_axis=w * u.AA)


def telluric_mask(wave: np.ndarray) -> np.ndarray:
    """True inside the telluric bands of `TELLURIC`."""
    out = np.zeros(np.shape(wave), bool)
    for lo, hi in TELLURIC:
        out |= (wave >= lo) & (wave <= hi)
    return out


def rst_table(title: str, head: list[str], rows: list[list[str]]) -> str:
    """An RST ``list-table`` (the form every real-stars script writes for the docs)."""
    lines = [f".. list-table:: {title}", "   :header-rows: 1", "",
             "   * - " + "\n     - ".join(head)]
    lines += ["   * - " + "\n     - ".join(r) for r in rows]
    return "\n".join(lines) + "\n"
