"""Li 6708 in 1D LTE (Turbospectrum) against 3D NLTE (breidablik) for three stars.

For the Sun (5772/4.44/0.0, A(Li) 1.05), a metal-poor giant (4750/2.0/-2.5, A(Li) 1.0) and a
Li-rich giant (4500/2.0/0.0, A(Li) 2.5), synthesizes 6690-6725 A at 0.01 A (air) with
Turbospectrum and the install's default line lists (Gaia-ESO, hydrogen and the extended
lists) twice:

- "1D LTE": the labels as they are (Turbospectrum's default isotopes: 7.5 % 6Li);
- "3D NLTE": Li removed (``li_free_labels``) and multiplied by the breidablik profile
  (``synthesize_with_lithium``).

Prints, as an RST table, the equivalent width of Li 6708 in both (mA) and the largest flux
difference between the two after a Gaussian line-spread function at R = 20000 (4MOST HR) and
R = 6500 (4MOST LR). The 1D LTE equivalent width is measured on the ratio to the Li-free
spectrum (recovered as the 3D NLTE spectrum divided by the profile), which removes the blends
and the pseudo-continuum of the H alpha wing; the 3D NLTE one is the integral of 1 - profile.

Usage::

    python scripts/lithium_check.py

About 30 s on two shared cores (six Turbospectrum runs of about 3 s each, plus imports).
"""

from __future__ import annotations

import time

import numpy as np

from specutils_cinn.instruments import gaussian_lsf_broaden
from specutils_cinn.synthesis import find_synthesis, synthesize
from specutils_cinn.synthesis.atmospheres import MarcsGrid
from specutils_cinn.synthesis.lithium import lithium_profile, synthesize_with_lithium
from specutils_cinn.validation.rst import simple_table

WINDOW = (6690.0, 6725.0, 0.01)
STARS = {
    "Sun": {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0, "a_li": 1.05},
    "metal-poor giant": {"teff": 4750.0, "logg": 2.0, "fe_h": -2.5, "vmic": 1.5, "a_li": 1.0},
    "Li-rich giant": {"teff": 4500.0, "logg": 2.0, "fe_h": 0.0, "vmic": 1.5, "a_li": 2.5},
}
RESOLVING_POWERS = (20000.0, 6500.0)


def main() -> None:
    t0 = time.perf_counter()
    install = find_synthesis()
    grid = MarcsGrid(install.atmos_dir)
    rows = []
    for name, labels in STARS.items():
        lte = synthesize(labels, [WINDOW], install=install, grid=grid)
        nlte, prov = synthesize_with_lithium(labels, [WINDOW], install=install, grid=grid)
        wave, f_lte, f_3d = lte.wavelength[0], lte.flux[0], nlte.flux[0]
        profile = lithium_profile(wave, labels["teff"], labels["logg"], labels["fe_h"],
                                  labels["a_li"])
        f_free = f_3d / profile
        ew_lte = 1e3 * np.trapezoid(1.0 - f_lte / f_free, wave)
        ew_3d = 1e3 * np.trapezoid(1.0 - profile, wave)
        d_f = [np.max(np.abs(gaussian_lsf_broaden(wave, f_3d, r)
                             - gaussian_lsf_broaden(wave, f_lte, r)))
               for r in RESOLVING_POWERS]
        star = (f"{labels['teff']:.0f}/{labels['logg']:.2f}/{labels['fe_h']:+.1f}/"
                f"{labels['a_li']:.2f}")
        rows.append([name, star, f"{labels['vmic']:.1f}", f"{ew_lte:.1f}", f"{ew_3d:.1f}",
                     f"{np.max(np.abs(f_3d - f_lte)):.4f}", *(f"{v:.4f}" for v in d_f),
                     prov["li_physics"]])
    header = ["star", "Teff/logg/[Fe/H]/A(Li)", "vmic", "EW 1D LTE (mA)", "EW 3D NLTE (mA)",
              "max|dF| unbroadened", *(f"max|dF| R={r:.0f}" for r in RESOLVING_POWERS),
              "Li physics"]
    print(simple_table(header, rows, pad_last_column=True))
    print(f"\n{time.perf_counter() - t0:.0f} s; window {WINDOW[0]:.0f}-{WINDOW[1]:.0f} A at "
          f"{WINDOW[2]} A; Turbospectrum {install.version}")


if __name__ == "__main__":
    main()
