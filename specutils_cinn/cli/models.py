"""``specutils-cinn models``: list, describe or download registered models."""

from __future__ import annotations

import argparse
import sys

from ._common import add_parser

__all__ = ["register"]

def _cmd_models(args: argparse.Namespace) -> int:
    from ..model import download_models, list_models, load_model

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




def register(sub) -> None:
    """Add ``models`` (``list``, ``info``, ``download``) to the subcommands of ``specutils-cinn``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the top-level parser.
    """
    p = add_parser(sub, "models", "list, describe or download registered models",
                    "List, describe or download registered models ('models' alone lists them).")
    p.set_defaults(func=_cmd_models, action=None)
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    q = add_parser(msub, "list", "list the registered models and their aliases")
    q.set_defaults(names=[])
    q = add_parser(msub, "info", "describe models: parameters, ranges, grid, calibration")
    q.add_argument("names", nargs="+",
                   help="registered model names or aliases, or model directories given as paths")
    q = add_parser(
        msub, "download", "download registered models into the cache",
        "Download registered models into the cache ($SPECUTILS_CINN_CACHE or the user cache "
        "directory), verified against the registry; for offline compute nodes.",
    )
    q.add_argument("names", nargs="*", help="model names (default: all registered models)")

