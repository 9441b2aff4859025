"""``specutils-cinn predict`` and ``specutils-cinn demo``: posterior summaries of spectra."""

from __future__ import annotations

import argparse
import math
import sys
from importlib import resources

from ._common import add_device_option, add_parser, check_output_path, progress_option

__all__ = ["EXAMPLE_SPECTRUM", "register"]

#: The bundled example spectrum (in ``specutils_cinn/data``) that ``demo`` runs on.
EXAMPLE_SPECTRUM = "sun_4most_hr_example.fits"


def _check_snr(snr: str | None) -> float | str | None:
    if snr is None or snr == "estimate":
        return snr
    try:
        value = float(snr)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--snr must be a positive number or 'estimate', got {snr!r}")
    return value


def _check_options(args: argparse.Namespace) -> None:
    """Check the arguments of predict and demo before any work (no file read, no model)."""
    from .._checks import check_batch_size, check_n_samples, check_quantiles, check_seed

    check_output_path(args.output, args.overwrite)
    check_n_samples(args.n_samples)
    if args.seed is not None:
        check_seed(args.seed)
    if getattr(args, "quantiles", None) is not None:
        check_quantiles(args.quantiles)
    check_batch_size(getattr(args, "batch_size", None))


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..survey import check_output, run_survey

    check_output(args.output, overwrite=args.overwrite)  # the survey's formats, first
    _check_options(args)
    snr = _check_snr(args.snr)
    if not args.files and not args.file_list:
        raise ValueError("name spectrum files or folders, or give --file-list")
    inputs = args.file_list if args.file_list else args.files
    if args.file_list and args.files:
        raise ValueError("give either files or --file-list, not both")
    summary = run_survey(
        inputs,
        args.output,
        model=args.model,
        chunk_size=args.chunk_size,
        resume=not args.restart,
        overwrite=args.overwrite,
        keep_parts=args.keep_parts,
        n_samples=args.n_samples,
        quantiles=args.quantiles,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        radial_velocity=args.radial_velocity,
        velocity_range=tuple(args.rv_range),
        medium=args.medium,
        snr=snr,
        normalize={"auto": "auto", "yes": True, "no": False}[args.normalize],
        calibrated=not args.uncalibrated,
        reader_format=args.format,
        flux_unit=args.flux_unit,
        group_arms=args.group_arms,
        path_column=args.path_column,
        dask=args.dask,
        progress=progress_option(args),
        compile_sampling=args.compile,
        sampling_precision=args.precision,
    )
    resumed = f"; {summary.resumed} of {summary.chunks} chunks from an earlier run" \
        if summary.resumed else ""
    failed = f" ({summary.errors} without a result: see the status column)" \
        if summary.errors else ""
    print(f"wrote {summary.rows} rows to {args.output}{failed} in {summary.seconds:.1f} s"
          f"{resumed}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from specutils import Spectrum

    from ..estimator import CINNParameterEstimator

    _check_options(args)
    est = CINNParameterEstimator.from_pretrained(device=args.device)
    ref = resources.files("specutils_cinn") / "data" / EXAMPLE_SPECTRUM
    with resources.as_file(ref) as path:
        spectrum = Spectrum.read(path, format="tabular-fits")
    print(f"model: {est.model.metadata.full_name} ({est.model.metadata.description})")
    print(
        f"spectrum: {EXAMPLE_SPECTRUM}: the Sun (HARPS via Ganymede) degraded to 4MOST HR, "
        "S/N 100 per Angstrom; reference Teff 5772 K, log g 4.44, [Fe/H] 0.00"
    )
    table = est.predict(spectrum, n_samples=args.n_samples, seed=args.seed, progress=False)
    import numpy as np

    from ..flags import QualityFlag
    from ..results import column_format, unit_string, write_table

    for p in est.parameters:
        col = table[p]
        if np.any(getattr(col, "mask", False)):
            print(f"{p:>6s}   not constrained by this model")
            continue
        fmt = column_format(col.unit) or ".4g"
        lo, hi = table[f"{p}_p16"][0].value, table[f"{p}_p84"][0].value
        print(
            f"{p:>6s} = {col[0].value:{fmt}} {unit_string(col.unit)}  "
            f"(16-84 %: {lo:{fmt}} .. {hi:{fmt}})"
        )
    print(f"snr = {table['snr'][0]:.1f} per Angstrom, coverage = {table['coverage'][0]:.3f}")
    print("flags = " + QualityFlag.describe(int(table["flags"][0])))
    if args.output:
        write_table(table, args.output, overwrite=args.overwrite)
    return 0



def register(sub) -> None:
    """Add ``predict`` and ``demo`` to the subcommands of ``specutils-cinn``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the top-level parser.
    """
    p = add_parser(
        sub, "predict", "posterior summaries for spectra in files",
        "Posterior medians, quantiles and standard deviations of every parameter, one row per "
        "spectrum, streamed in chunks into a table (see the 'output table' and 'survey runs' "
        "pages of the docs); an interrupted run resumes. Progress goes to standard error: a "
        "bar on a terminal, one line per chunk otherwise.",
    )
    p.add_argument("files", nargs="*",
                   help="spectrum files readable by specutils, or folders of FITS files")
    p.add_argument(
        "-m", "--model", default=None,
        help="registered model name, or a model directory given as a path (./my-model, "
        "containing a path separator; a bare word is always a registered name) "
        "(default: the bundled default model)",
    )
    p.add_argument("-o", "--output", required=True,
                   help="output table: .fits, .ecsv or .parquet (format from the suffix)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--file-list", default=None,
                   help="the inputs: a text file of paths (.txt/.lst/.list, one a line) or a "
                   "table with a 'path' column (relative paths: relative to its folder) "
                   "(default: the files given)")
    p.add_argument("--path-column", default=None,
                   help="column of --file-list holding paths (default: 'path')")
    p.add_argument("--chunk-size", type=int, default=256, metavar="C",
                   help="inputs read, inferred and written together")
    p.add_argument("--restart", action="store_true",
                   help="discard the finished chunks of an earlier run instead of resuming")
    p.add_argument("--keep-parts", action="store_true",
                   help="keep the <output>.parts folder after the output is written")
    p.add_argument("--radial-velocity", default=None,
                   help="km/s: a number, header:KEYWORD, column:NAME (of --file-list) or "
                   "'estimate' (cross-correlation with the model's emulated spectrum) "
                   "(default: the spectra's own, else 0)")
    p.add_argument("--rv-range", type=float, nargs=2, default=(-600.0, 600.0),
                   metavar=("LOW", "HIGH"),
                   help="velocities searched by --radial-velocity estimate (km/s)")
    p.add_argument("--compile", action="store_true",
                   help="compile the network's sampling with torch.compile (tens of seconds "
                        "once, faster after: for thousands of spectra)")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="precision of the flow's hidden layers when drawing: 'auto' is "
                   "bfloat16 on hardware that does it natively (GPUs of the Ampere generation "
                   "and later, CPUs with AMX or AVX-512 BF16), float32 elsewhere "
                   "(default: auto)")
    p.add_argument("--dask", default=None, metavar="SCHEDULER",
                   help="run the chunks on Dask: a scheduler address (tcp://host:8786), or "
                   "'local' / 'local:N' for N local worker processes (default: no Dask, "
                   "this process)")
    p.add_argument("--format", default=None,
                   help="specutils reader format (default: identified from each file)")
    p.add_argument("--flux-unit", default=None,
                   help="flux unit overriding the files' own (BUNIT/TUNIT), e.g. 'adu' "
                   "(default: the files' unit)")
    p.add_argument("--group-arms", action="store_true",
                   help="join the separate 4MOST HRS arm spectra of each object into one row")
    p.add_argument("-n", "--n-samples", type=int, default=1000, metavar="N",
                   help="posterior draws per spectrum")
    p.add_argument("-q", "--quantiles", type=float, nargs="+", default=[0.16, 0.5, 0.84],
                   metavar="Q", help="quantile levels in (0, 1), one column <param>_p<100 Q> each")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="spectra per network call (default: about 262,000 / N, at most 4096)")
    add_device_option(p)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the posterior draws, for reproducible results (default: a "
                   "fresh seed, recorded in the table's SEED keyword)")
    p.add_argument("--snr", default=None,
                   help="S/N per Angstrom for spectra without uncertainties, or 'estimate' "
                   "(DER_SNR from the flux, flagged NOISE_ESTIMATED) (default: use the files' "
                   "uncertainties)")
    p.add_argument("--medium", choices=["air", "vacuum"], default=None,
                   help="medium of the wavelengths (default: from the files, else air)")
    p.add_argument("--normalize", choices=["auto", "yes", "no"], default="auto",
                   help="continuum normalization of the input: auto follows the model (models "
                   "with a pseudo-continuum convention always normalize)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="the network's own posteriors, without the model's posterior calibration")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar or progress lines on standard error")
    p.set_defaults(func=_cmd_predict)

    p = add_parser(sub, "demo", "run the bundled model on the bundled solar spectrum")
    p.add_argument("-n", "--n-samples", type=int, default=1000, metavar="N",
                   help="posterior draws")
    p.add_argument("--seed", type=int, default=1, help="seed of the posterior draws")
    add_device_option(p)
    p.add_argument("-o", "--output", default=None,
                   help="also write the table here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_demo)
