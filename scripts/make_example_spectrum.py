"""Make the bundled example spectrum: the Sun (HARPS, via Ganymede) as 4MOST HR would see it.

Reads ``Sun_HARPS.fits`` (R ~ 115,000, air wavelengths, not continuum-normalized), convolves it
to R = 20,000 with `specutils_cinn.instruments.degrade` (the quadrature difference to the HARPS
resolution), bins it onto the three 4MOST HR arms at 0.05 A, adds photon-like noise at S/N 100
per Angstrom (seeded), and writes a ``tabular-fits`` Spectrum with a StdDev uncertainty to
``specutils_cinn/data/sun_4most_hr_example.fits``.

HARPS pixels without data (flux <= 0 or not finite: the CCD gap at 5304.7-5337.6 A, stored as
zeros, inside the HR green arm) are invalid. They are bridged by linear interpolation only to
keep the convolution finite; a 0/1 validity array is degraded the same way, and every 4MOST pixel
that the line-spread function carries less than 99.9% valid data into gets NaN flux and
uncertainty and ``mask=True`` (the ``tabular-fits`` writer keeps both; either one makes the
estimator ignore the pixel). The flux keeps HARPS' relative scale
(labeled 1e-17 erg/s/cm2/A so that specutils readers recognize it); the
estimator's continuum normalizer handles it.

Source: GitHub MariaTsantaki/FASMA-synthesis (MIT); Tsantaki et al. 2018, MNRAS 473, 5066.

Usage::

    python scripts/make_example_spectrum.py --harps ../shared/data/sun/Sun_HARPS.fits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from specutils_cinn.instruments import degrade, fourmost_setup, snr_per_pixel

OUT = Path(__file__).resolve().parents[1] / "specutils_cinn" / "data" / "sun_4most_hr_example.fits"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--harps", default="../shared/data/sun/Sun_HARPS.fits")
    ap.add_argument("--snr", type=float, default=100.0, help="S/N per Angstrom")
    ap.add_argument("--seed", type=int, default=5772)
    ap.add_argument("--output", default=str(OUT))
    args = ap.parse_args()
    with fits.open(args.harps) as hdul:
        h = hdul[0].header
        flux = hdul[0].data.astype(np.float64)
    wave = h["CRVAL1"] + h["CDELT1"] * (np.arange(flux.size) + 1 - h["CRPIX1"])
    good = np.isfinite(flux) & (flux > 0)  # HARPS stores its CCD gap as zeros
    filled = np.interp(wave, wave[good], flux[good])
    setup = fourmost_setup("hr")
    deg, good_fraction = degrade(
        wave, np.stack([filled, good.astype(np.float64)]), setup, input_resolving_power=115000.0
    )
    bad = ~(good_fraction > 0.999)
    rng = np.random.default_rng(args.seed)
    sigma = np.empty_like(deg)
    for sl in setup.grid.segment_slices:
        # photon noise relative to the arm's continuum level
        cont = np.percentile(deg[sl][~bad[sl]], 95)
        snr_pix = snr_per_pixel(args.snr, setup.grid.pixel_width[sl])
        sigma[sl] = np.sqrt(cont * np.clip(deg[sl], 1e-3 * cont, None)) / snr_pix
    noisy = deg + sigma * rng.standard_normal(deg.size)
    noisy[bad] = sigma[bad] = np.nan
    # specutils readers recognize a flux column by its unit; the scale is arbitrary (relative).
    flux_unit = u.Unit("1e-17 erg / (s cm2 Angstrom)")
    spec = Spectrum(
        flux=noisy.astype(np.float32) * flux_unit,
        spectral_axis=setup.grid.wavelength,
        uncertainty=StdDevUncertainty(sigma.astype(np.float32) * flux_unit),
        mask=bad,
    )
    spec.meta["header"] = fits.Header(
        {
            "OBJECT": "Sun (HARPS via Ganymede), degraded to 4MOST HR",
            "SNR": args.snr,
            "SPEC_RES": 20000.0,
            "AIRORVAC": "air",
        }
    )
    spec.write(args.output, format="tabular-fits", overwrite=True)
    wl = setup.grid.wavelength.to_value(u.AA)[bad]
    gaps = f"{bad.sum()} px masked ({wl.min():.2f}-{wl.max():.2f} A)" if bad.any() else "none"
    print(
        f"wrote {args.output}: {deg.size} px, {Path(args.output).stat().st_size / 1e6:.2f} MB; "
        f"HARPS gaps: {gaps}"
    )


if __name__ == "__main__":
    main()
