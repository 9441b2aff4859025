"""The ``specutils-cinn`` command line.

Commands: ``predict``, ``models``, ``demo``, ``train``, ``grid``, ``synthesis``, and the
release pipeline ``emulator`` (``prepare``, ``train``, ``error``, ``holdout``) and
``calibrate`` (``fit-flag``, ``posterior``). One module per command group
(`specutils_cinn.cli.predict`, ``models``, ``train``, ``synthesis``, ``emulator``,
``calibrate``) adds its subcommands with a ``register`` function.

Importing this package is cheap (no numpy, astropy, specutils or torch): every command imports
what it needs when it runs, so ``specutils-cinn --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from . import calibrate, emulator, models, predict, synthesis, train
from ._common import EPILOG, EXIT_CODES, HelpFormatter
from .predict import EXAMPLE_SPECTRUM

__all__ = ["EXAMPLE_SPECTRUM", "EXIT_CODES", "build_parser", "main"]

#: The command groups, in the order of ``specutils-cinn --help``.
_GROUPS = (predict, models, train, synthesis, emulator, calibrate)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``specutils-cinn`` command.

    Returns
    -------
    argparse.ArgumentParser
        With one subparser per command (``models``, ``synthesis``, ``emulator`` and
        ``calibrate`` have their own subcommands); every option has a help text and its
        default.
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="specutils-cinn",
        description=textwrap.fill(
            "Stellar parameters with full posteriors from spectra, with a cINN. Run "
            "'specutils-cinn COMMAND --help' for the options of a command.", 79),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in _GROUPS:
        group.register(sub)
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
