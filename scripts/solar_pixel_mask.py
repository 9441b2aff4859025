"""The solar masks of poorly modeled pixels: observed Suns against a Turbospectrum Sun.

The HARPS and UVES Suns (``--sun-dir``, read as in ``scripts/real_stars.py``) are degraded to
each 4MOST setup (HR: the HB, HG, HR arms at 0.05 A; LR: 3700-9500 A at 0.25 A) with
`specutils_cinn.instruments.degrade_spectrum`, and compared with a Turbospectrum Sun (Teff
5772 K, log g 4.44, [Fe/H] 0, vmic 1.0 km/s, A(Li) 1.05) synthesized with the synthesis options
of the v2 grid (``--config``: extended line lists without SiH, the solar-calibrated log gf,
per-star line pruning, the hydrogen-wing speed-up, Doppler-width sampling) and degraded with the
solar rotation (``--vsini``) and radial-tangential macroturbulence (``--vmacro``) by
`specutils_cinn.instruments.degrade`. Both are divided by the models' pseudo-continuum
(`specutils_cinn.inputs.Normalization`, fitted over the pixels the observed spectrum covers), and

    residual = observed - synthetic      (continuum units, per pixel)

minus its running median over ``--highpass`` Angstrom (5 A: the slow part is the observed
spectrum's continuum, e.g. the merged echelle orders of the unnormalized HARPS spectrum, not a
line). A pixel is poorly modeled where ``|residual| > --threshold`` in every observed Sun that
covers it: in both where both do (UVES covers 4835-6723 A), in HARPS alone in the blue
(3783-4835 A, the HB arm) and at 6723-6913 A; ``--require-all`` judges only the pixels both
cover. That set is dilated by ``--dilate`` pixels on each side and written as wavelength
intervals (from the left edge of the first to the right edge of the last pixel of each run)
with their provenance to ``specutils_cinn/data/masks/solar_mask_v1_<setup>.ecsv``
(`specutils_cinn.inputs.PixelMask`). Telluric bands (`reference_spectra.TELLURIC`) are left
out of the decision: an absorption of the Earth's atmosphere is no modeling error. Where no
observed Sun reaches (below 3783 A and above 6913 A) nothing is masked: the masks say nothing
about the red half of the LR setup.

The synthesis (about a minute of CPU over 3690-9510 A) is cached in ``--cache``.

Usage::

    python scripts/solar_pixel_mask.py --sun-dir ../shared/data/sun \\
        --rst docs/real_stars/pixel_mask.rst
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from reference_spectra import SUN_R, TELLURIC, read_sun, rst_table, telluric_mask  # noqa: E402

from specutils_cinn import __version__  # noqa: E402
from specutils_cinn.inputs import Normalization, PixelMask  # noqa: E402
from specutils_cinn.instruments import degrade, degrade_spectrum, fourmost_setup  # noqa: E402
from specutils_cinn.synthesis import GridConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The Sun of the synthesis (A(Li) as in scripts/sun_synthesis_scan.py).
SUN_LABELS = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0, "vmic": 1.0, "a_li": 1.05}
#: The models' input normalization (that of the bundled v1 models).
NORMALIZATION = Normalization(kind="pseudo-continuum", degree=3, n_iter=5)
#: Default threshold on |observed - synthetic| in continuum units.
THRESHOLD = 0.05
#: Default window (A) of the running median removed from the residuals (`highpass`).
HIGHPASS = 5.0


# ------------------------------------------------------------------------ the synthesis
def synthesis_options(config: GridConfig) -> dict:
    """The synthesis options of a grid configuration that shape the Sun's spectrum."""
    cal = config.loggf_calibration
    return {
        "line_lists": config.line_lists,
        "exclude": list(config.exclude_line_lists),
        "loggf_calibration": None if cal is None else _relative(cal),
        "loggf_sha256": None if cal is None else hashlib.sha256(cal.read_bytes()).hexdigest(),
        "hydrogen_wing_fraction": config.hydrogen_wing_fraction,
        "min_depth": config.min_depth,
        "sampling_fraction": config.sampling_fraction,
        "piece_overlap": config.piece_overlap,
        "lithium": config.lithium,
        "windows": [[w.start, w.stop, w.step] for w in config.windows],
    }


