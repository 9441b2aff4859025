"""Command-line options of the scripts that were renamed to American spelling.

`add_renamed_option` adds the option under its new name and keeps the old spelling working for
one release: hidden from ``--help``, it stores into the same destination and emits an
`~astropy.utils.exceptions.AstropyDeprecationWarning`. Imported by
``scripts/benchmark_stars_ts.py``, ``scripts/calibrate_mismatch.py``, ``scripts/real_stars.py``
and ``scripts/make_4most_files.py``.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from astropy.utils.exceptions import AstropyDeprecationWarning

__all__ = ["add_renamed_option"]


def add_renamed_option(
    parser: argparse.ArgumentParser, new: str, old: str, **kwargs: Any
) -> argparse.Action:
    """Add option ``new`` to ``parser``, with ``old`` as a deprecated, hidden alias.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser.
    new : str
        The option's (American) name, e.g. ``"--realizations"``; its destination is derived
        from it (``realizations``).
    old : str
        The former (British) name, e.g. ``"--realisations"``; goes away in the next release.
    **kwargs
        Passed to `argparse.ArgumentParser.add_argument` for ``new``: ``action`` may be
        ``"store"`` (the default) or ``"store_true"``.

    Returns
    -------
    argparse.Action
        The action of ``new``.
    """
    if kwargs.get("action", "store") not in ("store", "store_true"):
        raise ValueError(f"unsupported action {kwargs['action']!r} for a renamed option")
    action = parser.add_argument(new, **kwargs)
    flag = kwargs.get("action") == "store_true"

    class _Deprecated(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: Any, option_string: str | None = None) -> None:
            warnings.warn(f"{old} is deprecated and goes away in the next release; use {new}",
                          AstropyDeprecationWarning, stacklevel=2)
            setattr(namespace, self.dest, True if flag else values)

    extra = {"nargs": 0} if flag else {
        k: kwargs[k] for k in ("type", "nargs", "choices", "metavar") if k in kwargs}
    parser.add_argument(old, dest=action.dest, action=_Deprecated, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **extra)
    return action
