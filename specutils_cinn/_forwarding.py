"""Module settings that stay one setting when they are re-exported elsewhere.

A setting such as ``DOWNLOAD_TIMEOUT`` is a module variable read by the functions of the module
that defines it (its home). Re-exported by a package or by an old module path, it would become a
second, independent variable: assigning to it there would change nothing. `forward_settings`
makes a re-exporting module read and assign such names in their home instead.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["forward_settings"]


class _ForwardingModule(types.ModuleType):
    """A module whose forwarded settings are read and assigned in their home module."""

    _forwarded: Mapping[str, types.ModuleType]

    def __getattr__(self, name: str) -> Any:
        home = type(self)._forwarded.get(name)
        if home is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(home, name)

    def __setattr__(self, name: str, value: Any) -> None:
        home = type(self)._forwarded.get(name)
        if home is None:
            super().__setattr__(name, value)
        else:
            setattr(home, name, value)


def forward_settings(module_name: str, homes: Mapping[str, types.ModuleType]) -> None:
    """Make a module read and assign some of its names in the modules that define them.

    After the call, ``module.NAME`` returns ``home.NAME`` and ``module.NAME = value`` sets
    ``home.NAME`` (as ``monkeypatch.setattr`` does), for every ``NAME`` in ``homes``.

    Parameters
    ----------
    module_name : str
        The re-exporting module, already in `sys.modules` (normally ``__name__``).
    homes : mapping of str to module
        Each forwarded name and the module that defines and reads it.

    Raises
    ------
    ValueError
        If a home module does not define the name.
    """
    for name, home in homes.items():
        if not hasattr(home, name):
            raise ValueError(f"{home.__name__} has no setting {name!r} to forward")
    module = sys.modules[module_name]
    for name in homes:
        module.__dict__.pop(name, None)
    module.__class__ = type(
        "ForwardingModule", (_ForwardingModule,), {"_forwarded": dict(homes)}
    )