def solar_synthesis(config: GridConfig, cache: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The Turbospectrum Sun with the grid's options: (wavelength, flux, record), cached."""
    from specutils_cinn.synthesis import synthesize_star

    options = synthesis_options(config)
    key = hashlib.sha256(json.dumps([SUN_LABELS, options], sort_keys=True).encode()).hexdigest()
    path = cache / f"sun_v2_{key[:16]}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as d:
            return d["wave"], d["flux"], json.loads(str(d["record"]))
    cache.mkdir(parents=True, exist_ok=True)
    # exactly a grid star's synthesis (specutils_cinn.synthesis.synthesize_star)
    wave, flux, info = synthesize_star(config, SUN_LABELS, cache)
    record = {"labels": SUN_LABELS, "options": options, "lithium": info["li_physics"],
              "code_version": info["code_version"], "seconds": float(info["seconds"])}
    np.savez(path, wave=wave, flux=flux.astype(np.float64), record=json.dumps(record))
    return wave, flux, record


# ------------------------------------------------------------------------ the residuals
def normalized(flux: np.ndarray, valid: np.ndarray, grid) -> np.ndarray:
    """Flux divided by the models' pseudo-continuum over ``valid`` pixels (NaN elsewhere)."""
    f, _, ok = NORMALIZATION.apply(np.where(valid, flux, 1.0)[None, :], None, valid[None, :],
                                   grid)
    return np.where(ok[0], f[0], np.nan)


def residuals(setup, sun: dict, wave: np.ndarray, flux: np.ndarray, vsini: float,
              vmacro: float) -> dict[str, np.ndarray]:
    """observed - synthetic per pixel of ``setup`` for each observed Sun (NaN: not judged)."""
    grid = setup.grid
    synthetic = np.asarray(degrade(wave, flux, setup, vsini=vsini, vmacro=vmacro),
                           dtype=np.float64).reshape(-1)
    telluric = telluric_mask(grid.wavelength.value)
    out = {}
    for name, spec in sun.items():
        obs = np.asarray(degrade_spectrum(spec, setup, input_resolving_power=SUN_R[name])
                         .flux.value, dtype=np.float64)
        valid = np.isfinite(obs) & (obs > 0) & ~telluric
        # the same pixels for both continua: the comparison is of lines, not of coverage
        out[name] = normalized(obs, valid, grid) - normalized(synthetic, valid, grid)
    return out


def highpass(res: dict[str, np.ndarray], grid, width: float) -> dict[str, np.ndarray]:
    """Each residual minus its running median over ``width`` Angstrom, segment by segment.

    What varies slowly is the observed spectrum's continuum, not a line: HARPS is not
    normalized, and its merged echelle orders leave ripples of a few percent over tens of
    Angstrom in the blue that the models' cubic pseudo-continuum does not follow. A median
    over a window much wider than a line ignores the lines themselves. ``width`` 0: unchanged.
    """
    if width <= 0:
        return res
    from scipy.ndimage import generic_filter

    out = {}
    for name, r in res.items():
        hp = np.full(r.shape, np.nan)
        for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
            n = max(int(round(width / seg.step)) | 1, 3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
                hp[sl] = r[sl] - generic_filter(r[sl], np.nanmedian, size=n, mode="nearest")
        out[name] = hp
    return out


def in_every(res: dict[str, np.ndarray], require_all: bool) -> np.ndarray:
    """min over the observed spectra of |residual| per pixel: over those that cover it, or
    (``require_all``) NaN unless all do. NaN where none covers."""
    a = np.abs(np.array(list(res.values())))
    if require_all:
        return np.min(a, axis=0)
    with np.errstate(invalid="ignore"):
        return np.fmin.reduce(a, axis=0)


def poorly_modeled(res: dict[str, np.ndarray], threshold: float, dilate: int, grid,
                    require_all: bool = False) -> np.ndarray:
    """|residual| > threshold in every spectrum that covers the pixel (all spectra with
    ``require_all``), dilated by ``dilate`` pixels within each segment."""
    with np.errstate(invalid="ignore"):
        bad = in_every(res, require_all) > threshold
    out = bad.copy()
    for sl in grid.segment_slices:
        seg = bad[sl]
        grown = seg.copy()
        for k in range(1, dilate + 1):
            grown[k:] |= seg[:-k]
            grown[:-k] |= seg[k:]
        out[sl] = grown
    return out


def intervals_of(bad: np.ndarray, grid) -> list[tuple[float, float]]:
    """Runs of masked pixels as [left edge of the first, right edge of the last)."""
    out = []
    for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
        edges = seg.edges
        b = np.concatenate([[False], bad[sl], [False]]).astype(np.int8)
        starts = np.flatnonzero(np.diff(b) == 1)
        stops = np.flatnonzero(np.diff(b) == -1)
        out += [(round(float(edges[i]), 4), round(float(edges[j]), 4))
                for i, j in zip(starts, stops, strict=True)]
    return out


def observational_floor(res: dict[str, np.ndarray]) -> float:
    """99th percentile of |HARPS - UVES| where both are judged: the observed spectra's own
    disagreement (noise, normalization, residual tellurics), which the threshold must exceed."""
    a, b = (np.asarray(r) for r in res.values())
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.percentile(np.abs(a[ok] - b[ok]), 99)) if ok.any() else float("nan")


# ------------------------------------------------------------------------ main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sun-dir", default="../shared/data/sun")
    ap.add_argument("--config", default=str(ROOT / "configs/grid-4most-lte-v2.toml"))
    ap.add_argument("--cache", default=str(ROOT / "work/solar_mask"))
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--dilate", type=int, default=1)
    ap.add_argument("--highpass", type=float, default=HIGHPASS,
                    help="running-median window (A) subtracted from each residual; 0: none")
    ap.add_argument("--vsini", type=float, default=1.8)
    ap.add_argument("--vmacro", type=float, default=3.5)
    ap.add_argument("--setups", nargs="+", default=["hr", "lr"])
    ap.add_argument("--output-dir", default=str(ROOT / "specutils_cinn/data/masks"))
    ap.add_argument("--version", default="v1", help="mask version in the file names")
    ap.add_argument("--rst", default=None, help="RST table of the masked fraction per arm")
    ap.add_argument("--require-all", action="store_true",
                    help="judge only pixels both observed Suns cover (default: every Sun that "
                         "covers the pixel must exceed the threshold)")
    ap.add_argument("--top", type=int, default=15, help="largest residuals listed per setup")
    args = ap.parse_args(argv)

    config = GridConfig.from_toml(args.config)
    wave, flux, record = solar_synthesis(config, Path(args.cache))
    sun = read_sun(args.sun_dir)
    rows, worst = [], []
    for name in args.setups:
        setup = fourmost_setup(name)
        grid = setup.grid
        res = highpass(residuals(setup, sun, wave, flux, args.vsini, args.vmacro), grid,
                       args.highpass)
        bad = poorly_modeled(res, args.threshold, args.dilate, grid, args.require_all)
        level = in_every(res, args.require_all)
        judged = np.isfinite(level)
        n_cover = np.sum([np.isfinite(r) for r in res.values()], axis=0)
        wl = grid.wavelength.value
        mask = PixelMask(intervals_of(bad, grid), provenance(args, name, setup, sun, record,
                                                             res, judged, wl))
        out = Path(args.output_dir) / f"solar_mask_{args.version}_{name}.ecsv"
        out.parent.mkdir(parents=True, exist_ok=True)
        mask.write(out)
        on = mask.on_grid(grid)
        if not np.array_equal(on, bad):
            raise RuntimeError("the intervals do not give back the masked pixels")
        print(f"{out}: {mask.n_intervals} intervals, {mask.total_width:.2f} A")
        for seg, sl in zip(grid.segments, grid.segment_slices, strict=True):
            j, lv = judged[sl], level[sl]
            k = int(np.nanargmax(lv)) if j.any() else None
            rows.append([name.upper(), seg.name, f"{seg.start:.0f}-{seg.stop:.0f}",
                         f"{100 * np.mean(n_cover[sl] == len(res)):.0f} %",
                         f"{100 * np.mean(n_cover[sl] == 1):.0f} %",
                         f"{int(on[sl].sum())}",
                         f"{100 * on[sl].sum() / max(int(j.sum()), 1):.1f} %",
                         f"{on[sl].sum() * seg.step:.2f}",
                         "-" if k is None else f"{lv[k]:.2f} at {seg.centers[k]:.1f}"])
        order = np.argsort(np.where(judged, level, -1.0))[::-1][:args.top]
        worst += [f"{name.upper()} {wl[k]:9.2f} A  min |residual| {level[k]:.3f}  "
                  + "  ".join(f"{n} {r[k]:+.3f}" for n, r in res.items()) for k in order]
    print("\n".join(" | ".join(r) for r in rows))
    print("largest residuals (the smaller of the covering spectra):")
    print("\n".join(worst))
    if args.rst:
        rule = "both" if args.require_all else "every covering"
        text = rst_table(
            f"Solar masks of poorly modeled pixels: absolute residual (observed - synthetic, "
            f"running median over {args.highpass:g} A removed) above {args.threshold:g} "
            f"(continuum units) in {rule} observed Sun, dilated by {args.dilate} pixel on "
            "each side",
            ["Setup", "Arm", "Range (A)", "Judged on both Suns", "Judged on HARPS only",
             "Pixels masked", "Of judged", "Masked (A)", "Largest absolute residual"], rows)
        Path(args.rst).parent.mkdir(parents=True, exist_ok=True)
        Path(args.rst).write_text(text)


def provenance(args, name, setup, sun, record, res, judged, wl) -> dict:
    """The provenance recorded with a mask (the ECSV meta and the model metadata)."""
    covered = judged.nonzero()[0]
    rule = ("in both observed Suns (pixels one of them does not cover are not judged)"
            if args.require_all else
            "in every observed Sun that covers the pixel (HARPS alone where UVES does not "
            "reach: below 4835 A and above 6723 A)")
    return {
        "description": f"pixels the 1D LTE physics of the v2 grid models poorly in the Sun, "
                       f"4MOST {name.upper()} setup",
        "method": f"|observed - synthetic| > threshold {rule}; both spectra divided by the "
                  "models' pseudo-continuum over the pixels the observed one covers, the "
                  "residual's running median over highpass_window_angstrom removed (the "
                  "observed continuum, not lines); dilated; telluric bands not judged; "
                  "nothing masked where no observed Sun reaches",
        "threshold": args.threshold,
        "highpass_window_angstrom": args.highpass,
        "dilation_pixels": args.dilate,
        "require_all": bool(args.require_all),
        "observed": {k: {"file": ("Sun_HARPS.fits" if k == "HARPS"
                                  else "UVES_Sun-1_cleaned_norm.txt.gz"),
                         "resolving_power": SUN_R[k],
                         "judged_range": _range(np.isfinite(res[k]), wl)} for k in sun},
        "judged_range": _range(judged, wl),
        "not_judged": "pixels outside judged_range, and telluric_bands",
        "telluric_bands": [list(b) for b in TELLURIC],
        "setup": {"name": setup.name, "grid": setup.grid.to_dict()},
        "normalization": NORMALIZATION.to_dict(),
        "synthesis": {**record["options"], "labels": record["labels"],
                      "lithium": record["lithium"], "code_version": record["code_version"],
                      "vsini": args.vsini, "vmacro": args.vmacro,
                      "macroturbulence": "radial-tangential",
                      "config": Path(args.config).name},
        "observed_disagreement_p99": round(observational_floor(res), 4),
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "package_version": __version__,
        "script": "scripts/solar_pixel_mask.py",
        "pixels_judged": int(covered.size),
    }


def _relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (no local folders in provenance)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name


def _range(ok: np.ndarray, wl: np.ndarray) -> list[float] | None:
    idx = np.flatnonzero(ok)
    return [round(float(wl[idx[0]]), 2), round(float(wl[idx[-1]]), 2)] if idx.size else None


if __name__ == "__main__":
    main()
