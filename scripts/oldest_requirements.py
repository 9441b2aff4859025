"""Pins of the oldest dependency versions ``pyproject.toml`` allows, for ``tox -e *-oldestdeps``.

Usage: ``python scripts/oldest_requirements.py --output requirements-min.txt [--exclude torch]``.
Each runtime dependency with a lower bound (``>=`` or ``~=``) becomes ``name~=X.Y.0`` for a
bound ``X.Y`` (the oldest minor release line, with its bug-fix releases, so that the
dependencies' own floors such as gwcs' ``scipy>=1.14.1`` can still be met); one without a
lower bound is left out.
``--exclude`` leaves out packages whose oldest version cannot be installed here (this
project's machines have only torch 2.13.0 on disk).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_BOUND = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(?:[^;]*?)(?:>=|~=)\s*([0-9][^,;\s]*)")


def oldest(pyproject: Path, exclude: set[str]) -> list[str]:
    """``name~=X.Y.0`` for each dependency of ``pyproject`` with a lower bound ``X.Y``."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        m = _BOUND.match(dep)
        if m is None:
            continue
        name = m.group(1).split("[")[0]
        if name.lower() in exclude:
            continue
        parts = m.group(2).split(".")
        release = ".".join((parts + ["0", "0"])[:3]) if len(parts) < 3 else m.group(2)
        out.append(f"{name}~={release}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the pins to ``--output`` (default: standard output)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", default=str(Path(__file__).parents[1] / "pyproject.toml"))
    parser.add_argument("--output", default=None, help="file to write (default: stdout)")
    parser.add_argument("--exclude", nargs="*", default=[], help="package names to leave out")
    args = parser.parse_args(argv)
    lines = oldest(Path(args.pyproject), {e.lower() for e in args.exclude})
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
