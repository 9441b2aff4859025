"""Shared pieces of the command line: help layout, exit codes, progress and output checks.

Private to `specutils_cinn.cli`: the command modules (``predict``, ``models``, ``train``,
``synthesis``, ``emulator``, ``calibrate``) build their parsers with `add_parser` so that every
subcommand has the same help layout and exit-status epilog.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

__all__ = [
    "EPILOG",
    "EXIT_CODES",
    "HelpFormatter",
    "add_device_option",
    "add_parser",
    "check_output_path",
    "progress_option",
]

#: Exit status of ``specutils-cinn`` and what it means.
EXIT_CODES = {
    0: "success",
    1: "the command ran but did not succeed for every item: some stars failed to synthesize "
    "(grid; predict records inputs without a result in its status column and exits 0)",
    2: "usage or input error: invalid command line or option value, model not found or not "
    "loadable, invalid configuration, output file not writable",
    130: "interrupted (Ctrl-C)",
}

#: The epilog of every ``--help``: the exit statuses.
EPILOG = "exit status:\n" + "\n".join(
    textwrap.fill(text, 79, initial_indent=f"  {code:<4d}", subsequent_indent=" " * 6)
    for code, text in EXIT_CODES.items()
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
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


def progress_option(args: argparse.Namespace):
    """What to pass as ``progress``: a bar on a terminal, lines otherwise, or nothing.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``command`` and optionally ``no_progress``.

    Returns
    -------
    bool or callable
        False with ``--no-progress``, True on a terminal, else a callback writing one line
        per chunk to standard error.
    """
    if getattr(args, "no_progress", False):
        return False
    if sys.stderr.isatty():
        return True
    return _progress_lines(args.command)


def check_output_path(path: str | None, overwrite: bool) -> None:
    """Reject an output path that cannot be written, before any work is done.

    Parameters
    ----------
    path : str or None
        The output table (nothing is checked for None).
    overwrite : bool
        Whether an existing file may be replaced.

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


def add_device_option(p: argparse.ArgumentParser) -> None:
    """Add the ``--device`` option (where the network runs) to a parser.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The parser of one command.
    """
    p.add_argument("--device", default="auto",
                   help="where the network runs: auto (a GPU when torch sees one), cpu, cuda "
                   "or cuda:N")


def add_parser(sub, name: str, help: str, description: str | None = None):
    """Add a subcommand with the shared help layout and the exit-status epilog.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the parent command.
    name : str
        Name of the subcommand.
    help : str
        One line shown in the parent's list of commands.
    description : str, optional
        Longer text of the subcommand's own ``--help`` (default: ``help``).

    Returns
    -------
    argparse.ArgumentParser
    """
    return sub.add_parser(name, help=help, description=textwrap.fill(description or help, 79),
                          epilog=EPILOG, formatter_class=HelpFormatter)
