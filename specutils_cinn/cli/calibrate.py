"""``specutils-cinn calibrate``: calibrate a trained model's flags and posteriors.

The calibration stages of the model release (docs/training.rst): ``fit-flag`` attaches a
spectrum emulator, measures its error floor and chooses the ``POOR_FIT`` threshold
(`specutils_cinn.calibration.fit_flag`); ``posterior`` fits the posterior calibration on
held-out stars (`specutils_cinn.calibration.heldout`). Each writes a new model directory and
a JSON report.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from ._common import add_parser
from .emulator import set_threads

__all__ = ["register"]

_SUN_DIR = "../shared/data/sun"


def _write_report(path: str, report: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1) + "\n")


def _check_new_output(path: str) -> None:
    if Path(path).exists() and any(Path(path).iterdir()):
        raise FileExistsError(f"output {path!r} exists and is not empty; name a new directory")


def _cmd_fit_flag(args: argparse.Namespace) -> int:
    _check_new_output(args.output)
    set_threads(args.threads)
    from ..calibration.fit_flag import calibrate_fit_flag

    example = args.example
    if example is None:
        example = resources.files("specutils_cinn") / "data" / "sun_4most_hr_example.fits"
    report = calibrate_fit_flag(
        args.model, args.emulator, args.grid, args.version, args.output,
        vsini_per_star=args.vsini_per_star, n_samples=args.n_samples,
        max_fraction=args.max_fraction, ood_resolving_power=args.ood_r, example=example,
        sun_harps=args.sun_harps, sun_uves=args.sun_uves, seed=args.seed,
        noise_window=args.noise_window, floor_teff_nodes=args.floor_teff_nodes,
        renormalize=args.renormalize)
    _write_report(args.json, report)
    print(f"saved {args.output} (threshold {report['threshold']}); report {args.json}; "
          f"{report['seconds_total']:.0f} s")
    return 0


def _cmd_posterior(args: argparse.Namespace) -> int:
    _check_new_output(args.output)
    set_threads(args.threads)
    from ..calibration.heldout import calibrate_posteriors

    report = calibrate_posteriors(
        args.model, args.grid, args.version, args.output, vsini_per_star=args.vsini_per_star,
        realizations=args.realizations, n_samples=args.n_samples, seed=args.seed,
        min_scale=args.min_scale, by_width=args.by_width)
    _write_report(args.json, report)
    print(f"saved {args.output}; report {args.json}; {report['seconds']:.0f} s")
    return 0


def _common_options(q: argparse.ArgumentParser, seed: int, n_samples: int,
                    vsini_per_star: int) -> None:
    q.add_argument("--grid", default="../shared/data/ts_lte_seed/ts_lte_seed.npz",
                   help="grid whose held-out stars are used: a synthesis grid file (.h5 or "
                   "the seed grid's .npz), or a folder of v2 grid shards (e.g. "
                   "grid/4most-lte-v2; the binned spectra are rotated, not degraded)")
    q.add_argument("--version", required=True, help="version of the model written")
    q.add_argument("-o", "--output", required=True, help="model directory to write (new)")
    q.add_argument("--json", required=True, help="JSON report to write")
    q.add_argument("--vsini-per-star", type=int, default=vsini_per_star,
                   help="spectra per held-out star, each with its own v sin i")
    q.add_argument("-n", "--n-samples", type=int, default=n_samples,
                   help="posterior draws per spectrum")
    q.add_argument("--seed", type=int, default=seed,
                   help="seed of the v sin i draws, the noise and the posterior draws")
    q.add_argument("--threads", type=int, default=1, help="CPU threads for torch")


def register(sub) -> None:
    """Add ``calibrate`` (``fit-flag``, ``posterior``) to the commands.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the top-level parser.
    """
    p = add_parser(sub, "calibrate", "calibrate a trained model's POOR_FIT flag and posteriors",
                   "Calibrate a trained model on held-out synthetic stars: attach its spectrum "
                   "emulator and choose the POOR_FIT threshold (fit-flag), then fit its "
                   "posterior calibration (posterior). Each writes a new model directory and "
                   "a JSON report (see the 'training' page of the docs).")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    q = add_parser(
        csub, "fit-flag", "attach an emulator, measure its error floor, calibrate POOR_FIT",
        "Attach a spectrum emulator to a model (trimmed to its pixels), measure the "
        "emulator's error floor per pixel on held-out synthetic stars, and choose the "
        "smallest fit_chi2 threshold that flags POOR_FIT on fewer than --max-fraction of "
        "held-out spectra at every S/N (two-fold cross-validated). Out-of-domain inputs "
        "(pure noise, another resolution, the Sun) are reported.",
    )
    q.add_argument("model", help="model directory")
    q.add_argument("emulator", help="emulator directory ('emulator train')")
    _common_options(q, seed=1, n_samples=256, vsini_per_star=2)
    q.add_argument("--max-fraction", type=float, default=0.02,
                   help="largest cross-validated fraction of held-out spectra flagged")
    q.add_argument("--ood-r", type=float, default=None,
                   help="resolving power of the wrong-resolution test (default: 7000 for HR "
                   "models, 2000 for LR)")
    q.add_argument("--example", default=None,
                   help="solar example spectrum run as a test of HR models (default: the "
                   "bundled sun_4most_hr_example.fits)")
    q.add_argument("--noise-window", type=int, default=0,
                   help="pixels over which the chi-square averages the reported variance "
                   "(0: each pixel's own; a window keeps photon-noise uncertainties computed "
                   "from the noisy flux from inflating the chi-square at low S/N)")
    q.add_argument("--floor-teff-nodes", type=float, nargs="+", default=None, metavar="TEFF",
                   help="measure the error floor per Teff node (K, increasing) and interpolate "
                   "it in each spectrum's posterior median Teff (default: one floor for all "
                   "spectra)")
    q.add_argument("--renormalize", action="store_true",
                   help="divide the emulated spectrum by the model's own input normalization "
                   "before comparing (default: compare with the true-continuum emulated "
                   "spectrum times the continuum polynomial only)")
    q.add_argument("--sun-harps", default=f"{_SUN_DIR}/Sun_HARPS.fits",
                   help="HARPS solar spectrum (skipped if missing)")
    q.add_argument("--sun-uves", default=f"{_SUN_DIR}/UVES_Sun-1_cleaned_norm.txt.gz",
                   help="UVES solar spectrum (skipped if missing)")
    q.set_defaults(func=_cmd_fit_flag)

    q = add_parser(
        csub, "posterior", "fit the posterior calibration on held-out stars",
        "Fit a scale and a floor per parameter so that the central posterior intervals of "
        "held-out synthetic stars cover their nominal fractions at every S/N, two-fold "
        "cross-fitted by star; the model written carries the calibration fitted on all "
        "held-out stars and the fold calibrations in its info.",
    )
    q.add_argument("model", help="model directory (e.g. the output of 'calibrate fit-flag')")
    _common_options(q, seed=11, n_samples=500, vsini_per_star=4)
    q.add_argument("--realizations", type=int, default=2,
                   help="noise realizations per spectrum and S/N")
    q.add_argument("--min-scale", type=float, default=1.0,
                   help="smallest scale factor tried (1: only widen; below 1 the calibration "
                   "may also narrow posteriors that cover more than their level)")
    q.add_argument("--by-width", action="store_true",
                   help="fit a scale that depends on the posterior's half width (one node per "
                   "S/N, interpolated in log width) instead of one scale and floor per "
                   "parameter (default: off)")
    q.set_defaults(func=_cmd_posterior)
